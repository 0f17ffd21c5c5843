#include "model/model_spec.h"

#include <optional>
#include <vector>

#include "core/checked.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/weight_names.h"
#include "tokenizer/tokenizer.h"

namespace lamina {

int64_t WeightSource::n_elements() const { return checked_product(shape, (origin + " element count").c_str()); }

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

const WeightSource& ModelSpec::weight(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = weights.find(name);
    if (it == weights.end()) throw Error(source + ": missing tensor '" + name + "' (expected shape " + shape_string(shape) + ")");
    if (it->second.shape != shape)
        throw Error(it->second.origin + ": tensor '" + name + "' has shape " + shape_string(it->second.shape) +
                    ", expected " + shape_string(shape));
    return it->second;
}

namespace {

// convert_hf_to_gguf stores q/k rows of each head interleaved for llama.cpp's adjacent-pair RoPE:
// GGUF row (h, 2i + j) holds HF row (h, j * head_dim/2 + i). Undo it so the spec is in HF layout. Rows are
// moved whole, so this works on any row format (f32 values or quantized blocks): row_bytes each.
void unpermute_rows(void* w, int64_t rows, size_t row_bytes, int64_t n_heads) {
    const int64_t head_dim = rows / n_heads, half = head_dim / 2;
    auto* bytes = static_cast<uint8_t*>(w);
    std::vector<uint8_t> tmp(static_cast<size_t>(rows) * row_bytes);
    for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j) {
                const uint8_t* src = bytes + static_cast<size_t>(h * head_dim + 2 * i + j) * row_bytes;
                std::copy(src, src + row_bytes, tmp.data() + static_cast<size_t>(h * head_dim + j * half + i) * row_bytes);
            }
    std::copy(tmp.begin(), tmp.end(), bytes);
}

// Builds the tokenizer once so a broken vocabulary (e.g. a merge naming a missing token) is reported
// against the checkpoint now, not later against the engine.
void check_tokenizer(const Vocab& vocab, const std::string& source) {
    try {
        Tokenizer t(vocab);
    } catch (const Error& e) {
        throw Error(source + ": " + e.what());
    }
}

// Whether a checkpoint tensor (as the name table found it) is one the model is built from. A tensor the table
// knows but the config says the model lacks means the config and the weights describe different models: a layer
// at or past n_layer (transformers would drop it with a warning, running fewer layers than were trained) or a
// bias the config turns off. Those are refused, naming the tensor and the config's key. Two kinds are skipped:
// names outside the table (buffers such as rotary_emb.inv_freq that older transformers saved, and whatever
// training tools leave behind; transformers ignores them too) and lm_head.weight beside tied embeddings (some
// checkpoints store the tied copy; transformers ties it to the embedding).
bool uses(const ModelConfig& c, const std::optional<FamilyNames::Found>& found, const std::string& name,
          const std::string& file, const char* n_layer_key) {
    if (!found) return false;
    if (found->layer >= c.n_layer)
        throw Error(file + ": tensor '" + printable(name) + "' is of layer " + std::to_string(found->layer) + ", but " + n_layer_key +
                    " = " + std::to_string(c.n_layer) + " (the config and the weights describe different models)");
    if (is_present(*found->tensor, c)) return true;
    switch (found->tensor->presence) {
        case Presence::UntiedHead: return false;
        case Presence::AttnBias:
        case Presence::MlpBias:
            throw Error(file + ": tensor '" + printable(name) + "' is a bias, but the config gives the model no " +
                        (found->tensor->presence == Presence::AttnBias ? "attention" : "MLP") +
                        " biases (the config and the weights describe different models)");
        case Presence::Always: break;
    }
    return false;
}

}  // namespace

ModelSpec load_gguf_spec(const std::filesystem::path& file) { return load_gguf_spec(std::make_shared<const GgufFile>(file)); }

