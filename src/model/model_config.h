// The architecture's hyperparameters, in the one glossary of DESIGN.md. Both GGUF files and Hugging
// Face directories are read into this struct; the engine's config.json stores it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lamina {

struct RopeScaling {
    enum class Kind { None, Linear, Llama3 };
    Kind kind = Kind::None;
    float factor = 1.0f;
    float low_freq_factor = 1.0f;   // llama3 only
    float high_freq_factor = 4.0f;  // llama3 only
    int64_t original_max_position = 8192;  // llama3 only
};

struct ModelConfig {
    std::string arch = "llama";
    int64_t n_vocab = 0;
    int64_t n_embd = 0;
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;
    int64_t n_ff = 0;
    int64_t n_ctx = 0;  // the model's trained context length
    float rope_theta = 10000.0f;
    float rms_eps = 1e-5f;
    RopeScaling rope_scaling;
    bool tied_embeddings = false;
    bool attn_bias = false;  // q/k/v (and o) projections carry biases
    bool mlp_bias = false;   // gate/up/down carry biases

    int64_t q_dim() const { return n_head * head_dim; }
    int64_t kv_dim() const { return n_head_kv * head_dim; }
    int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
    // Throws lamina::Error naming `origin` and the field when a value is missing or inconsistent.
    void validate(const std::string& origin) const;
};

// RoPE inverse frequencies (head_dim / 2 of them), in float32 as Hugging Face computes them,
// with linear or llama3 scaling applied.
std::vector<float> rope_inv_freq(const ModelConfig& c);

void to_json(nlohmann::json& j, const ModelConfig& c);
void from_json(const nlohmann::json& j, ModelConfig& c);

}  // namespace lamina
