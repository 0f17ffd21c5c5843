#include "io/hf_config.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"

namespace lamina {

namespace {
const char* const kSupportedArchs[] = {"LlamaForCausalLM", "MistralForCausalLM"};

template <typename T>
T field_or(const nlohmann::json& j, const char* key, T fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    return it->get<T>();
}
}  // namespace

ModelConfig model_config_from_hf(const std::filesystem::path& path) {
    const std::string p = path.string();
    std::ifstream in(path);
    if (!in) throw Error(p + ": cannot open");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throw Error(p + ": not valid JSON: " + e.what());
    }
    ModelConfig c;
    try {
        std::string arch = "?";
        if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
            arch = j["architectures"][0].get<std::string>();
        bool supported = false;
        for (const char* a : kSupportedArchs) supported = supported || arch == a;
        const std::string model_type = field_or<std::string>(j, "model_type", "");
        if (!supported)
            throw Error(p + ": unsupported architecture '" + arch + "' (model_type '" + model_type +
                        "'); supported: LlamaForCausalLM, MistralForCausalLM");
        c.arch = "llama";
        c.n_vocab = j.at("vocab_size");
        c.n_embd = j.at("hidden_size");
        c.n_layer = j.at("num_hidden_layers");
        c.n_head = j.at("num_attention_heads");
        c.n_head_kv = field_or<int64_t>(j, "num_key_value_heads", c.n_head);
        c.head_dim = field_or<int64_t>(j, "head_dim", c.n_head > 0 ? c.n_embd / c.n_head : 0);
        c.n_ff = j.at("intermediate_size");
        c.n_ctx = field_or<int64_t>(j, "max_position_embeddings", 2048);
        c.rope_theta = field_or<float>(j, "rope_theta", 10000.0f);
        c.rms_eps = field_or<float>(j, "rms_norm_eps", 1e-6f);
        c.tied_embeddings = field_or<bool>(j, "tie_word_embeddings", false);
        c.attn_bias = field_or<bool>(j, "attention_bias", false);
        c.mlp_bias = field_or<bool>(j, "mlp_bias", false);
        const std::string act = field_or<std::string>(j, "hidden_act", "silu");
        if (act != "silu") throw Error(p + ": hidden_act '" + act + "' is not supported (LLaMA uses silu)");
        if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
            const auto& r = j["rope_scaling"];
            std::string type = field_or<std::string>(r, "rope_type", field_or<std::string>(r, "type", ""));
            if (type == "linear") {
                c.rope_scaling.kind = RopeScaling::Kind::Linear;
                c.rope_scaling.factor = r.at("factor");
            } else if (type == "llama3") {
                c.rope_scaling.kind = RopeScaling::Kind::Llama3;
                c.rope_scaling.factor = r.at("factor");
                c.rope_scaling.low_freq_factor = r.at("low_freq_factor");
                c.rope_scaling.high_freq_factor = r.at("high_freq_factor");
                c.rope_scaling.original_max_position = r.at("original_max_position_embeddings");
            } else if (type != "default" && !type.empty()) {
                throw Error(p + ": rope_scaling type '" + type + "' is not supported (supported: linear, llama3)");
            }
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error(p + ": missing or malformed field: " + e.what());
    }
    c.validate(p);
    return c;
}

ModelConfig model_config_from_gguf(const GgufFile& f) {
    const std::string arch = f.get_string("general.architecture");
    if (arch != "llama" && arch != "mistral")
        throw Error(f.path().string() + ": unsupported architecture '" + arch + "' (supported: llama)");
    const std::string k = arch + ".";
    ModelConfig c;
    c.arch = "llama";
    c.n_embd = f.get_int(k + "embedding_length");
    c.n_layer = f.get_int(k + "block_count");
    c.n_head = f.get_int(k + "attention.head_count");
    c.n_head_kv = f.get_int_opt(k + "attention.head_count_kv").value_or(c.n_head);
    c.head_dim = f.get_int_opt(k + "attention.key_length").value_or(c.n_head > 0 ? c.n_embd / c.n_head : 0);
    c.n_ff = f.get_int(k + "feed_forward_length");
    c.n_ctx = f.get_int_opt(k + "context_length").value_or(2048);
    c.rope_theta = static_cast<float>(f.get_float_opt(k + "rope.freq_base").value_or(10000.0));
    c.rms_eps = static_cast<float>(f.get_float(k + "attention.layer_norm_rms_epsilon"));
    if (auto type = f.get_string_opt(k + "rope.scaling.type")) {
        if (*type == "linear") {
            c.rope_scaling.kind = RopeScaling::Kind::Linear;
            c.rope_scaling.factor = static_cast<float>(f.get_float(k + "rope.scaling.factor"));
        } else if (*type != "none") {
            throw Error(f.path().string() + ": rope scaling type '" + *type + "' is not supported");
        }
    }
    // vocab_size is optional in GGUF; the token list is authoritative.
    if (auto n = f.get_int_opt(k + "vocab_size")) c.n_vocab = *n;
    else if (const auto* t = f.find_tensor("token_embd.weight")) c.n_vocab = static_cast<int64_t>(t->shape[1]);
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    c.attn_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.mlp_bias = f.find_tensor("blk.0.ffn_up.bias") != nullptr;
    c.validate(f.path().string());
    return c;
}

}  // namespace lamina
