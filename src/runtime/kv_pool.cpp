#include "runtime/kv_pool.h"

#include <string>

#include "core/error.h"

namespace lamina {

KvPool::KvPool(Backend& backend, DType dtype, int64_t n_slot, int64_t n_layer, int64_t n_ctx, int64_t kv_dim)
    : backend_(backend) {
    LAMINA_CHECK(n_slot > 0 && n_layer > 0 && n_ctx > 0 && kv_dim > 0);
    cache_.dtype = dtype;
    cache_.n_slot = n_slot;
    cache_.n_layer = n_layer;
    cache_.n_ctx = n_ctx;
    cache_.kv_dim = kv_dim;
    cache_.k = backend.alloc(cache_.bytes() / 2);
    try {
        cache_.v = backend.alloc(cache_.bytes() / 2);
    } catch (...) {
        backend.free(cache_.k);
        throw;
    }
}

KvPool::~KvPool() {
    try {  // on a failed device the frees fail with it, and nothing is left to release
        backend_.free(cache_.k);
        backend_.free(cache_.v);
    } catch (const Error&) {
    }
}

void KvPool::copy_slot(int64_t src, int64_t dst, int64_t n_positions) {
    const KvCache& c = cache_;
    LAMINA_CHECK(src >= 0 && src < c.n_slot && dst >= 0 && dst < c.n_slot && n_positions <= c.n_ctx,
                 "copy_slot " + std::to_string(src) + " -> " + std::to_string(dst));
    if (src == dst || n_positions <= 0) return;
    const size_t elem = dtype_size(c.dtype);
    const size_t bytes = static_cast<size_t>(n_positions * c.kv_dim) * elem;
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const size_t from = static_cast<size_t>(c.offset(src, l, 0)) * elem;
        const size_t to = static_cast<size_t>(c.offset(dst, l, 0)) * elem;
        backend_.copy_device(static_cast<char*>(c.k) + to, static_cast<const char*>(c.k) + from, bytes);
        backend_.copy_device(static_cast<char*>(c.v) + to, static_cast<const char*>(c.v) + from, bytes);
    }
}

}  // namespace lamina
