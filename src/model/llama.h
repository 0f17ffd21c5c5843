// The LLaMA forward pass: one step over a flat batch of tokens, one loop over the layers calling backend ops
// in the order of the paper. It owns nothing: the runner (runtime/model_runner.h) gives it the weights, the KV
// cache, the RoPE table and the step's activation buffers, and runs it (from a captured graph when it can).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "backend/backend.h"
#include "model/llama_weights.h"
#include "model/model_config.h"

namespace lamina {

class Communicator;

// One step's activations, [max_step_tokens, width] each, in backend memory.
struct LlamaBuffers {
    TensorView x;            // [n_embd]: the residual stream
    TensorView h;            // [n_embd]: its normalized copy
    TensorView qkv;          // [q_dim + 2 kv_dim]
    TensorView attn;         // [q_dim]
    TensorView proj;         // [n_embd]: a sublayer's output
    TensorView gate_up;      // [2 n_ff]
    TensorView ff;           // [n_ff]
    TensorView last;         // [n_embd]: the rows that need logits
    TensorView logits;       // [n_vocab]
    TensorView logits_part;  // [the rank's n_vocab shard] (tensor-parallel ranks only)
};

// What a step reads besides its tokens.
struct LlamaPass {
    const ModelConfig& config;  // the rank's shapes with tensor parallelism
    const LlamaWeights& weights;
    KvCache& kv;
    const TensorView& rope_cos_sin;  // [n_ctx, head_dim]: cos in the first half of a row, sin in the second
    AttentionShape shape;
    bool rmsnorm_plugin = true;  // the fused RMSNorm kernels; off: their unfused composition and the plain ops
    Communicator* comm = nullptr;  // tensor parallelism: this rank's collectives
    // Called after every named intermediate ("blk.3.attn_out", ...), after a synchronize; when set, the step
    // takes the plain ops so that every intermediate exists.
    std::function<void(const std::string& name, const TensorView& value)> on_intermediate;
};

// Issues every op of one step (nothing synchronizes unless on_intermediate is set): embedding to the logits of
// the n_logits tokens at logit_rows (backend memory), into buf.logits' first n_logits rows.
void llama_forward(Backend& backend, const LlamaPass& pass, const LlamaBuffers& buf, const StepTokens& tok,
                   const int32_t* logit_rows, int64_t n_logits);

// Row p of the RoPE table, for p < n_ctx: [a cos(p f_i) for i < head_dim/2, a sin(p f_i) ...], angles in f32 as
// HF computes them; a is yarn's attention factor (1 otherwise).
std::vector<float> llama_rope_table(const ModelConfig& config, int64_t n_ctx);

}  // namespace lamina
