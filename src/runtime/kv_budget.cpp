#include "runtime/kv_budget.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace lamina {

uint64_t kv_bytes_per_position(const ModelConfig& c, DType kv_dtype) {
    return 2 * static_cast<uint64_t>(c.n_layer * c.kv_dim()) * dtype_size(kv_dtype);
}

ModelLimits plan_model_limits(const Engine& e, int64_t n_slot, DType kv_dtype, uint64_t kv_cache_bytes) {
    ModelLimits m;
    m.n_slot = n_slot;
    m.n_ctx = e.limits().max_input_len + e.limits().max_output_len;
    m.max_step_tokens = std::max(n_slot, std::min(e.limits().max_input_len, kMaxPrefillChunk));
    if (kv_cache_bytes > 0) {
        // Each tensor-parallel rank holds the KV heads of its share: the budget is per rank (per GPU).
        const uint64_t per_slot_position =
            kv_bytes_per_position(e.rank(0).config, kv_dtype) * static_cast<uint64_t>(n_slot);
        const auto fit = static_cast<int64_t>(kv_cache_bytes / per_slot_position);
        if (fit < 1)
            throw Error("--kv_cache_bytes " + std::to_string(kv_cache_bytes) + " holds no position for " +
                        std::to_string(n_slot) + " sequence(s): one position of each takes " +
                        std::to_string(per_slot_position) + " bytes" + (e.tp_size() > 1 ? " per rank" : ""));
        m.n_ctx = std::min(m.n_ctx, fit);
    }
    return m;
}

void check_fits_kv_cache(const ModelLimits& m, int64_t prompt_len, int64_t max_new_tokens, size_t index) {
    if (prompt_len + max_new_tokens > m.n_ctx)
        throw Error("prompt " + std::to_string(index) + " needs " + std::to_string(prompt_len) + " + " +
                    std::to_string(max_new_tokens) + " positions, more than the KV cache's " +
                    std::to_string(m.n_ctx) + " per sequence (raise --kv_cache_bytes or shorten the request)");
}

}  // namespace lamina
