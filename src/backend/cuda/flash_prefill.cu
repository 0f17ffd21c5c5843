// Prefill attention on tensor cores, FlashAttention-2 style: causal, GQA, head_dim 64 or 128, f16/bf16.
//
//   out[t, h] = sum_p softmax_p(q[t, h] . k[p, h / group] * scale) v[p, h / group],  p <= pos[t]
//
// Shapes: qkv [tokens, >= n_head * HD] (the fused QKV rows; q is the first n_head * HD columns), the KV
// cache [slot][layer][pos][kv_dim] already holding this step's keys and values (rope_kv_write ran
// first), out [tokens, n_head * HD]. Work comes as tiles of at most 64 query tokens of one sequence at
// consecutive positions (StepTokens::tiles).
// Thread mapping: a block of 4 warps takes one (tile, head); each warp owns 16 query rows. Key/value
// tiles of 64 rows are streamed through shared memory with cp.async, double-buffered (the next tile's
// copy is in flight while this one is used). Everything per row stays in registers: the warp's Q
// fragments, the 16 x 64 score block S = Q K^T (mma.sync m16n8k16, f32 accumulate), its online softmax
// (f32 max and sum, exp2 with the scale folded in), P re-packed from S's accumulators straight into A
// fragments, and the 16 x HD output accumulator O += P V. Shared-memory rows are padded by 16 bytes so
// the ldmatrix row fetches hit distinct banks.
// FLOPs: 4 * HD per (query, visible key) pair and head; bytes: Q and out once, K and V once per query
// tile (L2 serves the heads of a GQA group). The target is the tensor cores' rate.
#include <type_traits>

#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

constexpr int kRows = 64;        // query rows per block (= kAttentionTileRows)
constexpr int kKeys = 64;        // keys per shared-memory tile
constexpr int kWarps = kRows / 16;
constexpr int kPad = 8;          // elements of padding per shared-memory row (16 bytes)
static_assert(kRows == kAttentionTileRows);

template <int HD>
constexpr int kStride = HD + kPad;

template <int HD>
constexpr size_t smem_bytes() {
    return static_cast<size_t>(kRows + 4 * kKeys) * kStride<HD> * 2;  // Q, then K and V in two stages
}

using cuda::smem_addr;

// 16-byte global -> shared copy; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// d += a b: m16n8k16, f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (std::is_same_v<T, __half>) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    T v[2] = {cuda::from_float<T>(lo), cuda::from_float<T>(hi)};
    uint32_t r;
    memcpy(&r, v, 4);
    return r;
}

// Copies `n_rows` rows of HD elements (row i at src + i * src_stride) into a padded shared tile;
// rows at or past `valid` are zero-filled.
template <typename T, int HD, int ROWS>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t src_stride, int valid) {
    constexpr int kVecs = HD / 8;  // 16-byte vectors per row
    for (int i = threadIdx.x; i < ROWS * kVecs; i += kWarps * 32) {
        const int r = i / kVecs, c = (i % kVecs) * 8;
        const bool ok = r < valid;
        cp_async16(dst + r * kStride<HD> + c, src + (ok ? static_cast<int64_t>(r) * src_stride + c : 0), ok);
    }
}

