// RoPE fused with the KV-cache write.
//
// qkv row (one token): [q: n_head * head_dim | k: n_head_kv * head_dim | v: n_head_kv * head_dim].
// For each q and k head, pairs (i, i + head_dim/2) are rotated by angle pos * inv_freq[i] (HF's
// rotate-half form), using the f32 table rope_cos_sin[pos] = [cos.., sin..]; rotated q stays in qkv,
// rotated k and the untouched v go to the cache at (slot, layer, pos). Rotation in f32, one rounding.
// Threads: one per 4 consecutive elements (8-byte vectors) of a half-head with their partners, or of a
// v head to copy, over all tokens in a flat grid. Bytes: read qkv once, write q back and k, v to the
// cache: ~2 * n * qkv_dim * sizeof(T).
#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

// One thread per work item of VEC consecutive elements: rotating items (q and k heads; elements
// i..i+VEC-1 with their partners i+half..) first, then copying items (v heads), for each token.
template <typename T, int VEC>
__global__ void rope_kv_write_kernel(T* qkv, int64_t stride, const int32_t* positions, const int32_t* slots,
                                     const float* cos_sin, int head_dim, int n_head, int n_head_kv, T* k_cache,
                                     T* v_cache, KvCache g, int64_t layer, int64_t n_tokens) {
    cuda::pdl_wait();
    using Raw = cuda::Packed<T, VEC>;
    const int half = head_dim / 2;
    const int rot_items = (n_head + n_head_kv) * (half / VEC);
    const int items = rot_items + n_head_kv * (head_dim / VEC);
    const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (gid >= n_tokens * items) return;
    const int64_t t = gid / items;
    const int item = static_cast<int>(gid % items);
    const int pos = positions[t];
    T* row = qkv + t * stride;
    const int64_t cache_row = g.offset(slots[t], layer, pos);
    if (item >= rot_items) {  // v: copied to the cache as is
        const int c = (item - rot_items) * VEC;
        *reinterpret_cast<Raw*>(v_cache + cache_row + c) =
            *reinterpret_cast<const Raw*>(row + static_cast<int64_t>(n_head + n_head_kv) * head_dim + c);
        return;
    }
    const int h = item / (half / VEC), i = (item % (half / VEC)) * VEC;
    T* x = row + static_cast<int64_t>(h) * head_dim;
    const float* cs = cos_sin + static_cast<int64_t>(pos) * head_dim;
    Raw lo = *reinterpret_cast<const Raw*>(x + i), hi = *reinterpret_cast<const Raw*>(x + i + half);
    T* l = reinterpret_cast<T*>(&lo);
    T* u = reinterpret_cast<T*>(&hi);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
        const float c = cs[i + j], s = cs[half + i + j];
        const float x0 = cuda::to_float(l[j]), x1 = cuda::to_float(u[j]);
        l[j] = cuda::from_float<T>(x0 * c - x1 * s);
        u[j] = cuda::from_float<T>(x1 * c + x0 * s);
    }
    *reinterpret_cast<Raw*>(x + i) = lo;
    *reinterpret_cast<Raw*>(x + i + half) = hi;
    if (h >= n_head) {
        T* k = k_cache + cache_row + static_cast<int64_t>(h - n_head) * head_dim;
        *reinterpret_cast<Raw*>(k + i) = lo;
        *reinterpret_cast<Raw*>(k + i + half) = hi;
    }
}

}  // namespace

void CudaBackend::rope_kv_write(TensorView qkv, const StepTokens& tok, const TensorView& rope_cos_sin,
                                const AttentionShape& s, int64_t layer, KvCache& cache) {
    LAMINA_CHECK(qkv.dtype == act_ && cache.dtype == act_ && rope_cos_sin.dtype == DType::F32);
    LAMINA_CHECK(qkv.cols == (s.n_head + 2 * s.n_head_kv) * s.head_dim && rope_cos_sin.cols == s.head_dim);
    if (tok.n_tokens == 0) return;
    constexpr int kThreads = 256;
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        auto go = [&]<int VEC>() {
            const int64_t items = (s.n_head + s.n_head_kv) * (s.head_dim / 2 / VEC) + s.n_head_kv * (s.head_dim / VEC);
            const int blocks = cuda::ceil_div(tok.n_tokens * items, kThreads);
            cuda::launch_pdl(rope_kv_write_kernel<T, VEC>, blocks, kThreads, 0, stream_,
                static_cast<T*>(qkv.data), qkv.row_stride, tok.positions, tok.slots,
                static_cast<const float*>(rope_cos_sin.data), static_cast<int>(s.head_dim), static_cast<int>(s.n_head),
                static_cast<int>(s.n_head_kv), static_cast<T*>(cache.k), static_cast<T*>(cache.v),
                cache, layer, tok.n_tokens);
        };
        // 8-byte vectors of four elements when the half-head, the rows and the buffers allow it.
        constexpr int kVec = 8 / sizeof(T) >= 2 ? 8 / sizeof(T) : 1;
        const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; };
        if ((s.head_dim / 2) % kVec == 0 && qkv.row_stride % kVec == 0 && aligned(qkv.data) && aligned(cache.k) &&
            aligned(cache.v))
            go.template operator()<kVec>();
        else
            go.template operator()<1>();
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
