// Causal GQA attention over the KV cache.
//
//   out[t, h] = sum_p softmax_p(q[t, h] . k[slot t, p, h / group] * scale) v[slot t, p, h / group],
//   p in [0, pos[t]]; softmax statistics (max, sum) in f32.
//
// Two kernels:
// - flash_prefill_kernel (head_dim 64 or 128, f16/bf16): a query tile of up to 64 tokens of one
//   sequence per block (4 warps x 16 rows), key/value tiles of 64 streamed through shared memory,
//   S = Q K^T and O += P V on tensor cores (WMMA 16x16x16, f32 accumulate), online softmax in f32.
//   The score matrix is never written to memory. FLOPs ~ 4 n_q n_k head_dim per head (half masked).
// - split_kernel + combine_kernel (any head_dim, any token mix; used for decode): flash-decoding.
//   Each token's key range is cut into splits so one sequence fills the GPU; a warp streams keys,
//   keeping a running max/sum/accumulator; splits are merged by the combine kernel. Bytes: the K and V
//   cache of each token's sequence, read once per query head (the group shares through L2).
#include <algorithm>

#include "backend/cuda/cuda_backend_impl.h"
// After cuda_bf16.h (via the backend header): mma.h declares bf16 fragments only when it sees it.
#include <mma.h>

namespace lamina {

namespace {

constexpr int kSplitWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxLaneElems = kMaxHeadDim / 32;
constexpr int64_t kTargetBlocks = 1024;  // enough split blocks to fill 132 SMs several times over
constexpr int kMinSplitKeys = 32;
constexpr int kKeysPerStep = 4;  // keys a warp of split_kernel has in flight at once

struct CacheGeometry {
    int64_t n_layer, n_ctx, kv_dim;
    __device__ int64_t offset(int64_t slot, int64_t layer, int64_t pos) const {
        return ((slot * n_layer + layer) * n_ctx + pos) * kv_dim;
    }
};

template <typename T>
__global__ void __launch_bounds__(kSplitWarps * 32)
    split_kernel(const T* qkv, int64_t qkv_stride, const int32_t* positions, const int32_t* slots, const T* k_cache,
                 const T* v_cache, CacheGeometry g, int64_t layer, int n_head, int group, int head_dim, float scale,
                 int chunk, float* partials) {
    const int t = blockIdx.z, h = blockIdx.y, split = blockIdx.x, n_splits = gridDim.x;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int n_pos = positions[t] + 1;
    const int begin = split * chunk, end = min(begin + chunk, n_pos);
    float* part = partials + ((static_cast<int64_t>(t) * n_head + h) * n_splits + split) * (head_dim + 2);
    if (begin >= end) {
        if (threadIdx.x == 0) {
            part[head_dim] = -INFINITY;
            part[head_dim + 1] = 0.0f;
        }
        return;
    }
    const T* q = qkv + static_cast<int64_t>(t) * qkv_stride + static_cast<int64_t>(h) * head_dim;
    float qv[kMaxLaneElems];
#pragma unroll
    for (int j = 0; j < kMaxLaneElems; ++j) {
        const int e = lane + 32 * j;
        qv[j] = e < head_dim ? cuda::to_float(q[e]) * scale : 0.0f;
    }
    const int64_t base = g.offset(slots[t], layer, 0) + static_cast<int64_t>(h / group) * head_dim;
    // Each warp takes kKeysPerStep keys at a time: their K and V rows are all loaded before the first is
    // used (memory-level parallelism), then the running max/sum/accumulator absorbs them together.
    float m = -INFINITY, l = 0.0f, acc[kMaxLaneElems] = {};
    for (int p0 = begin + warp * kKeysPerStep; p0 < end; p0 += kSplitWarps * kKeysPerStep) {
        float kv[kKeysPerStep][kMaxLaneElems], vv[kKeysPerStep][kMaxLaneElems];
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u) {
            const int64_t off = base + static_cast<int64_t>(min(p0 + u, end - 1)) * g.kv_dim;
#pragma unroll
            for (int j = 0; j < kMaxLaneElems; ++j) {
                const int e = lane + 32 * j;
                kv[u][j] = e < head_dim ? cuda::to_float(k_cache[off + e]) : 0.0f;
                vv[u][j] = e < head_dim ? cuda::to_float(v_cache[off + e]) : 0.0f;
            }
        }
        float sc[kKeysPerStep];
        float m_new = m;
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u) {
            float d = 0.0f;
#pragma unroll
            for (int j = 0; j < kMaxLaneElems; ++j) d += qv[j] * kv[u][j];
            sc[u] = p0 + u < end ? cuda::warp_sum(d) : -INFINITY;
            m_new = fmaxf(m_new, sc[u]);
        }
        const float corr = __expf(m - m_new);
        l *= corr;
#pragma unroll
        for (int j = 0; j < kMaxLaneElems; ++j) acc[j] *= corr;
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u) {
            const float w = __expf(sc[u] - m_new);  // 0 for the keys past `end`
            l += w;
#pragma unroll
            for (int j = 0; j < kMaxLaneElems; ++j) acc[j] += w * vv[u][j];
        }
        m = m_new;
    }
    // Merge the warps' running states.
    __shared__ float sm_m[kSplitWarps], sm_l[kSplitWarps], sm_acc[kSplitWarps][kMaxHeadDim];
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < kMaxLaneElems; ++j) {
        const int e = lane + 32 * j;
        if (e < head_dim) sm_acc[warp][e] = acc[j];
    }
    __syncthreads();
    float big = -INFINITY;
    for (int w = 0; w < kSplitWarps; ++w) big = fmaxf(big, sm_m[w]);
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
        float a = 0.0f;
        for (int w = 0; w < kSplitWarps; ++w)
            if (sm_l[w] > 0.0f) a += sm_acc[w][e] * __expf(sm_m[w] - big);
        part[e] = a;
    }
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int w = 0; w < kSplitWarps; ++w)
            if (sm_l[w] > 0.0f) sum += sm_l[w] * __expf(sm_m[w] - big);
        part[head_dim] = big;
        part[head_dim + 1] = sum;
    }
}

