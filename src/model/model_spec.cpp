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
// GGUF row (h, 2i + j) holds HF row (h, j * head_dim/2 + i). Undo it so the spec is in HF layout.
void unpermute_rows(float* w, int64_t rows, int64_t cols, int64_t n_heads) {
    const int64_t head_dim = rows / n_heads, half = head_dim / 2;
    std::vector<float> tmp(static_cast<size_t>(rows * cols));
    for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j) {
                const float* src = w + (h * head_dim + 2 * i + j) * cols;
                std::copy(src, src + cols, tmp.data() + (h * head_dim + j * half + i) * cols);
            }
    std::copy(tmp.begin(), tmp.end(), w);
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
                        " is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)");
        w.read = [g, info, heads, shape](float* dst) {
            const auto data = g->tensor_data(*info);
            dequantize(info->type, data.data(), dst, info->n_elements());
            if (heads > 0) {
                const int64_t rows = shape[0], cols = shape.size() > 1 ? shape[1] : 1;
                unpermute_rows(dst, rows, cols, heads);
            }
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
