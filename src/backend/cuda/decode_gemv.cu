// Fused decode GEMVs: for steps of at most kFusedDecodeMaxTokens tokens, each sublayer is one pass over
// its weight matrix with the ops around it folded into the pass's prologue and epilogue.
//
//   decode_qkv:         [q|k|v] = rmsnorm(x) @ Wqkv^T + b; RoPE on q, k; k, v -> cache[slot, layer, pos]; q -> qkv
//   decode_matmul_add:  residual += x @ W^T + b                       (o_proj, down)
//   decode_gate_up:     out = silu(g) * u, [g | u] = rmsnorm(x) @ Wgu^T + b
//   decode_norm_matmul: out[t] = rmsnorm(x[rows[t]]) @ W^T          (final norm + LM head)
//
// Math: rmsnorm(x) @ W^T = inv(x) * ((x * gain) @ W^T) with inv(x) = rsqrt(mean(x^2) + eps). Every warp
// reads all of x anyway, so it sums x^2 in the same loop and scales its dot products at the end: the norm
// costs no pass (nor kernel) of its own. Each product is rounded to T as the unfused ops store it, then
// the epilogue (bias, residual add, SwiGLU, RoPE) runs in f32 with one rounding per output. The one
// difference from the unfused ops: the normalized x is not rounded to T before the product.
// Shapes: x [n, k] (row stride), W [m, k] (row stride), gain/bias f32; n <= 4 (kFusedDecodeMaxTokens); T = float, half,
// bf16. Threads: one warp per unit of output — a row, or the pair of rows an epilogue needs together (gate row i with
// up row i; RoPE's rows i and i + head_dim/2 of a head) — 8 warps per block. Lanes stream W in 16-byte vectors (not
// kept: evict-first), eight per lane in flight; the first batch is issued before the programmatic-dependent-launch wait,
// so weight reads overlap the previous kernel's tail (the kernels are launched with PDL; without it the wait returns at
// once). Bytes: the weight matrix once, m * k * sizeof(T): at batch 1 the whole cost, so the target is the copy
// bandwidth. x, gains and bias (a few KB) come from L1/L2.
#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

constexpr int kWarps = 8;
constexpr int kLoadsInFlight = 8;  // 16-byte weight loads per lane issued before their first use

enum class Epi { Store, Add, SwiGlu, RopeKv };

template <typename T>
struct FusedArgs {
    const T* x = nullptr;
    int64_t x_stride = 0;
    const int32_t* x_rows = nullptr;  // x row of token t: x_rows[t] when set, else t
    const float* gain = nullptr;      // the RMSNorm prologue's weight (Norm kernels)
    float eps = 0.0f;
    const T* w = nullptr;
    int64_t w_stride = 0;
    const float* bias = nullptr;
    T* out = nullptr;
    int64_t out_stride = 0;
    int units = 0, k = 0;
    int pair_offset = 0;  // SwiGlu: the up row of unit i is i + pair_offset
    // RopeKv
    const int32_t* positions = nullptr;
    const int32_t* slots = nullptr;
    const float* cos_sin = nullptr;
    int head_dim = 0, n_head = 0, n_head_kv = 0;
    T* k_cache = nullptr;
    T* v_cache = nullptr;
    int64_t n_layer = 0, n_ctx = 0, layer = 0;
};

template <typename T, int V>
__device__ __forceinline__ void to_floats(const uint4& raw, float (&f)[V]) {
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) f[j] = cuda::to_float(v[j]);
}

// A weight vector, read once: loaded as streaming (evict-first), leaving L1 and L2 to x, the gains and
// the KV cache (the plain GEMV's choice too, measured there).
__device__ __forceinline__ uint4 load_stream(const void* p) { return __ldcs(reinterpret_cast<const uint4*>(p)); }

