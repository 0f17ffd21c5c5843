// The KV cache's memory: n_slot sequences' keys and values for every layer, allocated once in the backend's
// memory and addressed through KvCache::offset (slot-contiguous: a slot holds n_ctx positions). The runtime
// owns it and hands its view to the forward pass; a slot is one sequence's cache.
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace lamina {

class KvPool {
public:
    KvPool(Backend& backend, DType dtype, int64_t n_slot, int64_t n_layer, int64_t n_ctx, int64_t kv_dim);
    ~KvPool();
    KvPool(const KvPool&) = delete;
    KvPool& operator=(const KvPool&) = delete;

    KvCache& cache() { return cache_; }
    const KvCache& cache() const { return cache_; }
    int64_t n_slot() const { return cache_.n_slot; }
    int64_t n_ctx() const { return cache_.n_ctx; }
    size_t bytes() const { return cache_.bytes(); }

    // Copies positions [0, n_positions) of slot src into slot dst, every layer (beam search forks this way).
    void copy_slot(int64_t src, int64_t dst, int64_t n_positions);

private:
    Backend& backend_;
    KvCache cache_;
};

}  // namespace lamina