template <typename T>
__global__ void combine_kernel(const float* partials, int n_splits, int n_head, int head_dim, T* out, int64_t out_stride) {
    const int t = blockIdx.y, h = blockIdx.x;
    const float* part = partials + (static_cast<int64_t>(t) * n_head + h) * n_splits * (head_dim + 2);
    float big = -INFINITY;
    for (int s = 0; s < n_splits; ++s)
        if (part[s * (head_dim + 2) + head_dim + 1] > 0.0f) big = fmaxf(big, part[s * (head_dim + 2) + head_dim]);
    float sum = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
        const float* p = part + s * (head_dim + 2);
        if (p[head_dim + 1] > 0.0f) sum += p[head_dim + 1] * __expf(p[head_dim] - big);
    }
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < n_splits; ++s) {
            const float* p = part + s * (head_dim + 2);
            if (p[head_dim + 1] > 0.0f) a += p[e] * __expf(p[head_dim] - big);
        }
        out[static_cast<int64_t>(t) * out_stride + static_cast<int64_t>(h) * head_dim + e] = cuda::from_float<T>(a / sum);
    }
}

// ---- tensor-core prefill ----
namespace wmma = nvcuda::wmma;
constexpr int kTile = 64;           // query rows per block and keys per step
constexpr int kPrefillWarps = 4;    // 16 query rows each

// Shared-memory row strides, padded by 16 bytes: rows of 128 or 256 bytes would otherwise start in the
// same bank, and the tensor-core fragment loads and stores (8 rows at a time) would conflict 8 ways.
template <int HD>
constexpr int kStrideQKV = HD + 8;      // T elements
constexpr int kStrideS = kTile + 4;     // f32
constexpr int kStrideP = kTile + 8;     // T
template <int HD>
constexpr int kStrideO = HD + 4;        // f32

template <int HD>
constexpr size_t prefill_smem_bytes() {
    // Q, K, V tiles (T), S (f32), P (T), O (f32), with T 2 bytes.
    return 3 * kTile * kStrideQKV<HD> * 2 + kTile * kStrideS * 4 + kTile * kStrideP * 2 + kTile * kStrideO<HD> * 4;
}

