// How a model splits over tp_size tensor-parallel ranks (Megatron-style), shared by `lamina build`
// (which cuts the weights) and the engine loader (which checks the rank files against it).
//
//   wqkv       column-parallel: rank r holds query heads [r*n_head, (r+1)*n_head) of its share and the
//              KV heads they attend to (split when n_head_kv % tp_size == 0, else replicated: every
//              kv_replicas consecutive ranks hold the same one KV head)
//   wo         row-parallel: the input columns of the rank's query heads; the partial products are
//              summed by an all-reduce (bias on rank 0 only, so it is added once)
//   w_gate_up  column-parallel: gate and up rows [r*n_ff, (r+1)*n_ff) of the rank's share
//   w_down     row-parallel: the matching input columns; all-reduce (bias on rank 0 only)
//   tok_embd   vocabulary-parallel: rows [r*n_vocab_shard, (r+1)*n_vocab_shard), the last shard
//              zero-padded, plus one zero row that stands for "a token of another rank"; the embedding
//              is completed by an all-reduce
//   output     vocabulary-parallel like tok_embd (without the extra row); logits are all-gathered
//   norms      replicated
#pragma once

#include <cstdint>

#include "model/model_config.h"

namespace lamina {

struct TpSharding {
    int tp_size = 1;
    int64_t n_head = 0;         // query heads per rank
    int64_t n_head_kv = 0;      // KV heads per rank
    int64_t kv_replicas = 1;    // ranks that hold the same KV heads (1 when KV heads are split)
    int64_t n_ff = 0;           // MLP columns per rank
    int64_t n_vocab_shard = 0;  // vocabulary rows per rank: ceil(n_vocab / tp_size)

    int64_t first_head(int rank) const { return rank * n_head; }
    int64_t first_head_kv(int rank) const { return rank / kv_replicas * n_head_kv; }
    int64_t first_ff(int rank) const { return rank * n_ff; }
    int64_t first_vocab(int rank) const { return rank * n_vocab_shard; }
    // The row of a rank's tok_embd that is all zeros (tp_size > 1): ids of other ranks map to it.
    int64_t zero_row() const { return n_vocab_shard; }

    // The config one rank runs: n_head, n_head_kv and n_ff are the rank's; n_vocab stays the whole
    // vocabulary (token ids and gathered logits are the model's).
    ModelConfig rank_config(const ModelConfig& c) const;
};

// Throws lamina::Error (one line, naming the numbers) when the model cannot be split tp_size ways:
// n_head or n_ff not divisible by tp_size, or n_head_kv neither divisible by tp_size nor a divisor of it.
TpSharding plan_tensor_parallel(const ModelConfig& c, int64_t tp_size);

}  // namespace lamina