template <typename T, int N, Epi E, bool Norm, bool Vec>
__global__ void __launch_bounds__(kWarps * 32) fused_gemv_kernel(const FusedArgs<T> a) {
    constexpr int R = (E == Epi::SwiGlu || E == Epi::RopeKv) ? 2 : 1;
    const int unit = blockIdx.x * kWarps + static_cast<int>(threadIdx.x / 32);
    const int lane = static_cast<int>(threadIdx.x % 32);
    if (unit >= a.units) return;

    int rows[R];
    if constexpr (E == Epi::RopeKv) {
        const int half = a.head_dim / 2;
        rows[0] = (unit / half) * a.head_dim + unit % half;
        rows[1] = rows[0] + half;
    } else if constexpr (E == Epi::SwiGlu) {
        rows[0] = unit;
        rows[1] = unit + a.pair_offset;
    } else {
        rows[0] = unit;
    }
    const T* wr[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wr[r] = a.w + static_cast<int64_t>(rows[r]) * a.w_stride;

    float acc[R][N], ss[N];
#pragma unroll
    for (int t = 0; t < N; ++t) {
        ss[t] = 0.0f;
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][t] = 0.0f;
    }

    if constexpr (Vec) {
        constexpr int V = 16 / sizeof(T);
        constexpr int kStep = 32 * V;
        constexpr int kUnroll = kLoadsInFlight / R;  // per row: the same bytes in flight per warp for R = 1, 2
        constexpr int kBatch = kUnroll * kStep;
        uint4 wv[kUnroll][R];
        auto load = [&](int base) {
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                const int i = base + u * kStep;
#pragma unroll
                for (int r = 0; r < R; ++r) wv[u][r] = i < a.k ? load_stream(wr[r] + i) : make_uint4(0, 0, 0, 0);
            }
        };
        load(lane * V);
        // Everything above reads only weights; x, the residual and the cache are the previous kernel's.
        cudaGridDependencySynchronize();
        for (int base = lane * V; base < a.k; base += kBatch) {
            if (base != lane * V) load(base);  // the first batch was issued before the wait
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                const int i = base + u * kStep;
                if (i >= a.k) break;
                float g[V];
                if constexpr (Norm) {
                    const float4 g0 = *reinterpret_cast<const float4*>(a.gain + i);
                    g[0] = g0.x, g[1] = g0.y, g[2] = g0.z, g[3] = g0.w;
                    if constexpr (V == 8) {
                        const float4 g1 = *reinterpret_cast<const float4*>(a.gain + i + 4);
                        g[4] = g1.x, g[5] = g1.y, g[6] = g1.z, g[7] = g1.w;
                    }
                }
                float wf[R][V];
#pragma unroll
                for (int r = 0; r < R; ++r) to_floats<T, V>(wv[u][r], wf[r]);
#pragma unroll
                for (int t = 0; t < N; ++t) {
                    const int64_t xr = a.x_rows ? a.x_rows[t] : t;
                    float xf[V];
                    to_floats<T, V>(*reinterpret_cast<const uint4*>(a.x + xr * a.x_stride + i), xf);
#pragma unroll
                    for (int j = 0; j < V; ++j) {
                        if constexpr (Norm) {
                            ss[t] += xf[j] * xf[j];
                            xf[j] *= g[j];
                        }
#pragma unroll
                        for (int r = 0; r < R; ++r) acc[r][t] += wf[r][j] * xf[j];
                    }
                }
            }
        }
    } else {
        cudaGridDependencySynchronize();
        for (int i = lane; i < a.k; i += 32) {
            const float g = Norm ? a.gain[i] : 1.0f;
            float wf[R];
#pragma unroll
            for (int r = 0; r < R; ++r) wf[r] = cuda::to_float(wr[r][i]);
#pragma unroll
            for (int t = 0; t < N; ++t) {
                const int64_t xr = a.x_rows ? a.x_rows[t] : t;
                float xv = cuda::to_float(a.x[xr * a.x_stride + i]);
                if constexpr (Norm) {
                    ss[t] += xv * xv;
                    xv *= g;
                }
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r][t] += wf[r] * xv;
            }
        }
    }

#pragma unroll
    for (int t = 0; t < N; ++t) {
        if constexpr (Norm) ss[t] = cuda::warp_sum(ss[t]);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][t] = cuda::warp_sum(acc[r][t]);
    }

    // Epilogue: lane t writes token t's outputs.