template <typename T, int HD>
__global__ void __launch_bounds__(kPrefillWarps * 32)
    flash_prefill_kernel(const T* qkv, int64_t qkv_stride, const int32_t* tiles, const T* k_cache, const T* v_cache,
                         CacheGeometry g, int64_t layer, int n_head, int group, float scale, T* out, int64_t out_stride) {
    // The bf16 WMMA fragments exist only in device compilation for sm_80+; the host pass sees no body.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    extern __shared__ __align__(16) unsigned char smem[];
    T* sQ = reinterpret_cast<T*>(smem);
    constexpr int QS = kStrideQKV<HD>, SS = kStrideS, PS = kStrideP, OS = kStrideO<HD>;
    T* sK = sQ + kTile * QS;
    T* sV = sK + kTile * QS;
    float* sS = reinterpret_cast<float*>(sV + kTile * QS);
    T* sP = reinterpret_cast<T*>(sS + kTile * SS);
    float* sO = reinterpret_cast<float*>(sP + kTile * PS);

    const int* tile = tiles + 4 * blockIdx.x;
    const int t0 = tile[0], rows = tile[1], slot = tile[2], pos0 = tile[3];
    const int h = blockIdx.y, kvh = h / group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    constexpr int V = 8;  // elements per 16-byte vector
    const int64_t base = g.offset(slot, layer, 0) + static_cast<int64_t>(kvh) * HD;

    for (int i = threadIdx.x; i < kTile * HD / V; i += blockDim.x) {
        const int r = i / (HD / V), c = (i % (HD / V)) * V;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < rows) v = *reinterpret_cast<const uint4*>(qkv + static_cast<int64_t>(t0 + r) * qkv_stride + h * HD + c);
        *reinterpret_cast<uint4*>(sQ + r * QS + c) = v;
    }
    for (int i = threadIdx.x; i < kTile * OS; i += blockDim.x) sO[i] = 0.0f;

    // Softmax state of this warp's 16 rows, held (identically) by every lane. The whole warp works on
    // one row at a time, lanes striding the columns: consecutive lanes touch consecutive words (no bank
    // conflicts in the f32 score and output rows).
    float m[16], l[16];
#pragma unroll
    for (int r = 0; r < 16; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const int n_keys = pos0 + rows;

    for (int k0 = 0; k0 < n_keys; k0 += kTile) {
        __syncthreads();  // previous tile's K/V/P fully used
        for (int i = threadIdx.x; i < kTile * HD / V; i += blockDim.x) {
            const int r = i / (HD / V), c = (i % (HD / V)) * V;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (k0 + r < n_keys) {
                kv = *reinterpret_cast<const uint4*>(k_cache + base + static_cast<int64_t>(k0 + r) * g.kv_dim + c);
                vv = *reinterpret_cast<const uint4*>(v_cache + base + static_cast<int64_t>(k0 + r) * g.kv_dim + c);
            }
            *reinterpret_cast<uint4*>(sK + r * QS + c) = kv;
            *reinterpret_cast<uint4*>(sV + r * QS + c) = vv;
        }
        __syncthreads();

        // S[warp rows, 0:64] = Q K^T
        for (int nf = 0; nf < kTile / 16; ++nf) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < HD / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
                wmma::load_matrix_sync(a, sQ + warp * 16 * QS + kk * 16, QS);
                wmma::load_matrix_sync(b, sK + nf * 16 * QS + kk * 16, QS);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(sS + warp * 16 * SS + nf * 16, acc, SS, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax, row by row; P (rounded to T) is what P V uses, and what l sums.
#pragma unroll
        for (int r = 0; r < 16; ++r) {
            const int row = warp * 16 + r;
            const int q_pos = pos0 + row;
            const bool valid = row < rows;
            float* srow = sS + row * SS;
            float s0 = (valid && k0 + lane <= q_pos) ? srow[lane] * scale : -INFINITY;
            float s1 = (valid && k0 + lane + 32 <= q_pos) ? srow[lane + 32] * scale : -INFINITY;
            const float m_new = fmaxf(m[r], cuda::warp_max(fmaxf(s0, s1)));
            const float alpha = m_new == -INFINITY ? 1.0f : __expf(m[r] - m_new);
            const T p0 = cuda::from_float<T>(m_new == -INFINITY ? 0.0f : __expf(s0 - m_new));
            const T p1 = cuda::from_float<T>(m_new == -INFINITY ? 0.0f : __expf(s1 - m_new));
            T* prow = sP + row * PS;
            prow[lane] = p0;
            prow[lane + 32] = p1;
            l[r] = l[r] * alpha + cuda::warp_sum(cuda::to_float(p0) + cuda::to_float(p1));
            m[r] = m_new;
            float* orow = sO + row * OS;
#pragma unroll
            for (int c = lane; c < HD; c += 32) orow[c] *= alpha;
        }
        __syncwarp();

        // O[warp rows] += P V
        for (int nf = 0; nf < HD / 16; ++nf) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, sO + warp * 16 * OS + nf * 16, OS, wmma::mem_row_major);
            for (int kk = 0; kk < kTile / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
                wmma::load_matrix_sync(a, sP + warp * 16 * PS + kk * 16, PS);
                wmma::load_matrix_sync(b, sV + kk * 16 * QS + nf * 16, QS);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(sO + warp * 16 * OS + nf * 16, acc, OS, wmma::mem_row_major);
        }
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < 16; ++r) {
        const int row = warp * 16 + r;
        if (row >= rows) continue;
        const float inv = 1.0f / l[r];
        T* o = out + static_cast<int64_t>(t0 + row) * out_stride + static_cast<int64_t>(h) * HD;
        const float* orow = sO + row * OS;
        for (int c = lane; c < HD; c += 32) o[c] = cuda::from_float<T>(orow[c] * inv);
    }
#endif
}

