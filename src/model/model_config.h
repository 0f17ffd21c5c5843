// The architecture's hyperparameters, in the one glossary of DESIGN.md. Both GGUF files and Hugging
// Face directories are read into this struct; the engine's config.json stores it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lamina {

// How RoPE's inverse frequencies are derived, after Hugging Face's rope_type (transformers'
// modeling_rope_utils.py), plus llama.cpp's per-dimension factors (a GGUF rope_freqs.weight tensor).
struct RopeScaling {
    enum class Kind { None, Linear, Llama3, Dynamic, Yarn, FreqFactors };
    Kind kind = Kind::None;
    float factor = 1.0f;                    // linear, llama3, dynamic, yarn
    float low_freq_factor = 1.0f;           // llama3
    float high_freq_factor = 4.0f;          // llama3
    int64_t original_max_position = 8192;   // llama3, yarn: the pretraining context
    float beta_fast = 32.0f;                // yarn: the ramp's bounds, in rotations over original_max_position
    float beta_slow = 1.0f;                 // yarn
    bool truncate = true;                   // yarn: round the ramp's bounds out to whole dimensions
    float attention_factor = 1.0f;          // yarn: multiplies cos and sin, so q.k by its square
    std::vector<float> freq_factors;        // FreqFactors: inv_freq[i] / freq_factors[i], head_dim / 2 of them
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
    // Hugging Face's sliding window (a query at p sees keys in (p - sliding_window, p]); 0: none. Lamina runs
    // full attention, which is the same math while the whole context fits in the window (check_context).
    int64_t sliding_window = 0;

    int64_t q_dim() const { return n_head * head_dim; }
    int64_t kv_dim() const { return n_head_kv * head_dim; }
    int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
    // Throws lamina::Error naming `origin` and the field when a value is missing or inconsistent.
    void validate(const std::string& origin) const;
    // The most positions per sequence lamina runs with the model's own math: n_ctx, or a shorter sliding window.
    int64_t max_exact_context() const { return sliding_window > 0 && sliding_window < n_ctx ? sliding_window : n_ctx; }
    // Throws lamina::Error, naming `origin`, the key and both numbers, when an engine of n_positions positions
    // per sequence (max_input_len + max_output_len) would need math lamina does not run: more than n_ctx, a
    // sliding window shorter than that, or dynamic NTK RoPE past max_position_embeddings.
    void check_context(int64_t n_positions, const std::string& origin) const;
};

// RoPE inverse frequencies (head_dim / 2 of them), in float32 with the operations and rounding of
// transformers' rope init functions, scaled as rope_scaling says. Dynamic NTK gives the frequencies it has up
// to max_position_embeddings (the only context check_context lets it run at).
std::vector<float> rope_inv_freq(const ModelConfig& c);

void to_json(nlohmann::json& j, const ModelConfig& c);
void from_json(const nlohmann::json& j, ModelConfig& c);

}  // namespace lamina