template <typename T, int HD>
__global__ void __launch_bounds__(kWarps * 32, 2)
    flash_prefill_kernel(const T* __restrict__ qkv, int64_t qkv_stride, const int32_t* __restrict__ tiles,
                         const T* __restrict__ k_cache, const T* __restrict__ v_cache, KvCache g,
                         int64_t layer, int group, float scale_log2, T* __restrict__ out, int64_t out_stride) {
    extern __shared__ __align__(16) unsigned char smem[];
    cuda::pdl_wait();
    constexpr int S = kStride<HD>;
    T* sQ = reinterpret_cast<T*>(smem);
    T* sK = sQ + kRows * S;        // [2][kKeys][S]
    T* sV = sK + 2 * kKeys * S;    // [2][kKeys][S]

    // The heaviest tiles (latest positions: most keys) start first.
    const int32_t* tile = tiles + 4 * (gridDim.x - 1 - blockIdx.x);
    const int t0 = tile[0], rows = tile[1], slot = tile[2], pos0 = tile[3];
    const int h = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int n_keys = pos0 + rows;
    const int n_tiles = (n_keys + kKeys - 1) / kKeys;
    const int64_t base = g.offset(slot, layer, 0) + static_cast<int64_t>(h / group) * HD;

    load_tile<T, HD, kRows>(sQ, qkv + static_cast<int64_t>(t0) * qkv_stride + static_cast<int64_t>(h) * HD,
                            qkv_stride, rows);
    load_tile<T, HD, kKeys>(sK, k_cache + base, g.kv_dim, n_keys);
    load_tile<T, HD, kKeys>(sV, v_cache + base, g.kv_dim, n_keys);
    cp_async_commit();

    // This thread's two rows of the warp's 16 (the m16n8 accumulator layout): lane / 4 and lane / 4 + 8.
    const int row0 = warp * 16 + lane / 4;
    const int qpos0 = pos0 + row0, qpos1 = qpos0 + 8;
    uint32_t qf[HD / 16][4];
    float o[HD / 8][4] = {};
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // running max (log2 units), partial sums

    for (int kt = 0; kt < n_tiles; ++kt) {
        const int stage = kt & 1;
        if (kt + 1 < n_tiles) {
            const int k1 = (kt + 1) * kKeys;
            load_tile<T, HD, kKeys>(sK + (stage ^ 1) * kKeys * S, k_cache + base + static_cast<int64_t>(k1) * g.kv_dim,
                                    g.kv_dim, n_keys - k1);
            load_tile<T, HD, kKeys>(sV + (stage ^ 1) * kKeys * S, v_cache + base + static_cast<int64_t>(k1) * g.kv_dim,
                                    g.kv_dim, n_keys - k1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int kk = 0; kk < HD / 16; ++kk)
                ldmatrix_x4(qf[kk], sQ + (warp * 16 + lane % 16) * S + kk * 16 + (lane / 16) * 8);
        }
        const T* tK = sK + stage * kKeys * S;
        const T* tV = sV + stage * kKeys * S;
        const int k0 = kt * kKeys;

        // S = Q K^T: 16 rows x 64 keys as 8 accumulators of m16n8.
        float s[kKeys / 8][4] = {};
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < kKeys / 16; ++np) {
                uint32_t b[4];
                ldmatrix_x4(b, tK + (np * 16 + lane % 8 + (lane / 16) * 8) * S + kk * 16 + ((lane / 8) % 2) * 8);
                mma16816<T>(s[2 * np], qf[kk], b[0], b[1]);
                mma16816<T>(s[2 * np + 1], qf[kk], b[2], b[3]);
            }
        }

        // Online softmax in log2 units; keys past a row's position (causal) or past the step are -inf.
        const bool needs_mask = k0 + kKeys - 1 > pos0 + warp * 16;
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int key = k0 + nt * 8 + (lane % 4) * 2 + j;
                s[nt][j] = needs_mask && key > qpos0 ? -INFINITY : s[nt][j] * scale_log2;
                s[nt][2 + j] = needs_mask && key > qpos1 ? -INFINITY : s[nt][2 + j] * scale_log2;
                mx0 = fmaxf(mx0, s[nt][j]);
                mx1 = fmaxf(mx1, s[nt][2 + j]);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        // A row with no visible key yet keeps max -inf: its weights are exp2(-inf) = 0, nothing rescales.
        const float base0 = mx0 == -INFINITY ? 0.0f : mx0, base1 = mx1 == -INFINITY ? 0.0f : mx1;
        const float alpha0 = exp2f(m0 - base0), alpha1 = exp2f(m1 - base1);
        m0 = mx0;
        m1 = mx1;
        l0 *= alpha0;
        l1 *= alpha1;
#pragma unroll
        for (int nt = 0; nt < HD / 8; ++nt) {
            o[nt][0] *= alpha0;
            o[nt][1] *= alpha0;
            o[nt][2] *= alpha1;
            o[nt][3] *= alpha1;
        }
        // P in A-fragment layout: keys 16j..16j+15 are accumulators 2j (cols 0-7) and 2j+1 (cols 8-15).
        uint32_t p[kKeys / 16][4];
