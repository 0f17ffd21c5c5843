// The decode GEMV: one pass over a weight matrix for steps of at most kGemvMaxTokens tokens, with the op
// after the product folded into its epilogue. The plain matmul of 1-2 tokens is its simplest form
// (matmul.cu); the fused ops are the others:
//
//   plain (matmul):        out = x @ W^T + b
//   matmul_rope_kv_write:  [q|k|v] = x @ Wqkv^T + b; RoPE on q, k; k, v -> cache[slot, layer, pos]; q -> qkv
//   matmul_swiglu:         out = silu(g) * u, [g | u] = x @ Wgu^T + b
//
// Epilogue: each product is rounded to T as the plain matmul stores it, then bias, SwiGLU or RoPE run in f32
// with one rounding per output, so the results equal the plain ops'.
// Shapes: x [n, k] (row stride), W [m, k] (row stride), bias f32; n <= 4; T = float, half, bf16.
// Threads: one warp per unit of output — a row, or the pair of rows an epilogue needs together (gate row
// i with up row i; RoPE's rows i and i + head_dim/2 of a head) — or 2-8 warps per unit splitting k
// (choose_ksplit), their sums added through shared memory; 8 warps per block. Lanes stream W in 16-byte
// vectors (evict-first: read once), eight per lane in flight. The kernel is launched with programmatic
// dependent launch: the first batch of weight loads is issued before cuda::pdl_wait(), so it overlaps the
// previous kernel (for a small one-token matrix, the second batch too, copied into shared memory:
// stage_weights). Bytes: the weight matrix once, m * k * sizeof(T) — at batch 1 the whole cost, so the
// target is the copy bandwidth; x and bias (a few KB) come from L1/L2.
#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

constexpr int kWarps = 8;
constexpr int kLoadsInFlight = 8;  // 16-byte weight loads per lane issued before their first use

enum class Epi { Store, SwiGlu, RopeKv };

// Weight rows per unit of output: the pair an epilogue combines (gate with up; RoPE's i with i + head_dim/2).
constexpr int rows_per_unit(Epi e) { return e == Epi::SwiGlu || e == Epi::RopeKv ? 2 : 1; }

// Elements of a row one warp loads in one batch (r rows a unit, vec_elems elements a load).
constexpr int batch_elems(int r, int vec_elems) {
    return kLoadsInFlight / r * 32 * vec_elems;
}

template <typename T>
struct GemvArgs {
    const T* x = nullptr;
    int64_t x_stride = 0;
    const T* w = nullptr;
    int64_t w_stride = 0;
    const float* bias = nullptr;
    T* out = nullptr;
    int64_t out_stride = 0;
    int units = 0, k = 0;
    int ksplit = 1;       // warps per unit, each taking every ksplit-th 32-vector slice of k
    int pair_offset = 0;  // SwiGlu: the up row of unit i is i + pair_offset
    // RopeKv
    const int32_t* positions = nullptr;
    const int32_t* slots = nullptr;
    const float* cos_sin = nullptr;
    int head_dim = 0, n_head = 0, n_head_kv = 0;
    T* k_cache = nullptr;
    T* v_cache = nullptr;
    KvCache cache{};
    int64_t layer = 0;
};

template <typename T, int V>
__device__ __forceinline__ void to_floats(const uint4 raw, float (&f)[V]) {
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) f[j] = cuda::to_float(v[j]);
}

// Lane t writes token t's outputs: y[r] = T(acc[r] + bias) for the unit's rows, then the epilogue.
template <typename T, int N, Epi E, int R>
__device__ __forceinline__ void epilogue(const GemvArgs<T>& a, int unit, const int (&rows)[R], float (&acc)[R][N],
                                         int lane) {
#pragma unroll
    for (int t = 0; t < N; ++t) {
        if (lane != t) continue;
        float y[R];
#pragma unroll
        for (int r = 0; r < R; ++r)
            y[r] = cuda::to_float(cuda::from_float<T>(acc[r][t] + (a.bias ? a.bias[rows[r]] : 0.0f)));
        T* orow = a.out + static_cast<int64_t>(t) * a.out_stride;
        if constexpr (E == Epi::Store) {
            orow[rows[0]] = cuda::from_float<T>(y[0]);
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
                const int64_t cache_row = a.cache.offset(a.slots[t], a.layer, pos);
                T* dst = h < a.n_head + a.n_head_kv
                             ? a.k_cache + cache_row + static_cast<int64_t>(h - a.n_head) * a.head_dim
                             : a.v_cache + cache_row + static_cast<int64_t>(h - a.n_head - a.n_head_kv) * a.head_dim;
                dst[i] = cuda::from_float<T>(z0);
                dst[i + half] = cuda::from_float<T>(z1);
            }
        }
    }
}

