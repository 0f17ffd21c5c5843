// RoPE fused with the KV-cache write.
//
// qkv row (one token): [q: n_head * head_dim | k: n_head_kv * head_dim | v: n_head_kv * head_dim].
// For each q and k head, pairs (i, i + head_dim/2) are rotated by angle pos * inv_freq[i] (HF's
// rotate-half form), using the f32 table rope_cos_sin[pos] = [cos.., sin..]; rotated q stays in qkv,
// rotated k and the untouched v go to the cache at (slot, layer, pos). Rotation in f32, one rounding.
// Threads: grid (n_tokens, n_head + 2 n_head_kv), one thread per pair. Bytes: read qkv once, write
// q back and k, v to the cache: ~2 * n * qkv_dim * sizeof(T).
#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

template <typename T>
__global__ void rope_kv_write_kernel(T* qkv, int64_t stride, const int32_t* positions, const int32_t* slots,
                                     const float* cos_sin, int head_dim, int n_head, int n_head_kv, T* k_cache,
                                     T* v_cache, int64_t n_layer, int64_t n_ctx, int64_t layer) {
    const int64_t t = blockIdx.x;
    const int h = blockIdx.y;
    const int half = head_dim / 2;
    const int pos = positions[t];
    const int64_t kv_dim = static_cast<int64_t>(n_head_kv) * head_dim;
    const int64_t cache_row = ((static_cast<int64_t>(slots[t]) * n_layer + layer) * n_ctx + pos) * kv_dim;
    T* row = qkv + t * stride;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        T* x = row + static_cast<int64_t>(h) * head_dim;
        if (h < n_head + n_head_kv) {
            const float c = cos_sin[static_cast<int64_t>(pos) * head_dim + i];
            const float s = cos_sin[static_cast<int64_t>(pos) * head_dim + half + i];
            const float x0 = cuda::to_float(x[i]), x1 = cuda::to_float(x[i + half]);
            const T y0 = cuda::from_float<T>(x0 * c - x1 * s);
            const T y1 = cuda::from_float<T>(x1 * c + x0 * s);
            x[i] = y0;
            x[i + half] = y1;
            if (h >= n_head) {
                T* k = k_cache + cache_row + static_cast<int64_t>(h - n_head) * head_dim;
                k[i] = y0;
                k[i + half] = y1;
            }
        } else {
            T* v = v_cache + cache_row + static_cast<int64_t>(h - n_head - n_head_kv) * head_dim;
            v[i] = x[i];
            v[i + half] = x[i + half];
        }
    }
}

}  // namespace

void CudaBackend::rope_kv_write(TensorView qkv, const StepTokens& tok, const TensorView& rope_cos_sin,
                                const AttentionShape& s, int64_t layer, KvCache& cache) {
    LAMINA_CHECK(qkv.dtype == act_ && cache.dtype == act_ && rope_cos_sin.dtype == DType::F32);
    LAMINA_CHECK(qkv.cols == (s.n_head + 2 * s.n_head_kv) * s.head_dim && rope_cos_sin.cols == s.head_dim);
    if (tok.n_tokens == 0) return;
    const dim3 grid(static_cast<unsigned>(tok.n_tokens), static_cast<unsigned>(s.n_head + 2 * s.n_head_kv));
    const int threads = static_cast<int>(std::min<int64_t>(1024, (s.head_dim / 2 + 31) / 32 * 32));
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        rope_kv_write_kernel<T><<<grid, threads, 0, stream_>>>(
            static_cast<T*>(qkv.data), qkv.row_stride, tok.positions, tok.slots,
            static_cast<const float*>(rope_cos_sin.data), static_cast<int>(s.head_dim), static_cast<int>(s.n_head),
            static_cast<int>(s.n_head_kv), static_cast<T*>(cache.k), static_cast<T*>(cache.v), cache.n_layer,
            cache.n_ctx, layer);
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