#pragma unroll
        for (int j = 0; j < kKeys / 16; ++j) {
            float e[2][4];
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                e[half][0] = exp2f(s[2 * j + half][0] - base0);
                e[half][1] = exp2f(s[2 * j + half][1] - base0);
                e[half][2] = exp2f(s[2 * j + half][2] - base1);
                e[half][3] = exp2f(s[2 * j + half][3] - base1);
                l0 += e[half][0] + e[half][1];
                l1 += e[half][2] + e[half][3];
            }
            p[j][0] = pack2<T>(e[0][0], e[0][1]);
            p[j][1] = pack2<T>(e[0][2], e[0][3]);
            p[j][2] = pack2<T>(e[1][0], e[1][1]);
            p[j][3] = pack2<T>(e[1][2], e[1][3]);
        }

        // O += P V: V rows are keys (the k dimension), read transposed into B fragments.
#pragma unroll
        for (int j = 0; j < kKeys / 16; ++j) {
#pragma unroll
            for (int np = 0; np < HD / 16; ++np) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, tV + (j * 16 + lane % 16) * S + np * 16 + (lane / 16) * 8);
                mma16816<T>(o[2 * np], p[j], b[0], b[1]);
                mma16816<T>(o[2 * np + 1], p[j], b[2], b[3]);
            }
        }
        __syncthreads();  // this stage is refilled by the next iteration's prefetch
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    T* out0 = out + static_cast<int64_t>(t0 + row0) * out_stride + static_cast<int64_t>(h) * HD + (lane % 4) * 2;
    T* out1 = out0 + 8 * out_stride;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
        if (row0 < rows) *reinterpret_cast<uint32_t*>(out0 + nt * 8) = pack2<T>(o[nt][0] * inv0, o[nt][1] * inv0);
        if (row0 + 8 < rows) *reinterpret_cast<uint32_t*>(out1 + nt * 8) = pack2<T>(o[nt][2] * inv1, o[nt][3] * inv1);
    }
}

template <typename T, int HD>
void launch(const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer, const KvCache& cache,
            TensorView out, cudaStream_t stream) {
    constexpr size_t smem = smem_bytes<HD>();
    // Over 48 KB of dynamic shared memory needs the kernel's limit raised (a cheap host call).
    CUDA_CHECK(cudaFuncSetAttribute(flash_prefill_kernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
    constexpr float kLog2e = 1.4426950408889634f;
    const dim3 grid(static_cast<unsigned>(tok.n_tiles), static_cast<unsigned>(s.n_head));
    cuda::launch_pdl(flash_prefill_kernel<T, HD>, grid, kWarps * 32, smem, stream,
        static_cast<const T*>(qkv.data), qkv.row_stride, tok.tiles, static_cast<const T*>(cache.k),
        static_cast<const T*>(cache.v), cache, layer,
        static_cast<int>(s.n_head / s.n_head_kv), s.scale * kLog2e, static_cast<T*>(out.data), out.row_stride);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

bool flash_prefill(DType act, const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer,
                   const KvCache& cache, TensorView out, cudaStream_t stream) {
    if (tok.n_tiles == 0 || act == DType::F32 || (s.head_dim != 64 && s.head_dim != 128) || !vector_rows(qkv, 8) ||
        out.row_stride % 2 != 0 || cache.kv_dim % 8 != 0)
        return false;
    if (act == DType::F16) {
        if (s.head_dim == 64) launch<__half, 64>(qkv, tok, s, layer, cache, out, stream);
        else launch<__half, 128>(qkv, tok, s, layer, cache, out, stream);
    } else {
        if (s.head_dim == 64) launch<__nv_bfloat16, 64>(qkv, tok, s, layer, cache, out, stream);
        else launch<__nv_bfloat16, 128>(qkv, tok, s, layer, cache, out, stream);
    }
    return true;
}

}  // namespace lamina