// The weight rows of `unit` (rows_per_unit(E) of them) and where they start; row 0 for a unit past the end
// (its warp loads nothing and writes nothing).
template <typename T, Epi E>
__device__ __forceinline__ void unit_rows(const GemvArgs<T>& a, int unit, int (&rows)[rows_per_unit(E)],
                                          const T* (&wr)[rows_per_unit(E)]) {
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
#pragma unroll
    for (int r = 0; r < rows_per_unit(E); ++r) wr[r] = a.w + static_cast<int64_t>(unit < a.units ? rows[r] : 0) * a.w_stride;
}

// A batch of a warp's weight loads: for each of the R rows, the 16-byte vectors at base, + step, ... (U of
// them), evict-first (read once); zeros past k or for an inactive unit.
template <typename T, int U, int R>
__device__ __forceinline__ void load_weights(uint4 (&wv)[U][R], const T* const (&wr)[R], int base, int step, int k,
                                             bool active) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int i = base + u * step;
#pragma unroll
        for (int r = 0; r < R; ++r)
            wv[u][r] = active && i < k ? __ldcs(reinterpret_cast<const uint4*>(wr[r] + i)) : make_uint4(0, 0, 0, 0);
    }
}

// Stage: a warp's second batch of weight loads, issued before the PDL wait like the first but into shared memory
// (cp.async, L2 evict-first, no registers held), at buf[(u * R + r) * 32 + lane]; zeros past k or for an inactive
// unit. Each lane reads back only what it copied itself, so a cp.async.wait_all and no barrier.
template <typename T, int U, int R>
__device__ __forceinline__ void stage_weights(uint4* buf, const T* const (&wr)[R], int base, int step, int k,
                                              bool active) {
    const uint64_t policy = cuda::evict_first_policy();
    const int lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int i = base + u * step;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            uint4* dst = buf + (u * R + r) * 32 + lane;
            if (active && i < k) {
                const uint32_t s = cuda::smem_addr(dst);
                asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(s), "l"(wr[r] + i),
                             "l"(policy)
                             : "memory");
            } else {
                *dst = make_uint4(0, 0, 0, 0);
            }
        }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
}

template <int U, int R>
__device__ __forceinline__ void read_staged(uint4 (&wv)[U][R], const uint4* buf) {
    asm volatile("cp.async.wait_all;" ::: "memory");
    const int lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r) wv[u][r] = buf[(u * R + r) * 32 + lane];
}

