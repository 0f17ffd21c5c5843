#include "runtime/kv_budget.h"

#include <algorithm>
#include <string>

#include "core/checked.h"
#include "core/error.h"

namespace lamina {

uint64_t kv_bytes_per_position(const ModelConfig& c, DType kv_dtype) {
    const char* what = "KV bytes per position (2 * n_layer * kv_dim * dtype size)";
    const auto elems = static_cast<uint64_t>(checked_mul(c.n_layer, c.kv_dim(), what));
    return checked_mul(checked_mul(uint64_t{2}, elems, what), uint64_t{dtype_size(kv_dtype)}, what);
}

ModelLimits plan_model_limits(const Engine& e, int64_t n_slot, DType kv_dtype, uint64_t kv_cache_bytes) {
    ModelLimits m;
    m.n_slot = n_slot;
    m.n_ctx = checked_add(e.limits().max_input_len, e.limits().max_output_len, "max_input_len + max_output_len");
    m.max_step_tokens = std::max(n_slot, std::min(e.limits().max_input_len, kMaxPrefillChunk));
    if (kv_cache_bytes > 0) {
        // Each tensor-parallel rank holds the KV heads of its share: the budget is per rank (per GPU).
        const uint64_t per_slot_position = checked_mul(kv_bytes_per_position(e.rank(0).config, kv_dtype),
                                                       static_cast<uint64_t>(n_slot), "KV bytes per position of every slot");
        const auto fit = static_cast<int64_t>(std::min<uint64_t>(kv_cache_bytes / per_slot_position, kMaxContext));
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
