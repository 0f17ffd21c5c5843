// How much KV cache a model gets. By default the engine's limits decide: one slot per sequence held at
// once, each with room for max_input_len + max_output_len positions. An explicit byte budget
// (`--kv_cache_bytes`) instead sizes the cache to at most that many bytes by shortening the context of
// every slot; never "a fraction of whatever memory is free". With tensor parallelism the budget is per
// rank (each GPU's cache holds its ranks' KV heads).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "runtime/step_runner.h"
#include "runtime/engine.h"

namespace lamina {

// Prefill chunk size: large enough for the matrix units to reach their rate, small enough to keep
// activation buffers modest.
inline constexpr int64_t kMaxPrefillChunk = 512;

// Bytes of K and V one position of one sequence takes across all layers (of config's KV heads: pass a
// rank's config for what one tensor-parallel rank holds).
uint64_t kv_bytes_per_position(const ModelConfig& c, DType kv_dtype);

// Limits for n_slot sequences at once (1 <= n_slot <= max_batch_size, checked by the caller). With
// kv_cache_bytes > 0 the context per slot is what fits the budget, capped at the engine's; a budget that
// cannot hold one position per sequence is a lamina::Error naming the bytes needed.
ModelLimits plan_model_limits(const Engine& e, int64_t n_slot, DType kv_dtype, uint64_t kv_cache_bytes);

// Throws a lamina::Error when a sequence of prompt_len + max_new_tokens positions does not fit a slot.
void check_fits_kv_cache(const ModelLimits& m, int64_t prompt_len, int64_t max_new_tokens, size_t index);

}  // namespace lamina