template <typename T, int HD>
void launch_flash_prefill(const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer,
                          const KvCache& cache, TensorView out, cudaStream_t stream) {
    constexpr size_t smem = prefill_smem_bytes<HD>();
    // Over 48 KB of dynamic shared memory needs the kernel's limit raised (a cheap host call).
    CUDA_CHECK(cudaFuncSetAttribute(flash_prefill_kernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
    const dim3 grid(static_cast<unsigned>(tok.n_tiles), static_cast<unsigned>(s.n_head));
    flash_prefill_kernel<T, HD><<<grid, kPrefillWarps * 32, smem, stream>>>(
        static_cast<const T*>(qkv.data), qkv.row_stride, tok.tiles, static_cast<const T*>(cache.k),
        static_cast<const T*>(cache.v), CacheGeometry{cache.n_layer, cache.n_ctx, cache.kv_dim}, layer,
        static_cast<int>(s.n_head), static_cast<int>(s.n_head / s.n_head_kv), s.scale, static_cast<T*>(out.data),
        out.row_stride);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::attention(const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer,
                            const KvCache& cache, TensorView out) {
    LAMINA_CHECK(qkv.dtype == act_ && out.dtype == act_ && cache.dtype == act_);
    LAMINA_CHECK(out.cols == s.n_head * s.head_dim && out.rows == tok.n_tokens);
    if (s.head_dim > kMaxHeadDim) throw Error("cuda attention: head_dim " + std::to_string(s.head_dim) + " > 256");
    const bool tensor_cores = tok.n_tiles > 0 && act_ != DType::F32 && (s.head_dim == 64 || s.head_dim == 128) &&
                              qkv.row_stride % 8 == 0;
    if (tensor_cores) {
        if (act_ == DType::F16) {
            if (s.head_dim == 64) launch_flash_prefill<__half, 64>(qkv, tok, s, layer, cache, out, stream_);
            else launch_flash_prefill<__half, 128>(qkv, tok, s, layer, cache, out, stream_);
        } else {
            if (s.head_dim == 64) launch_flash_prefill<__nv_bfloat16, 64>(qkv, tok, s, layer, cache, out, stream_);
            else launch_flash_prefill<__nv_bfloat16, 128>(qkv, tok, s, layer, cache, out, stream_);
        }
        return;
    }
    // Splits depend only on (tokens, heads, cache length), so a captured decode graph stays valid.
    const int64_t max_splits = std::max<int64_t>(1, cache.n_ctx / kMinSplitKeys);
    const int64_t n_splits = std::clamp<int64_t>(kTargetBlocks / (tok.n_tokens * s.n_head), 1, max_splits);
    const int chunk = cuda::ceil_div(cache.n_ctx, n_splits);
    const size_t need = static_cast<size_t>(tok.n_tokens * s.n_head * n_splits * (s.head_dim + 2));
    if (need > attn_partials_n_) {
        if (attn_partials_) retired_.push_back(attn_partials_);  // a captured graph may still point here
        CUDA_CHECK(cudaMalloc(&attn_partials_, need * sizeof(float)));
        attn_partials_n_ = need;
    }
    const dim3 grid(static_cast<unsigned>(n_splits), static_cast<unsigned>(s.n_head), static_cast<unsigned>(tok.n_tokens));
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        split_kernel<T><<<grid, kSplitWarps * 32, 0, stream_>>>(
            static_cast<const T*>(qkv.data), qkv.row_stride, tok.positions, tok.slots, static_cast<const T*>(cache.k),
            static_cast<const T*>(cache.v), CacheGeometry{cache.n_layer, cache.n_ctx, cache.kv_dim}, layer,
            static_cast<int>(s.n_head), static_cast<int>(s.n_head / s.n_head_kv), static_cast<int>(s.head_dim), s.scale,
            chunk, attn_partials_);
        CUDA_CHECK_LAUNCH();
        const dim3 cgrid(static_cast<unsigned>(s.n_head), static_cast<unsigned>(tok.n_tokens));
        const int threads = static_cast<int>(std::min<int64_t>(256, (s.head_dim + 31) / 32 * 32));
        combine_kernel<T><<<cgrid, threads, 0, stream_>>>(attn_partials_, static_cast<int>(n_splits),
                                                           static_cast<int>(s.n_head), static_cast<int>(s.head_dim),
                                                           static_cast<T*>(out.data), out.row_stride);
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
