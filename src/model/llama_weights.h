// The weights of a LLaMA model as views (in a mapped engine file, or rebased onto its uploaded copy):
// what the engine resolves and what the model's forward pass reads.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace lamina {

struct LayerWeights {
    TensorView attn_norm;  // [n_embd] f32
    TensorView wqkv;       // [q_dim + 2 kv_dim, n_embd]
    TensorView bqkv;       // [q_dim + 2 kv_dim] f32, empty without attention bias
    TensorView wo;         // [n_embd, q_dim]
    TensorView bo;         // [n_embd] f32, optional
    TensorView ffn_norm;   // [n_embd] f32
    TensorView w_gate_up;  // [2 n_ff, n_embd]: gate rows, then up rows
    TensorView b_gate_up;  // [2 n_ff] f32, optional
    TensorView w_down;     // [n_embd, n_ff]
    TensorView b_down;     // [n_embd] f32, optional
};

// Shapes are a rank's (EngineRank::config); with tp_size > 1 the vocabulary is split too:
// tok_embd is [n_vocab_shard + 1, n_embd] (the last row zeros) and output [n_vocab_shard, n_embd].
struct LlamaWeights {
    TensorView tok_embd;     // [n_vocab, n_embd]
    TensorView output_norm;  // [n_embd] f32
    TensorView output;       // [n_vocab, n_embd]; tok_embd's first rows when embeddings are tied
    std::vector<LayerWeights> layers;
};

}  // namespace lamina
