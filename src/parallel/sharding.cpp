#include "parallel/sharding.h"

#include <string>

#include "core/error.h"

namespace lamina {

ModelConfig TpSharding::rank_config(const ModelConfig& c) const {
    ModelConfig r = c;
    r.n_head = n_head;
    r.n_head_kv = n_head_kv;
    r.n_ff = n_ff;
    return r;
}

TpSharding plan_tensor_parallel(const ModelConfig& c, int64_t tp_size) {
    const std::string n = std::to_string(tp_size);
    if (tp_size < 1 || tp_size > 64) throw Error("--tp_size " + n + " is outside [1, 64]");
    if (c.n_head % tp_size != 0)
        throw Error("--tp_size " + n + ": n_head " + std::to_string(c.n_head) + " is not divisible by " + n);
    if (c.n_ff % tp_size != 0)
        throw Error("--tp_size " + n + ": n_ff " + std::to_string(c.n_ff) + " is not divisible by " + n);
    TpSharding s;
    s.tp_size = static_cast<int>(tp_size);
    s.n_head = c.n_head / tp_size;
    s.n_ff = c.n_ff / tp_size;
    s.n_vocab_shard = (c.n_vocab + tp_size - 1) / tp_size;
    if (c.n_head_kv % tp_size == 0) {
        s.n_head_kv = c.n_head_kv / tp_size;
    } else if (tp_size % c.n_head_kv == 0) {
        // Fewer KV heads than ranks: each rank's query heads lie in one KV group (n_head / n_head_kv
        // heads, a multiple of the rank's n_head), so the rank holds a copy of that one KV head.
        s.n_head_kv = 1;
        s.kv_replicas = tp_size / c.n_head_kv;
    } else {
        throw Error("--tp_size " + n + ": n_head_kv " + std::to_string(c.n_head_kv) + " is neither divisible by " + n +
                    " nor a divisor of it (KV heads can be split or replicated, not both)");
    }
    return s;
}

}  // namespace lamina