ModelSpec load_gguf_spec(std::shared_ptr<const GgufFile> gguf) {
    const std::filesystem::path& file = gguf->path();
    ModelSpec spec;
    spec.source = file.string();
    spec.keep_alive = gguf;
    spec.config = model_config_from_gguf(*gguf);
    spec.vocab = vocab_from_gguf(*gguf);
    check_tokenizer(spec.vocab, file.string());
    const ModelConfig& c = spec.config;
    const FamilyNames& names = weight_names(c.arch);
    for (const auto& t : gguf->tensors()) {
        const auto found = names.find_gguf(t.name);
        // rope_freqs.weight, outside the table, is read with the config.
        if (!uses(c, found, t.name, file.string(), "block_count")) continue;
        WeightSource w;
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) w.shape.push_back(static_cast<int64_t>(*it));
        w.origin = file.string() + " tensor '" + t.name + "' (" + ggml_type_name(t.type) + ")";
        const int64_t heads = gguf_rope_heads(*found->part, c);
        const GgufTensorInfo* info = &t;
        const GgufFile* g = gguf.get();
        std::vector<int64_t> shape = w.shape;
        if (!ggml_type_supported(t.type))
            throw Error(w.origin + ": tensor type " + ggml_type_name(t.type) +
                        " is not supported (supported: " + ggml_supported_type_names() + ")");
        const int64_t rows = shape[0], cols = shape.size() > 1 ? shape[1] : 1;
        w.read = [g, info, heads, rows, cols](float* dst) {
            const auto data = g->tensor_data(*info);
            dequantize(info->type, data.data(), dst, info->n_elements());
            if (heads > 0) unpermute_rows(dst, rows, static_cast<size_t>(cols) * sizeof(float), heads);
        };
        // Every type the loader supports is an engine type; its rows are whole blocks (the reader checked).
        w.stored = *dtype_from_ggml_code(t.type);
        w.read_stored = [g, info, heads, rows, cols, stored = w.stored](void* dst) {
            const auto data = g->tensor_data(*info);
            std::copy(data.begin(), data.end(), static_cast<uint8_t*>(dst));
            if (heads > 0) unpermute_rows(dst, rows, dtype_bytes(stored, cols), heads);
        };
        spec.weights.emplace(names.hf_name(*found->part, found->layer), std::move(w));
    }
    return spec;
}

ModelSpec load_hf_spec(const std::filesystem::path& dir, bool require_tokenizer) {
    if (!std::filesystem::is_directory(dir)) throw Error(dir.string() + ": not a directory");
    auto ckpt = std::make_shared<SafetensorsCheckpoint>(dir);
    ModelSpec spec;
    spec.source = dir.string();
    spec.keep_alive = ckpt;
    spec.config = model_config_from_hf(dir / "config.json");
    if (require_tokenizer || std::filesystem::exists(dir / "tokenizer.json")) {
        spec.vocab = vocab_from_hf_dir(dir);
        check_tokenizer(spec.vocab, dir.string());
    }
    const FamilyNames& names = weight_names(spec.config.arch);
    for (const auto& [name, t] : ckpt->tensors()) {
        if (!uses(spec.config, names.find_hf(name), name, t->file->string(), "num_hidden_layers")) continue;
        WeightSource w;
        w.shape = t->shape;
        w.origin = t->file->string() + " tensor '" + name + "' (" + std::string(dtype_name(t->dtype)) + ")";
        const SafetensorsTensor* tensor = t;
        w.read = [tensor](float* dst) {
            convert_to_f32(tensor->dtype, tensor->data.data(), dst, tensor->data.size() / dtype_size(tensor->dtype));
        };
        w.stored = tensor->dtype;
        w.read_stored = [tensor](void* dst) { std::copy(tensor->data.begin(), tensor->data.end(), static_cast<uint8_t*>(dst)); };
        spec.weights.emplace(name, std::move(w));
    }
    return spec;
}

ModelSpec load_model_spec(const std::filesystem::path& path, bool require_tokenizer) {
    if (std::filesystem::is_directory(path)) return load_hf_spec(path, require_tokenizer);
    if (!std::filesystem::exists(path)) throw Error(path.string() + ": no such file or directory");
    return load_gguf_spec(path);
}

}  // namespace lamina
