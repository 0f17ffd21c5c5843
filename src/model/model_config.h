// The architecture's hyperparameters, in the one glossary of DESIGN.md. Both GGUF files and Hugging
// Face directories are read into this struct; the engine's config.json stores it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/checked.h"

namespace lamina {

// The largest sizes validate() accepts: far above any released model, and small enough that every product
// lamina forms from them (q_dim, a tensor's elements, the KV cache's bytes) is checked rather than trusted.
constexpr int64_t kMaxDimension = int64_t{1} << 20;  // n_embd, n_ff, head_dim, n_head, n_head_kv, n_layer
constexpr int64_t kMaxContext = int64_t{1} << 24;    // positions: n_ctx, a sliding window, max_input_len + max_output_len
constexpr int64_t kMaxVocab = int64_t{1} << 24;      // n_vocab

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

// How every transformer block of a family computes: what the one forward pass reads instead of a loop per
// family (DESIGN.md, "Model code"). The defaults are LLaMA's; the config readers fill it per family.
struct BlockDescription {
    enum class Norm { RmsNorm, LayerNorm };     // LayerNorm: mean-centred, with a bias (GPT-2)
    enum class Activation { Silu, GeluTanh };   // of the MLP's gate: SwiGLU (LLaMA) or GeGLU (Gemma)
    enum class Position { Rope, Learned };      // rotate-half RoPE on q and k, or a learned table added to the embeddings
    enum class Attention { Full, Sliding };     // Sliding: a query at p sees keys in (p - sliding_window, p]

    Norm norm = Norm::RmsNorm;
    bool qk_norm = false;  // an RMSNorm over each head of q and of k before RoPE (Qwen3, Gemma 3)
    Activation activation = Activation::Silu;
    Position position = Position::Rope;
    // Layer l's attention is attention_pattern[l % size]: {Full} (LLaMA), {Sliding} (Mistral), five Sliding
    // then one Full (Gemma 3), or one kind per layer.
    std::vector<Attention> attention_pattern = {Attention::Full};
    bool attn_bias = false;        // q/k/v (and o) projections carry biases
    bool mlp_bias = false;         // gate/up/down carry biases
    float embedding_scale = 1.0f;  // the embedding rows are multiplied by this (Gemma: sqrt(n_embd))
    bool tied_embeddings = false;  // the LM head is the embedding table

    Attention attention(int64_t layer) const {
        return attention_pattern[static_cast<size_t>(layer) % attention_pattern.size()];
    }
};

struct ModelConfig {
    std::string arch = "llama";  // the family: picks the weight-name table (model/weight_names.h)
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
    // Hugging Face's sliding window (a query at p sees keys in (p - sliding_window, p]) of the layers whose
    // block.attention is Sliding; 0: none. Lamina runs full attention, which is the same math while the whole
    // context fits in the window (check_context).
    int64_t sliding_window = 0;
    BlockDescription block;

    int64_t q_dim() const { return checked_mul(n_head, head_dim, "n_head * head_dim"); }
    int64_t kv_dim() const { return checked_mul(n_head_kv, head_dim, "n_head_kv * head_dim"); }
    int64_t qkv_dim() const { return checked_add(q_dim(), checked_mul(int64_t{2}, kv_dim(), "2 * kv_dim"), "q_dim + 2 * kv_dim"); }
    // Throws lamina::Error naming `origin`, the field and its value when a value is missing, inconsistent,
    // above the bounds above, or a float that is not finite or out of its range (rms_eps in (0, 1), ...).
    void validate(const std::string& origin) const;
    // The most positions per sequence lamina runs with the model's own math: n_ctx, or a shorter sliding window.
    int64_t max_exact_context() const { return sliding_window > 0 && sliding_window < n_ctx ? sliding_window : n_ctx; }
    // Throws lamina::Error, naming `origin`, the key and both numbers, when an engine of n_positions positions
    // per sequence (max_input_len + max_output_len) would need math lamina does not run: more than n_ctx, a
    // sliding window shorter than that, or dynamic NTK RoPE past max_position_embeddings.
    void check_context(int64_t n_positions, const std::string& origin) const;
};

// Every layer Sliding when sliding_window > 0, else Full: LLaMA's and Mistral's layers, and what an engine's
// config.json says (it stores the attention kinds as sliding_window alone).
std::vector<BlockDescription::Attention> uniform_attention_pattern(int64_t sliding_window);

// RoPE inverse frequencies (head_dim / 2 of them), in float32 with the operations and rounding of
// transformers' rope init functions, scaled as rope_scaling says. Dynamic NTK gives the frequencies it has up
// to max_position_embeddings (the only context check_context lets it run at).
std::vector<float> rope_inv_freq(const ModelConfig& c);

class JsonFields;

// An engine's config.json stores the config as its "model" object. model_config_from_json reads it with every
// error naming the file and key (`model` carries both: core/json_fields.h); from_json, for nlohmann's
// get<ModelConfig>(), names the file "engine config".
void to_json(nlohmann::json& j, const ModelConfig& c);
ModelConfig model_config_from_json(const JsonFields& model);
void from_json(const nlohmann::json& j, ModelConfig& c);

}  // namespace lamina