#pragma unroll
    for (int t = 0; t < N; ++t) {
        if (lane != t) continue;
        const float inv = Norm ? rsqrtf(ss[t] / static_cast<float>(a.k) + a.eps) : 1.0f;
        float y[R];
#pragma unroll
        for (int r = 0; r < R; ++r)
            y[r] = cuda::to_float(cuda::from_float<T>(acc[r][t] * inv + (a.bias ? a.bias[rows[r]] : 0.0f)));
        T* orow = a.out + static_cast<int64_t>(t) * a.out_stride;
        if constexpr (E == Epi::Store) {
            orow[rows[0]] = cuda::from_float<T>(y[0]);
        } else if constexpr (E == Epi::Add) {
            orow[rows[0]] = cuda::from_float<T>(cuda::to_float(orow[rows[0]]) + y[0]);
        } else if constexpr (E == Epi::SwiGlu) {
            orow[unit] = cuda::from_float<T>(y[0] / (1.0f + __expf(-y[0])) * y[1]);
        } else {
            const int half = a.head_dim / 2, h = unit / half, i = unit % half;
            const int64_t pos = a.positions[t];
            float z0 = y[0], z1 = y[1];
            if (h < a.n_head + a.n_head_kv) {
                const float c = a.cos_sin[pos * a.head_dim + i], s = a.cos_sin[pos * a.head_dim + half + i];
                z0 = y[0] * c - y[1] * s;
                z1 = y[1] * c + y[0] * s;
            }
            if (h < a.n_head) {
                orow[rows[0]] = cuda::from_float<T>(z0);
                orow[rows[1]] = cuda::from_float<T>(z1);
            } else {
                const int64_t kv_dim = static_cast<int64_t>(a.n_head_kv) * a.head_dim;
                const int64_t cache_row =
                    ((static_cast<int64_t>(a.slots[t]) * a.n_layer + a.layer) * a.n_ctx + pos) * kv_dim;
                T* dst = h < a.n_head + a.n_head_kv
                             ? a.k_cache + cache_row + static_cast<int64_t>(h - a.n_head) * a.head_dim
                             : a.v_cache + cache_row + static_cast<int64_t>(h - a.n_head - a.n_head_kv) * a.head_dim;
                dst[i] = cuda::from_float<T>(z0);
                dst[i + half] = cuda::from_float<T>(z1);
            }
        }
    }
}

// Programmatic dependent launch can be turned off (LAMINA_PDL=0) to measure what it buys.
bool pdl_enabled() {
    static const bool on = cuda::env_switch("LAMINA_PDL", true);
    return on;
}

template <typename T, Epi E, bool Norm>
void launch_fused(const FusedArgs<T>& a, int64_t n_tokens, bool vec, cudaStream_t stream) {
    LAMINA_CHECK(n_tokens >= 1 && n_tokens <= kFusedDecodeMaxTokens, "fused decode takes 1..4 tokens");
    if (a.units == 0) return;
    const dim3 grid(static_cast<unsigned>(cuda::ceil_div(a.units, kWarps)));
    auto go = [&]<int N>() {
        cudaLaunchConfig_t cfg{};
        cfg.gridDim = grid;
        cfg.blockDim = dim3(kWarps * 32);
        cfg.stream = stream;
        cudaLaunchAttribute attr{};
        attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr.val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = &attr;
        cfg.numAttrs = pdl_enabled() ? 1 : 0;
        if (vec)
            CUDA_CHECK(cudaLaunchKernelEx(&cfg, fused_gemv_kernel<T, N, E, Norm, true>, a));
        else
            CUDA_CHECK(cudaLaunchKernelEx(&cfg, fused_gemv_kernel<T, N, E, Norm, false>, a));
    };
    switch (n_tokens) {
        case 1:
            go.template operator()<1>();
            break;
        case 2:
            go.template operator()<2>();
            break;
        case 3:
            go.template operator()<3>();
            break;
        case 4:
            go.template operator()<4>();
            break;
    }
}

// 16-byte vectors when k, every row stride and every base allow it (x, W and, for Norm, the gain).
bool vectorizable(DType t, int64_t k, std::initializer_list<std::pair<const void*, int64_t>> rows) {
    const int64_t v = 16 / static_cast<int64_t>(dtype_size(t));
    if (k % v != 0) return false;
    for (auto [p, stride] : rows)
        if (reinterpret_cast<uintptr_t>(p) % 16 != 0 || stride % v != 0) return false;
    return true;
}

// The arguments every fused GEMV takes: x (normalized with gain g when given), W, bias, out, and its
// vector width.
template <typename T>
FusedArgs<T> gemv_args(const TensorView& x, const TensorView* g, float eps, const TensorView& w, const TensorView* bias,
                       const TensorView& out, int units, bool& vec) {
    FusedArgs<T> a;
    a.x = static_cast<const T*>(x.data), a.x_stride = x.row_stride;
    a.gain = g ? static_cast<const float*>(g->data) : nullptr, a.eps = eps;
    a.w = static_cast<const T*>(w.data), a.w_stride = w.row_stride;
    a.bias = bias ? static_cast<const float*>(bias->data) : nullptr;
    a.out = static_cast<T*>(out.data), a.out_stride = out.row_stride;
    a.units = units, a.k = static_cast<int>(x.cols);
    vec = g ? vectorizable(x.dtype, x.cols, {{x.data, x.row_stride}, {w.data, w.row_stride}, {g->data, 0}})
            : vectorizable(x.dtype, x.cols, {{x.data, x.row_stride}, {w.data, w.row_stride}});
    return a;
}

}  // namespace