template <typename T, int N, Epi E, bool Vec, bool Stage = false>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const GemvArgs<T> a) {
    static_assert(!Stage || Vec, "the staged batch is for the vector kernel");
    constexpr int R = rows_per_unit(E);
    constexpr int V = Vec ? 16 / sizeof(T) : 1;
    __shared__ float partial[kWarps][R * N];  // ksplit > 1: each warp's sums
    __shared__ uint4 stage_buf[Stage ? kWarps * kLoadsInFlight * 32 : 1];  // Stage: each warp's second batch
    LAMINA_TRACE_KERNEL(cuda::kTraceGemv + 16 * static_cast<uint32_t>(E));
    const int ks = a.ksplit, warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
    const int unit = static_cast<int>(blockIdx.x) * (kWarps / ks) + warp / ks, part = warp % ks;
    const bool active = unit < a.units;

    int rows[R];
    const T* wr[R];
    unit_rows<T, E>(a, unit, rows, wr);
    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int t = 0; t < N; ++t) acc[r][t] = 0.0f;

    if constexpr (Vec) {
        constexpr int kUnroll = kLoadsInFlight / R;  // per row: the same bytes in flight per warp for R = 1, 2
        const int step = 32 * V * ks, first = (part * 32 + lane) * V, batch = kUnroll * step;
        uint4 wv[kUnroll][R];
        auto load = [&](int base) { load_weights<T, kUnroll, R>(wv, wr, base, step, a.k, active); };
        uint4* const my_stage = stage_buf + warp * kLoadsInFlight * 32;
        load(first);  // weights only: no kernel writes them, so issued before the wait
        if constexpr (Stage) stage_weights<T, kUnroll, R>(my_stage, wr, first + batch, step, a.k, active);
        cuda::pdl_wait();
        for (int base = first; active && base < a.k; base += batch) {
            // The first batch (and with Stage the second) was issued before the wait.
            if (Stage && base == first + batch)
                read_staged<kUnroll, R>(wv, my_stage);
            else if (base != first)
                load(base);
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                const int i = base + u * step;
                if (i >= a.k) break;
                float wf[R][V];
#pragma unroll
                for (int r = 0; r < R; ++r) to_floats<T, V>(wv[u][r], wf[r]);
#pragma unroll
                for (int t = 0; t < N; ++t) {
                    float xf[V];
                    // x into a register first, in one 16-byte load (bound to a reference, the compiler reads it
                    // element by element, a fifth slower at 7B). A plain load, not the read-only path: x was
                    // written by the previous kernel, which may still be running when this one starts (PDL).
                    const uint4 xr = *reinterpret_cast<const uint4*>(a.x + t * a.x_stride + i);
                    to_floats<T, V>(xr, xf);
#pragma unroll
                    for (int j = 0; j < V; ++j)
#pragma unroll
                        for (int r = 0; r < R; ++r) acc[r][t] += wf[r][j] * xf[j];
                }
            }
        }
    } else {
        cuda::pdl_wait();
        for (int i = part * 32 + lane; active && i < a.k; i += 32 * ks) {
            float wf[R];
#pragma unroll
            for (int r = 0; r < R; ++r) wf[r] = cuda::to_float(wr[r][i]);
#pragma unroll
            for (int t = 0; t < N; ++t) {
                const float xv = cuda::to_float(a.x[t * a.x_stride + i]);
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r][t] += wf[r] * xv;
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int t = 0; t < N; ++t) acc[r][t] = cuda::warp_sum(acc[r][t]);
    if (ks > 1) {  // the unit's first warp adds the others' sums (no thread has returned: all reach the barrier)
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int t = 0; t < N; ++t) partial[warp][r * N + t] = acc[r][t];
        __syncthreads();
        if (part != 0) return;
        for (int p = 1; p < ks; ++p)
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int t = 0; t < N; ++t) acc[r][t] += partial[warp + p][r * N + t];
    }
    if (active) epilogue<T, N, E, R>(a, unit, rows, acc, lane);
}

// Warps per unit. One token: 4, as long as each warp keeps at least 4 vectors per lane (faster than keeping
// each warp a full batch, and than 8 warps a unit); a matrix small enough for one wave of warps gets one warp a
// unit, and one whose quarter row is more than a lane's batch of loads gets 8 (7B's down). Several tokens:
// enough for about two waves of resident warps (4 blocks of 8 warps per SM at these kernels' 56-95 registers)
// when there are few units, while each warp keeps at least one full batch of loads. Measurements:
// docs/performance.md.
int choose_ksplit(int units, int k, int vec_elems, int r, int64_t n_tokens) {
    static const int sms = cuda::sm_count();
    const int batch = batch_elems(r, vec_elems);
    if (n_tokens == 1) {
        // A matrix whose rows are at most two batches, small enough for one wave of warps a unit (4 resident
        // blocks an SM): one warp a unit, so all its blocks start during the kernel before and, with the second
        // batch staged (launch), request the whole matrix before the PDL wait (7B's o_proj, after the
        // latency-bound attention).
        if (static_cast<int64_t>(units) <= static_cast<int64_t>(sms) * 4 * kWarps && k <= 2 * batch) return 1;
        // Otherwise 4 warps a unit, or 8 where a quarter of the row is more than one batch of a lane's loads, so
        // that each lane issues all its loads at once.
        int ks = k / 4 > batch ? 8 : 4;
        while (ks > 1 && k / ks < 4 * 32 * vec_elems) ks /= 2;
        return ks;
    }
    int ks = 1;
    while (ks < 4 && static_cast<int64_t>(units) * ks < static_cast<int64_t>(sms) * 64 && k / (2 * ks) >= batch) ks *= 2;
    return ks;
}

