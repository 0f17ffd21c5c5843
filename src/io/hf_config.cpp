#include "io/hf_config.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "io/gguf.h"
#include "model/weight_names.h"

namespace lamina {

namespace {

// The model families lamina reads, as transformers' AutoModelForCausalLM picks them: by model_type (the
// config class, whose defaults fill absent keys), with architectures[0] naming the same class.
struct Family {
    const char* model_type;
    const char* architecture;
    bool is_mistral;
};
constexpr Family kFamilies[] = {{"llama", "LlamaForCausalLM", false}, {"mistral", "MistralForCausalLM", true}};

// The largest config.json read: real ones are a few KB (the largest, with label maps, under 1 MB).
constexpr size_t kMaxConfigBytes = size_t{16} << 20;

const Family& family_of(const JsonFields& top, const std::string& p) {
    std::optional<std::string> arch;
    if (const nlohmann::json* a = top.find("architectures")) {
        if (!a->is_array() || (!a->empty() && !(*a)[0].is_string())) top.fail("architectures", "expected a list of class names");
        if (!a->empty()) arch = (*a)[0].get<std::string>();
    }
    // transformers' AutoConfig needs model_type (absent or null, it refuses the directory), whatever architectures says.
    if (!top.has("model_type"))
        top.fail("model_type", "expected the model type, a string (\"llama\" or \"mistral\"): transformers picks the config class by it");
    const std::string model_type = top.string("model_type");
    const Family* by_arch = nullptr;
    const Family* by_type = nullptr;
    for (const Family& f : kFamilies) {
        if (arch && *arch == f.architecture) by_arch = &f;
        if (model_type == f.model_type) by_type = &f;
    }
    if ((arch && !by_arch) || !by_type)
        throw Error(p + ": unsupported architecture '" + printable(arch.value_or("?")) + "' (model_type '" +
                    printable(model_type) + "'); supported: LlamaForCausalLM, MistralForCausalLM");
    if (by_arch && by_arch != by_type)
        throw Error(p + ": architectures '" + *arch + "' and model_type '" + model_type + "' name different models");
    return *by_type;
}

// yarn's attention factor when the config gives none (transformers' _compute_yarn_parameters.get_mscale).
double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// RoPE, as transformers 5 reads it: the 4.x `rope_scaling` object (when set) or the 5.x `rope_parameters`
// object, with rope_theta taken from that object first and the top level second.
void read_rope(const JsonFields& top, const std::string& p, ModelConfig& c) {
    // transformers 5 takes `rope_scaling or rope_parameters`: null and {} leave rope_parameters in charge. Any other
    // rope_scaling that is not an object (a string, a list, even an empty one) is a broken config: transformers 4
    // fails on it, and 5 either fails or silently drops it.
    const nlohmann::json* scaling = top.find("rope_scaling");
    if (scaling && !scaling->is_object()) top.fail("rope_scaling", "expected an object with a rope_type (or null)");
    const bool from_scaling = scaling && !scaling->empty();
    const char* where = from_scaling ? "rope_scaling" : top.has("rope_parameters") ? "rope_parameters" : nullptr;
    static const nlohmann::json kEmpty = nlohmann::json::object();
    const JsonFields r = where ? top.object(where) : JsonFields(kEmpty, p);
    const nlohmann::json& obj = r.json();
    // transformers 4 cannot run a rope_scaling without a type (no RoPE function is registered under None), and 5
    // defaults it to "default", dropping whatever scaling the other keys asked for.
    if (from_scaling && !r.has("rope_type") && !r.has("type"))
        top.fail("rope_scaling", "names no rope_type (or type): say which scaling it is, or remove it");
    for (const auto& [key, value] : obj.items())
        if (value.is_object())  // {"full_attention": {...}, "sliding_attention": {...}} in models with layer types
            r.fail(key.c_str(), "per-layer-type RoPE parameters are not supported (LLaMA and Mistral use one RoPE)");

    c.rope_theta = static_cast<float>(r.number_opt("rope_theta").value_or(top.number_or("rope_theta", 10000.0)));
    for (const JsonFields* f : {&r, &top})
        if (auto prf = f->number_opt("partial_rotary_factor"); prf && *prf != 1.0)
            f->fail("partial_rotary_factor", "partial rotary embeddings are not supported (lamina rotates the whole head)");

    // transformers 5 reads `get("rope_type", get("type"))`; a null there is not "default": it finds no RoPE function for None.
    const char* type_key = obj.contains("rope_type") ? "rope_type" : "type";
    if (obj.contains(type_key) && obj[type_key].is_null()) r.fail(type_key, "expected a rope type name (null names none)");
    const std::string type = r.string_opt(type_key).value_or("default");
    RopeScaling& s = c.rope_scaling;
    // transformers fills original_max_position_embeddings from max_position_embeddings for llama3 and yarn.
    auto original_max_position = [&] { return r.integer_or("original_max_position_embeddings", c.n_ctx); };
    if (type == "default") {
        s.kind = RopeScaling::Kind::None;
    } else if (type == "linear" || type == "dynamic") {
        s.kind = type == "linear" ? RopeScaling::Kind::Linear : RopeScaling::Kind::Dynamic;
        s.factor = static_cast<float>(r.number("factor"));
    } else if (type == "llama3") {
        s.kind = RopeScaling::Kind::Llama3;
        s.factor = static_cast<float>(r.number("factor"));
        s.low_freq_factor = static_cast<float>(r.number("low_freq_factor"));
        s.high_freq_factor = static_cast<float>(r.number("high_freq_factor"));
        s.original_max_position = original_max_position();
    } else if (type == "yarn") {
        s.kind = RopeScaling::Kind::Yarn;
        s.original_max_position = original_max_position();
        if (!r.json().contains("factor")) throw Error(p + ": " + where + ".factor is missing (rope_type yarn needs it)");
        // A null factor is the context's growth (DeepSeek-V3's convention, which transformers follows).
        const double factor = r.number_or("factor", static_cast<double>(c.n_ctx) / static_cast<double>(s.original_max_position));
        s.factor = static_cast<float>(factor);
        const auto mscale = r.number_opt("mscale"), mscale_all_dim = r.number_opt("mscale_all_dim");
        if (auto af = r.number_opt("attention_factor")) s.attention_factor = static_cast<float>(*af);
        else if (mscale.value_or(0) != 0 && mscale_all_dim.value_or(0) != 0)
            s.attention_factor = static_cast<float>(yarn_mscale(factor, *mscale) / yarn_mscale(factor, *mscale_all_dim));
        else s.attention_factor = static_cast<float>(yarn_mscale(factor, 1.0));
        // transformers reads these with `or`: 0 and null both give the default.
        auto or_default = [](std::optional<double> v, double fallback) { return v.value_or(0) != 0 ? *v : fallback; };
        s.beta_fast = static_cast<float>(or_default(r.number_opt("beta_fast"), 32.0));
        s.beta_slow = static_cast<float>(or_default(r.number_opt("beta_slow"), 1.0));
        // `rope_parameters.get("truncate", True)` there: null would silently turn truncation off, so it is refused.
        s.truncate = r.boolean_not_null_or("truncate", true);
    } else {
        r.fail(type_key, "rope type '" + type + "' is not supported (supported: default, linear, llama3, dynamic, yarn)");
    }
}

}  // namespace

ModelConfig model_config_from_hf(const std::filesystem::path& path) {
    const std::string p = path.string();
    const nlohmann::json j = read_json_file(path, path.filename().string(), kMaxConfigBytes);
    const JsonFields top(j, p);
    const Family& family = family_of(top, p);
    if (const nlohmann::json* q = top.find("quantization_config")) {
        const auto m = q->find("quant_method");  // end() when q is not an object
        const std::string method = m != q->end() && m->is_string() ? printable(m->get<std::string>()) : "?";
        top.fail("quantization_config", "quantized checkpoints (quant_method '" + method +
                                            "') are not supported; lamina reads f32/f16/bf16 safetensors and GGUF");
    }
    const std::string act = top.string_opt("hidden_act").value_or("silu");
    if (act != "silu") top.fail("hidden_act", "is not supported (LLaMA and Mistral use silu)");

    // Absent keys take the defaults of transformers' LlamaConfig / MistralConfig.
    ModelConfig c;
    c.arch = "llama";
    c.n_vocab = top.integer("vocab_size");
    c.n_embd = top.integer("hidden_size");
    c.n_layer = top.integer("num_hidden_layers");
    c.n_head = top.integer("num_attention_heads");
    c.n_head_kv = top.integer_or("num_key_value_heads", family.is_mistral ? 8 : c.n_head);
    c.head_dim = top.integer_or("head_dim", c.n_head > 0 ? c.n_embd / c.n_head : 0);
    c.n_ff = top.integer("intermediate_size");
    c.n_ctx = top.integer_or("max_position_embeddings", family.is_mistral ? 4096 * 32 : 2048);
    c.rms_eps = static_cast<float>(top.number_or("rms_norm_eps", 1e-6));
    if (!(c.rms_eps > 0 && c.rms_eps < 1)) top.fail("rms_norm_eps", "must be a finite number in (0, 1)");
    // ModelConfig::validate's bounds, checked here first so that the error names this file's key.
    for (auto [key, max, max_name] : {std::tuple{"vocab_size", kMaxVocab, "2^24"}, {"hidden_size", kMaxDimension, "2^20"},
                                      {"intermediate_size", kMaxDimension, "2^20"}, {"num_hidden_layers", kMaxDimension, "2^20"},
                                      {"num_attention_heads", kMaxDimension, "2^20"}, {"num_key_value_heads", kMaxDimension, "2^20"},
                                      {"head_dim", kMaxDimension, "2^20"}, {"max_position_embeddings", kMaxContext, "2^24"},
                                      {"sliding_window", kMaxContext, "2^24"}})
        if (auto v = top.integer_opt(key)) {
            if (*v > max) top.fail(key, std::string("exceeds ") + max_name + " = " + std::to_string(max) + ", the most lamina accepts");
            if (*v < 1 && key != std::string_view("sliding_window")) top.fail(key, "must be positive");
        }
    // The block is BlockDescription's defaults (RMSNorm, SwiGLU with silu, RoPE, no QK-norm, unscaled
    // embeddings) but for the tied head, the biases and the per-layer attention kinds, read here.
    // transformers 5 types the boolean keys `bool` and refuses null for them (not `bool | None`); so does lamina, by key.
    c.block.tied_embeddings = top.boolean_not_null_or("tie_word_embeddings", false);
    top.boolean_not_null_or("use_cache", true);  // unused here, checked like the special ids below
    // The special ids lamina uses come from the tokenizer files; these keys are still checked, so a damaged
    // config.json is refused by key rather than taken silently (eos may be a list, as in Llama 3).
    top.integer_opt("bos_token_id", -1, kMaxVocab);
    top.integer_opt("pad_token_id", -1, kMaxVocab);
    if (const nlohmann::json* eos = top.find("eos_token_id"); eos && eos->is_array())
        top.integers("eos_token_id", -1, kMaxVocab);
    else
        top.integer_opt("eos_token_id", -1, kMaxVocab);
    if (family.is_mistral) {
        // Mistral's projections have no biases whatever the config says, and its window defaults to 4096
        // (null: none). transformers' Mistral has no use_sliding_window switch (that is Qwen2's).
        const nlohmann::json* w = top.find("sliding_window");
        c.sliding_window = !j.contains("sliding_window") ? 4096 : w ? top.integer("sliding_window") : 0;
        if (c.sliding_window < 0) top.fail("sliding_window", "must not be negative");
    } else {
        // transformers' Llama has no sliding window: a sliding_window key there changes nothing, and is ignored.
        c.block.attn_bias = top.boolean_not_null_or("attention_bias", false);
        c.block.mlp_bias = top.boolean_not_null_or("mlp_bias", false);
    }
    c.block.attention_pattern = uniform_attention_pattern(c.sliding_window);
    read_rope(top, p, c);
    c.validate(p);
    return c;
}

namespace {

// RoPE from GGUF metadata as llama.cpp's convert_hf_to_gguf.py writes it: linear and yarn as
// rope.scaling.* keys, Llama 3.1's scaling as per-dimension factors in a rope_freqs.weight tensor, and dynamic
// NTK not at all (it equals plain RoPE within the context). Keys that would change the math in ways lamina
// does not run are errors naming them.
void read_gguf_rope(const GgufFile& f, const std::string& k, ModelConfig& c) {
    const std::string file = f.path().string();
    auto fail = [&](const std::string& key, const std::string& value, const std::string& what) {
        throw Error(file + ": " + key + " = " + value + ": " + what);
    };
    auto number = [](double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", v);
        return std::string(buf);
    };
    if (auto dims = f.get_int_opt(k + "rope.dimension_count"); dims && *dims != c.head_dim)
        fail(k + "rope.dimension_count", std::to_string(*dims),
             "partial rotary embeddings are not supported (lamina rotates the whole head of " + std::to_string(c.head_dim) + ")");
    for (const char* key : {"rope.scaling.attn_factor", "rope.scaling.yarn_log_multiplier"})
        if (auto v = f.get_float_opt(k + key); v && *v != (std::string(key) == "rope.scaling.attn_factor" ? 1.0 : 0.0))
            fail(k + key, number(*v), "is not supported for LLaMA");
    if (auto v = f.get_float_opt(k + "rope.scaling.yarn_ext_factor"); v && *v != 1.0)
        fail(k + "rope.scaling.yarn_ext_factor", number(*v), "only 1 (transformers' yarn) is supported");

    RopeScaling& s = c.rope_scaling;
    // llama.cpp takes an absent type as linear, and a factor of 0 (or none) as no scaling; older files
    // name the linear factor rope.scale_linear.
    const std::string type = f.get_string_opt(k + "rope.scaling.type").value_or("linear");
    const double factor = f.get_float_opt(k + "rope.scaling.factor").value_or(f.get_float_opt(k + "rope.scale_linear").value_or(0.0));
    if (type == "none" || (type == "linear" && (factor == 0.0 || factor == 1.0))) {
        s.kind = RopeScaling::Kind::None;
    } else if (type == "linear") {
        s.kind = RopeScaling::Kind::Linear;
        s.factor = static_cast<float>(factor);
    } else if (type == "yarn") {
        s.kind = RopeScaling::Kind::Yarn;
        s.factor = static_cast<float>(factor);
        s.original_max_position = f.get_int_opt(k + "rope.scaling.original_context_length").value_or(c.n_ctx);
        s.beta_fast = static_cast<float>(f.get_float_opt(k + "rope.scaling.yarn_beta_fast").value_or(32.0));
        s.beta_slow = static_cast<float>(f.get_float_opt(k + "rope.scaling.yarn_beta_slow").value_or(1.0));
        // The converter writes transformers' attention_factor here; without it, transformers' default.
        s.attention_factor = static_cast<float>(
            f.get_float_opt(k + "rope.scaling.yarn_attn_factor").value_or(yarn_mscale(factor, 1.0)));
    } else {
        fail(k + "rope.scaling.type", "'" + type + "'", "rope scaling type is not supported (supported: none, linear, yarn)");
    }

    if (const GgufTensorInfo* t = f.find_tensor("rope_freqs.weight")) {
        if (s.kind != RopeScaling::Kind::None)
            throw Error(file + ": tensor 'rope_freqs.weight' together with rope scaling type '" + type + "' is not supported");
        if (static_cast<int64_t>(t->n_elements()) != c.head_dim / 2)
            throw Error(file + ": tensor 'rope_freqs.weight' has " + std::to_string(t->n_elements()) +
                        " factors, expected head_dim / 2 = " + std::to_string(c.head_dim / 2));
        if (!ggml_type_supported(t->type))
            throw Error(file + ": tensor 'rope_freqs.weight' has unsupported type " + ggml_type_name(t->type));
        s.kind = RopeScaling::Kind::FreqFactors;
        s.freq_factors.resize(static_cast<size_t>(t->n_elements()));
        dequantize(t->type, f.tensor_data(*t).data(), s.freq_factors.data(), t->n_elements());
    }
}

}  // namespace

ModelConfig model_config_from_gguf(const GgufFile& f) {
    const std::string file = f.path().string();
    const std::string arch = f.get_string("general.architecture");
    if (arch != "llama" && arch != "mistral")
        throw Error(file + ": unsupported architecture '" + arch + "' (supported: llama)");
    const std::string k = arch + ".";
    ModelConfig c;
    c.arch = "llama";
    c.n_embd = f.get_int(k + "embedding_length");
    c.n_layer = f.get_int(k + "block_count");
    c.n_head = f.get_int(k + "attention.head_count");
    c.n_head_kv = f.get_int_opt(k + "attention.head_count_kv").value_or(c.n_head);
    c.head_dim = f.get_int_opt(k + "attention.key_length").value_or(c.n_head > 0 ? c.n_embd / c.n_head : 0);
    if (auto v = f.get_int_opt(k + "attention.value_length"); v && *v != c.head_dim)
        throw Error(file + ": " + k + "attention.value_length = " + std::to_string(*v) + " differs from key_length " +
                    std::to_string(c.head_dim) + " (not supported)");
    if (auto v = f.get_float_opt(k + "attention.scale"); v && *v != 0.0)
        throw Error(file + ": " + k + "attention.scale = " + std::to_string(*v) +
                    " is not supported (lamina scales attention by 1 / sqrt(head_dim))");
    c.n_ff = f.get_int(k + "feed_forward_length");
    c.n_ctx = f.get_int(k + "context_length");  // llama.cpp requires it too: a guess would size the KV cache wrong
    c.rope_theta = static_cast<float>(f.get_float_opt(k + "rope.freq_base").value_or(10000.0));
    c.rms_eps = static_cast<float>(f.get_float(k + "attention.layer_norm_rms_epsilon"));
    c.sliding_window = f.get_int_opt(k + "attention.sliding_window").value_or(0);
    c.block.attention_pattern = uniform_attention_pattern(c.sliding_window);
    // The tensors present say the vocabulary (when the metadata does not), the tied head and the biases.
    const FamilyNames& names = weight_names(c.arch);
    auto has = [&](const EngineTensorName& t, int64_t layer) {
        for (const auto& part : t.parts)
            if (f.find_tensor(names.gguf_name(part, layer))) return true;
        return false;
    };
    // vocab_size is optional in GGUF; the token list is authoritative.
    if (auto n = f.get_int_opt(k + "vocab_size")) c.n_vocab = *n;
    else if (const auto* t = f.find_tensor(names.gguf_name(names.global("tok_embd").parts[0]))) {
        if (t->shape.size() != 2)
            throw Error(file + ": tensor '" + t->name + "' has " + std::to_string(t->shape.size()) + " dimensions, expected 2");
        c.n_vocab = static_cast<int64_t>(t->shape[1]);
    }
    c.block.tied_embeddings = !has(names.global("output"), -1);
    c.block.attn_bias = has(names.layer_tensor("bqkv"), 0);
    c.block.mlp_bias = has(names.layer_tensor("b_gate_up"), 0);
    c.validate(file);  // the shapes first: rope_freqs.weight is checked against head_dim
    // The loader takes layers 0..block_count-1; a layer tensor past them means the count is wrong, not a
    // tensor to drop. (Fewer layers than block_count is a missing tensor, reported when the model is built.)
    for (const auto& t : f.tensors())
        if (const auto found = names.find_gguf(t.name); found && found->layer >= c.n_layer)
            throw Error(file + ": tensor '" + t.name + "' is in layer " + std::to_string(found->layer) + " but " + k +
                        "block_count = " + std::to_string(c.n_layer));
    read_gguf_rope(f, k, c);
    c.validate(file);
    return c;
}

}  // namespace lamina
