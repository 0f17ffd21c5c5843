// The LLaMA forward pass: one loop over layers calling backend ops in the order of the paper.
// The model owns every buffer it needs, sized once from the engine's limits: the KV cache (one slot
// per sequence), the activations of one step of up to max_step_tokens tokens, the RoPE table.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "backend/backend.h"
#include "runtime/engine.h"

namespace lamina {

struct ModelLimits {
    int64_t n_slot = 1;           // sequences held at once
    int64_t n_ctx = 0;            // positions per slot
    int64_t max_step_tokens = 0;  // tokens per forward step (prefill is chunked to this)
};

class LlamaModel {
public:
    LlamaModel(const Engine& engine, Backend& backend, const ModelLimits& limits);
    ~LlamaModel();
    LlamaModel(const LlamaModel&) = delete;
    LlamaModel& operator=(const LlamaModel&) = delete;

    // One step over n tokens (ids/positions/slots on the host). Writes the logits of the tokens at
    // indices `logit_rows` into `logits` (host, [logit_rows.size(), n_vocab], f32).
    void forward(std::span<const int32_t> ids, std::span<const int32_t> positions, std::span<const int32_t> slots,
                 std::span<const int32_t> logit_rows, float* logits);
    // The same step, but only the greedy choice (argmax of each logits row, computed on the backend)
    // comes back: `next_ids` gets logit_rows.size() ids. Decode steps of this kind are replayed from a
    // captured graph on backends that have graphs.
    void forward_argmax(std::span<const int32_t> ids, std::span<const int32_t> positions,
                        std::span<const int32_t> slots, std::span<const int32_t> logit_rows, int32_t* next_ids);

    // Copies the KV cache of positions [0, n_positions) of slot `src` into slot `dst` (beam search
    // forks a hypothesis this way).
    void copy_slot(int64_t src, int64_t dst, int64_t n_positions);

    const ModelConfig& config() const { return config_; }
    const ModelLimits& limits() const { return limits_; }
    Backend& backend() { return backend_; }

    // Called after every named intermediate ("blk.3.attn_out", …) with its view in backend memory,
    // so a run can be diffed layer by layer against Hugging Face. Off (empty) by default.
    std::function<void(const std::string& name, const TensorView& value)> on_intermediate;

private:
    // Uploads the step's token metadata; returns the StepTokens view of it.
    StepTokens upload_step(std::span<const int32_t> ids, std::span<const int32_t> positions,
                           std::span<const int32_t> slots, std::span<const int32_t> logit_rows);
    // Issues every op of a step (no host synchronization): embedding to logits, and argmax if asked.
    void step_ops(const StepTokens& tok, int64_t n_logits, bool argmax);
    // Runs step_ops, from a captured graph when the step is a decode step on a graph backend.
    void run_step(const StepTokens& tok, int64_t n_logits, bool argmax);
    void trace(const std::string& name, const TensorView& v);
    TensorView activation(int64_t cols, int64_t rows);

    ModelConfig config_;
    Backend& backend_;
    ModelLimits limits_;
    bool rmsnorm_plugin_;
    LlamaWeights weights_;         // views in backend memory
    void* device_weights_ = nullptr;  // the uploaded weights file, when the backend has its own memory
    KvCache kv_;
    TensorView rope_cos_sin_;
    AttentionShape attn_shape_;
    std::vector<void*> buffers_;
    // activations of one step: [max_step_tokens, width]
    TensorView x_, h_, qkv_, attn_, proj_, gate_up_, ff_, last_, logits_;
    int32_t* tok_ids_ = nullptr;
    int32_t* tok_pos_ = nullptr;
    int32_t* tok_slots_ = nullptr;
    int32_t* logit_rows_ = nullptr;
    int32_t* tiles_ = nullptr;     // prefill attention tiles, see StepTokens
    int32_t* next_ids_ = nullptr;  // argmax results
};

}  // namespace lamina