template <typename T, Epi E>
void launch(const GemvArgs<T>& a, int64_t n_tokens, bool vec, cudaStream_t stream) {
    LAMINA_CHECK(n_tokens >= 1 && n_tokens <= kFusedGemvMaxTokens, "decode GEMV takes 1..4 tokens");
    if (a.units == 0) return;
    constexpr int R = rows_per_unit(E);
    GemvArgs<T> args = a;
    args.ksplit = choose_ksplit(a.units, a.k, vec ? 16 / static_cast<int>(sizeof(T)) : 1, R, n_tokens);
    const auto grid = static_cast<unsigned>(cuda::ceil_div(a.units, kWarps / args.ksplit));
    // One token, one warp a unit (choose_ksplit's one-wave matrices), rows longer than a batch: the second batch
    // is staged in shared memory before the wait too, so the whole matrix is requested while the kernel before
    // runs. At 7B that is o_proj, behind the latency-bound attention.
    const bool stage = vec && n_tokens == 1 && args.ksplit == 1 &&
                       a.k > batch_elems(R, 16 / static_cast<int>(sizeof(T)));
    auto go = [&]<int N>() {
        auto kernel = vec ? gemv_kernel<T, N, E, true> : gemv_kernel<T, N, E, false>;
        if constexpr (N == 1)
            if (stage) kernel = gemv_kernel<T, 1, E, true, true>;
        cuda::launch_pdl(kernel, grid, kWarps * 32, 0, stream, args);
    };
    switch (n_tokens) {
        case 1: go.template operator()<1>(); break;
        case 2: go.template operator()<2>(); break;
        case 3: go.template operator()<3>(); break;
        case 4: go.template operator()<4>(); break;
    }
}

// The arguments every GEMV takes: x, W, bias, out, and whether rows can be read in 16-byte vectors (k,
// every row stride and every base).
template <typename T>
GemvArgs<T> gemv_args(const TensorView& x, const TensorView& w, const float* bias, const TensorView& out, int units,
                      bool& vec) {
    GemvArgs<T> a;
    a.x = static_cast<const T*>(x.data), a.x_stride = x.row_stride;
    a.w = static_cast<const T*>(w.data), a.w_stride = w.row_stride;
    a.bias = bias;
    a.out = static_cast<T*>(out.data), a.out_stride = out.row_stride;
    a.units = units, a.k = static_cast<int>(x.cols);
    constexpr int64_t V = 16 / sizeof(T);
    vec = vector_rows(x, V) && vector_rows(w, V);
    return a;
}

}  // namespace

void gemv(DType act, const TensorView& x, const TensorView& w, const float* bias, TensorView out, cudaStream_t stream) {
    cuda::dispatch_dtype(act, [&]<typename T>() {
        bool vec = false;
        const GemvArgs<T> a = gemv_args<T>(x, w, bias, out, static_cast<int>(w.rows), vec);
        launch<T, Epi::Store>(a, x.rows, vec, stream);
    });
}

void gemv_rope_kv_write(DType act, const TensorView& x, const TensorView& wqkv, const float* bqkv, const StepTokens& tok,
                        const TensorView& rope_cos_sin, const AttentionShape& s, int64_t layer, const KvCache& cache,
                        TensorView qkv, cudaStream_t stream) {
    cuda::dispatch_dtype(act, [&]<typename T>() {
        bool vec = false;
        GemvArgs<T> a = gemv_args<T>(x, wqkv, bqkv, qkv, static_cast<int>(wqkv.rows / 2), vec);
        a.positions = tok.positions, a.slots = tok.slots, a.cos_sin = static_cast<const float*>(rope_cos_sin.data);
        a.head_dim = static_cast<int>(s.head_dim), a.n_head = static_cast<int>(s.n_head),
        a.n_head_kv = static_cast<int>(s.n_head_kv);
        a.k_cache = static_cast<T*>(cache.k), a.v_cache = static_cast<T*>(cache.v);
        a.cache = cache, a.layer = layer;
        launch<T, Epi::RopeKv>(a, x.rows, vec, stream);
    });
}

void gemv_swiglu(DType act, const TensorView& x, const TensorView& w_gate_up, const float* bias, TensorView out,
                 cudaStream_t stream) {
    cuda::dispatch_dtype(act, [&]<typename T>() {
        bool vec = false;
        GemvArgs<T> a = gemv_args<T>(x, w_gate_up, bias, out, static_cast<int>(out.cols), vec);
        a.pair_offset = static_cast<int>(out.cols);
        launch<T, Epi::SwiGlu>(a, x.rows, vec, stream);
    });
}

}  // namespace lamina