void CudaBackend::decode_qkv(const TensorView& x, const TensorView& g, float eps, const TensorView& wqkv,
                             const TensorView* bqkv, const StepTokens& tok, const TensorView& rope_cos_sin,
                             const AttentionShape& s, int64_t layer, KvCache& cache, TensorView qkv) {
    LAMINA_CHECK(x.dtype == act_ && wqkv.dtype == act_ && qkv.dtype == act_ && cache.dtype == act_);
    LAMINA_CHECK(g.dtype == DType::F32 && g.n_elements() == x.cols && rope_cos_sin.dtype == DType::F32);
    const int64_t qkv_dim = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
    LAMINA_CHECK(wqkv.rows == qkv_dim && wqkv.cols == x.cols && qkv.cols == qkv_dim && qkv.rows == x.rows &&
                 x.rows == tok.n_tokens && s.head_dim % 2 == 0 && rope_cos_sin.cols == s.head_dim);
    LAMINA_CHECK(cache.kv_dim == s.n_head_kv * s.head_dim);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        FusedArgs<T> a = gemv_args<T>(x, &g, eps, wqkv, bqkv, qkv, static_cast<int>(qkv_dim / 2), vec);
        a.positions = tok.positions, a.slots = tok.slots, a.cos_sin = static_cast<const float*>(rope_cos_sin.data);
        a.head_dim = static_cast<int>(s.head_dim), a.n_head = static_cast<int>(s.n_head),
        a.n_head_kv = static_cast<int>(s.n_head_kv);
        a.k_cache = static_cast<T*>(cache.k), a.v_cache = static_cast<T*>(cache.v);
        a.n_layer = cache.n_layer, a.n_ctx = cache.n_ctx, a.layer = layer;
        launch_fused<T, Epi::RopeKv, true>(a, x.rows, vec, stream_);
    });
}

void CudaBackend::decode_matmul_add(const TensorView& x, const TensorView& w, const TensorView* bias,
                                    TensorView residual) {
    LAMINA_CHECK(x.dtype == act_ && w.dtype == act_ && residual.dtype == act_);
    LAMINA_CHECK(w.cols == x.cols && residual.cols == w.rows && residual.rows == x.rows);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        const FusedArgs<T> a = gemv_args<T>(x, nullptr, 0.0f, w, bias, residual, static_cast<int>(w.rows), vec);
        launch_fused<T, Epi::Add, false>(a, x.rows, vec, stream_);
    });
}

void CudaBackend::decode_gate_up(const TensorView& x, const TensorView& g, float eps, const TensorView& w_gate_up,
                                 const TensorView* bias, TensorView out) {
    LAMINA_CHECK(x.dtype == act_ && w_gate_up.dtype == act_ && out.dtype == act_);
    LAMINA_CHECK(g.dtype == DType::F32 && g.n_elements() == x.cols);
    LAMINA_CHECK(w_gate_up.cols == x.cols && w_gate_up.rows == 2 * out.cols && out.rows == x.rows);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        FusedArgs<T> a = gemv_args<T>(x, &g, eps, w_gate_up, bias, out, static_cast<int>(out.cols), vec);
        a.pair_offset = static_cast<int>(out.cols);
        launch_fused<T, Epi::SwiGlu, true>(a, x.rows, vec, stream_);
    });
}

void CudaBackend::decode_norm_matmul(const TensorView& x, const int32_t* rows, const TensorView& g, float eps,
                                     const TensorView& w, TensorView out) {
    LAMINA_CHECK(x.dtype == act_ && w.dtype == act_ && out.dtype == act_);
    LAMINA_CHECK(g.dtype == DType::F32 && g.n_elements() == x.cols && w.cols == x.cols && out.cols == w.rows);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        FusedArgs<T> a = gemv_args<T>(x, &g, eps, w, nullptr, out, static_cast<int>(w.rows), vec);
        a.x_rows = rows;
        launch_fused<T, Epi::Store, true>(a, out.rows, vec, stream_);
    });
}

}  // namespace lamina
