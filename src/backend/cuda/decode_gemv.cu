// The decode GEMV: one pass over a weight matrix for steps of at most kFusedDecodeMaxTokens tokens, with
// the ops around the product folded into its prologue and epilogue. The plain matmul of 1-2 tokens is
// its simplest form (matmul.cu); the fused decode ops are the others:
//
//   plain (matmul):     out = x @ W^T + b
//   decode_qkv:         [q|k|v] = rmsnorm(x) @ Wqkv^T + b; RoPE on q, k; k, v -> cache[slot, layer, pos]; q -> qkv
//   decode_matmul_add:  residual += x @ W^T + b                       (o_proj, down)
//   decode_gate_up:     out = silu(g) * u, [g | u] = rmsnorm(x) @ Wgu^T + b
//   decode_norm_matmul: out[t] = rmsnorm(x[rows[t]]) @ W^T          (final norm + LM head)
//   (decode_qkv and decode_gate_up with no gain take x as it is, already normalized: the Epilogues mode)
//
// Prologue (the norm variants): each block stages its n normalized rows of x in shared memory, rounded
// to T as the RMSNorm op stores them (y = T(w * (x * rsqrt(mean(x^2) + eps)))), so the product reads
// them as the unfused ops would; the only difference from those is the order of the sum of squares.
// Epilogue: each product is rounded to T as the unfused matmul stores it, then bias, residual add, SwiGLU
// or RoPE run in f32 with one rounding per output.
// Shapes: x [n, k] (row stride), W [m, k] (row stride), gain/bias f32; n <= 4; T = float, half, bf16.
// Threads: one warp per unit of output — a row, or the pair of rows an epilogue needs together (gate row
// i with up row i; RoPE's rows i and i + head_dim/2 of a head) — or 2-8 warps per unit splitting k
// (choose_ksplit: 4 or 8 at one token unless the matrix is small, else when a matrix has few rows), their sums added
// through shared memory; 8 warps per block. Lanes stream W in 16-byte vectors (evict-first: read once), eight per lane
// in flight. The kernel is launched with programmatic dependent launch: the first batch of weight loads is issued
// before cuda::pdl_wait(), so it overlaps the previous kernel (for a small one-token matrix, the second batch too,
// copied into shared memory: stage_weights). Bytes: the weight matrix once, m * k * sizeof(T) — at batch 1 the whole
// cost, so the target is the copy bandwidth; x, gains and bias (a few KB) come from L1/L2.
#include <array>
#include <cstdio>
#include <sstream>
#include <vector>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/sync.cuh"

namespace lamina {

namespace {

constexpr int kWarps = 8;
constexpr int kLoadsInFlight = 8;  // 16-byte weight loads per lane issued before their first use

enum class Epi { Store, Add, SwiGlu, RopeKv };

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
    const int32_t* x_rows = nullptr;  // Norm: x row of token t is x_rows[t] when set, else t
    const float* gain = nullptr;      // Norm: the RMSNorm weight
    float eps = 0.0f;
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
    cuda::CacheGeometry cache{};
    int64_t layer = 0;
};

template <typename T, int V>
__device__ __forceinline__ void to_floats(const uint4 raw, float (&f)[V]) {
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) f[j] = cuda::to_float(v[j]);
}

// Writes rmsnorm(x[row of t]) * gain for the n tokens to staged[t * k + i], rounded to T. VEC elements per
// thread and step (16-byte vectors when Vec). Ends with a barrier: every warp then reads all of it.
template <typename T, int N, int VEC>
__device__ __forceinline__ void stage_normalized(const GemvArgs<T>& a, T* staged) {
    __shared__ float partial[N][kWarps];
    using Raw = cuda::Packed<T, VEC>;
    const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
    float ss[N];
#pragma unroll
    for (int t = 0; t < N; ++t) {
        const T* xr = a.x + static_cast<int64_t>(a.x_rows ? a.x_rows[t] : t) * a.x_stride;
        ss[t] = 0.0f;
        for (int i = static_cast<int>(threadIdx.x) * VEC; i < a.k; i += kWarps * 32 * VEC) {
            const Raw raw = *reinterpret_cast<const Raw*>(xr + i);
            *reinterpret_cast<Raw*>(staged + t * a.k + i) = raw;
            const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
            for (int j = 0; j < VEC; ++j) ss[t] += cuda::to_float(v[j]) * cuda::to_float(v[j]);
        }
        ss[t] = cuda::warp_sum(ss[t]);
        if (lane == 0) partial[t][warp] = ss[t];
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < N; ++t) {
        float total = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) total += partial[t][w];
        const float inv = rsqrtf(total / static_cast<float>(a.k) + a.eps);
        // Each thread rewrites the elements it staged itself: no barrier between the two passes.
        for (int i = static_cast<int>(threadIdx.x) * VEC; i < a.k; i += kWarps * 32 * VEC) {
            Raw raw = *reinterpret_cast<const Raw*>(staged + t * a.k + i);
            T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
            for (int j = 0; j < VEC; ++j) v[j] = cuda::from_float<T>(a.gain[i + j] * (cuda::to_float(v[j]) * inv));
            *reinterpret_cast<Raw*>(staged + t * a.k + i) = raw;
        }
    }
    __syncthreads();
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

template <typename T, int N, Epi E, bool Norm, bool Vec, bool Stage = false>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const GemvArgs<T> a) {
    static_assert(!Stage || (Vec && !Norm), "the staged batch is for the vector kernel without a norm");
    constexpr int R = rows_per_unit(E);
    constexpr int V = Vec ? 16 / sizeof(T) : 1;
    extern __shared__ uint4 staged_words[];  // Norm: [N][k] normalized x, T
    __shared__ float partial[kWarps][R * N];  // ksplit > 1: each warp's sums
    __shared__ uint4 stage_buf[Stage ? kWarps * kLoadsInFlight * 32 : 1];  // Stage: each warp's second batch
    LAMINA_TRACE_KERNEL(cuda::kTraceGemv + 16 * static_cast<uint32_t>(E) + (Norm ? 256 : 0));
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
    const T* staged = reinterpret_cast<const T*>(staged_words);

    if constexpr (Vec) {
        constexpr int kUnroll = kLoadsInFlight / R;  // per row: the same bytes in flight per warp for R = 1, 2
        const int step = 32 * V * ks, first = (part * 32 + lane) * V, batch = kUnroll * step;
        uint4 wv[kUnroll][R];
        auto load = [&](int base) { load_weights<T, kUnroll, R>(wv, wr, base, step, a.k, active); };
        uint4* const my_stage = stage_buf + warp * kLoadsInFlight * 32;
        load(first);  // weights only: no kernel writes them, so issued before the wait
        if constexpr (Stage) stage_weights<T, kUnroll, R>(my_stage, wr, first + batch, step, a.k, active);
        cuda::pdl_wait();
        if constexpr (Norm) stage_normalized<T, N, V>(a, reinterpret_cast<T*>(staged_words));
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
                    // x into a register first, in one 16-byte load (bound to a reference, it was read element by
                    // element: 182.6 against 235.7 tok/s at 7B). From shared memory (Norm) or global memory with a
                    // plain load: x was written by the previous kernel, which may still have been running when this
                    // one started (PDL), so not the read-only path.
                    const uint4 xr = Norm ? staged_words[(t * a.k + i) / V]
                                          : *reinterpret_cast<const uint4*>(a.x + t * a.x_stride + i);
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
        if constexpr (Norm) stage_normalized<T, N, 1>(a, reinterpret_cast<T*>(staged_words));
        for (int i = part * 32 + lane; active && i < a.k; i += 32 * ks) {
            float wf[R];
#pragma unroll
            for (int r = 0; r < R; ++r) wf[r] = cuda::to_float(wr[r][i]);
#pragma unroll
            for (int t = 0; t < N; ++t) {
                const float xv = cuda::to_float(Norm ? staged[t * a.k + i] : a.x[t * a.x_stride + i]);
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

// Warps per unit. One token, x as given: 4, as long as each warp keeps at least 4 vectors per lane (at 7B on
// the H200, 256.4 against 249.8 tok/s for the rule below, which keeps each warp a full batch; 8 warps: 233.0;
// bench/results/2026-11-29-h200-step run21-run23). The norm variants (Norm: each block normalizes x first)
// keep the rule below: with 4 warps per unit, four times the blocks repeat that work (the Full mode fell from
// 231.5 to 194.8 tok/s). Several tokens: enough for about two waves of resident warps (4 blocks of 8 warps per
// SM at these kernels' 56-95 registers) when there are few units, while each warp keeps at least one full batch
// of loads (at batch 4, 756 against 699 tok/s for 4 warps per unit). LAMINA_GEMV_KSPLIT sets it (1, 2, 4 or 8)
// for A/B measurements, and LAMINA_GEMV_KSPLIT_SHAPE="UNITSxK@S,..." for matrices of that shape only
// (e.g. 4096x4096@2, 7B's o_proj; units count row pairs for SwiGLU and RoPE).
int choose_ksplit(int units, int k, int vec_elems, int r, int64_t n_tokens, bool norm) {
    static const int forced = env_choice("LAMINA_GEMV_KSPLIT", 0, {1, 2, 4, 8});  // 0: the rule below
    static const std::vector<std::array<int, 3>> by_shape = [] {
        std::vector<std::array<int, 3>> list;
        const char* env = std::getenv("LAMINA_GEMV_KSPLIT_SHAPE");
        if (env == nullptr || *env == '\0') return list;
        for (std::istringstream in(env); in.good();) {
            std::string item;
            std::getline(in, item, ',');
            std::array<int, 3> e{};
            if (std::sscanf(item.c_str(), "%dx%d@%d", &e[0], &e[1], &e[2]) != 3 ||
                (e[2] != 1 && e[2] != 2 && e[2] != 4 && e[2] != 8))
                throw Error("LAMINA_GEMV_KSPLIT_SHAPE: '" + item + "' is not UNITSxK@S with S 1, 2, 4 or 8");
            list.push_back(e);
        }
        return list;
    }();
    for (const auto& e : by_shape)
        if (e[0] == units && e[1] == k) return e[2];
    static const int sms = cuda::sm_count();
    if (forced != 0) return forced;
    const int batch = batch_elems(r, vec_elems);
    if (n_tokens == 1 && !norm) {
        // A matrix whose rows are at most two batches, small enough for one wave of warps a unit (4 resident
        // blocks an SM): one warp a unit, so all its blocks start during the kernel before and, with the second
        // batch staged (launch), request the whole matrix before the PDL wait (7B's o_proj, after the
        // latency-bound attention: 263.5-264.4 against 262.8-263.1 tok/s with 4 warps a unit before staging,
        // run32; down at one warp a unit, 6 batches a lane: 260.2).
        if (static_cast<int64_t>(units) <= static_cast<int64_t>(sms) * 4 * kWarps && k <= 2 * batch) return 1;
        // Otherwise 4 warps a unit, or 8 where a quarter of the row is more than one batch of a lane's loads, so
        // that each lane issues all its loads at once (7B's down, 11,008 columns: 8 + 2.75 vectors a lane at 4,
        // 5.4 at 8: 275.8 / 273.5 / 275.0 against 268.4 / 266.6 / 268.2 tok/s, run39; gate/up and qkv, one batch at
        // 4, were slower at 8: 253.1 and 258.4, run38).
        int ks = k / 4 > batch ? 8 : 4;
        while (ks > 1 && k / ks < 4 * 32 * vec_elems) ks /= 2;
        return ks;
    }
    int ks = 1;
    while (ks < 4 && static_cast<int64_t>(units) * ks < static_cast<int64_t>(sms) * 64 && k / (2 * ks) >= batch) ks *= 2;
    return ks;
}

// Lets `kernel` take `dynamic` bytes of shared memory on top of its static ones: past the default 48 KB
// the kernel's limit is raised, up to what the device allows one block; beyond that, a lamina::Error.
void allow_dynamic_smem(const void* kernel, size_t dynamic, int64_t n_tokens, int k) {
    cudaFuncAttributes attr{};
    CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    if (attr.sharedSizeBytes + dynamic <= (48u << 10)) return;
    int device = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (attr.sharedSizeBytes + dynamic > static_cast<size_t>(optin))
        throw Error("decode GEMV: " + std::to_string(n_tokens) + " rows of " + std::to_string(k) + " activations (" +
                    std::to_string(dynamic) + " bytes) do not fit in one block's shared memory (" +
                    std::to_string(optin - static_cast<int>(attr.sharedSizeBytes)) + " bytes)");
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dynamic)));
}

template <typename T, Epi E, bool Norm>
void launch(const GemvArgs<T>& a, int64_t n_tokens, bool vec, cudaStream_t stream) {
    LAMINA_CHECK(n_tokens >= 1 && n_tokens <= kFusedDecodeMaxTokens, "decode GEMV takes 1..4 tokens");
    LAMINA_CHECK(Norm || a.x_rows == nullptr);
    if (a.units == 0) return;
    const size_t smem = Norm ? static_cast<size_t>(n_tokens) * a.k * sizeof(T) : 0;  // the staged rows
    constexpr int R = rows_per_unit(E);
    GemvArgs<T> args = a;
    args.ksplit = choose_ksplit(a.units, a.k, vec ? 16 / static_cast<int>(sizeof(T)) : 1, R, n_tokens, Norm);
    const auto grid = static_cast<unsigned>(cuda::ceil_div(a.units, kWarps / args.ksplit));
    // One token, x as given, one warp a unit (choose_ksplit's one-wave matrices), rows longer than a batch: the second
    // batch is staged in shared memory before the wait too, so the whole matrix is requested while the kernel before
    // runs. At 7B that is o_proj, behind the latency-bound attention: 266.4-266.6 against 262.0-262.5 tok/s on the
    // H200 (run36). Staged at 4 warps a unit as well, down (behind the bandwidth-bound gate/up) cost more than o_proj
    // gained: 257.5 (run35). LAMINA_GEMV_STAGE (A/B): 0 off, 1 wherever a second batch exists, 2 (the default) as
    // above.
    static const int stage_mode = env_choice("LAMINA_GEMV_STAGE", 2, {0, 1, 2});
    const bool stage = !Norm && vec && n_tokens == 1 &&
                       a.k > batch_elems(R, 16 / static_cast<int>(sizeof(T))) * args.ksplit &&
                       (stage_mode == 1 || (stage_mode == 2 && args.ksplit == 1));
    auto go = [&]<int N>() {
        auto kernel = vec ? gemv_kernel<T, N, E, Norm, true> : gemv_kernel<T, N, E, Norm, false>;
        if constexpr (N == 1 && !Norm)
            if (stage) kernel = gemv_kernel<T, 1, E, false, true, true>;
        if (smem > 0) allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, n_tokens, a.k);
        cuda::launch_pdl(kernel, grid, kWarps * 32, smem, stream, args);
    };
    switch (n_tokens) {
        case 1: go.template operator()<1>(); break;
        case 2: go.template operator()<2>(); break;
        case 3: go.template operator()<3>(); break;
        case 4: go.template operator()<4>(); break;
    }
}

// The arguments every GEMV takes: x (normalized with gain g when given), W, bias, out, and whether rows
// can be read in 16-byte vectors (k, every row stride and every base; for Norm, the gain).
template <typename T>
GemvArgs<T> gemv_args(const TensorView& x, const TensorView* g, float eps, const TensorView& w, const float* bias,
                      const TensorView& out, int units, bool& vec) {
    GemvArgs<T> a;
    a.x = static_cast<const T*>(x.data), a.x_stride = x.row_stride;
    a.gain = g ? static_cast<const float*>(g->data) : nullptr, a.eps = eps;
    a.w = static_cast<const T*>(w.data), a.w_stride = w.row_stride;
    a.bias = bias;
    a.out = static_cast<T*>(out.data), a.out_stride = out.row_stride;
    a.units = units, a.k = static_cast<int>(x.cols);
    constexpr int64_t V = 16 / sizeof(T);
    vec = vector_rows(x, V) && vector_rows(w, V) && (g == nullptr || reinterpret_cast<uintptr_t>(g->data) % 16 == 0);
    return a;
}

const float* bias_of(const TensorView* b) { return b ? static_cast<const float*>(b->data) : nullptr; }
// The norm's gain, or none (decode_qkv and decode_gate_up on an x that is already normalized).
const TensorView* gain_of(const TensorView& g) { return g.empty() ? nullptr : &g; }

}  // namespace

void gemv(DType act, const TensorView& x, const TensorView& w, const float* bias, TensorView out, cudaStream_t stream) {
    cuda::dispatch_dtype(act, [&]<typename T>() {
        bool vec = false;
        const GemvArgs<T> a = gemv_args<T>(x, nullptr, 0.0f, w, bias, out, static_cast<int>(w.rows), vec);
        launch<T, Epi::Store, false>(a, x.rows, vec, stream);
    });
}

void CudaBackend::decode_qkv(const TensorView& x, const TensorView& g, float eps, const TensorView& wqkv,
                             const TensorView* bqkv, const StepTokens& tok, const TensorView& rope_cos_sin,
                             const AttentionShape& s, int64_t layer, KvCache& cache, TensorView qkv) {
    LAMINA_CHECK(x.dtype == act_ && wqkv.dtype == act_ && qkv.dtype == act_ && cache.dtype == act_);
    LAMINA_CHECK((g.empty() || (g.dtype == DType::F32 && g.n_elements() == x.cols)) && rope_cos_sin.dtype == DType::F32);
    const int64_t qkv_dim = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
    LAMINA_CHECK(wqkv.rows == qkv_dim && wqkv.cols == x.cols && qkv.cols == qkv_dim && qkv.rows == x.rows &&
                 x.rows == tok.n_tokens && s.head_dim % 2 == 0 && rope_cos_sin.cols == s.head_dim);
    LAMINA_CHECK(cache.kv_dim == s.n_head_kv * s.head_dim);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        GemvArgs<T> a = gemv_args<T>(x, gain_of(g), eps, wqkv, bias_of(bqkv), qkv, static_cast<int>(qkv_dim / 2), vec);
        a.positions = tok.positions, a.slots = tok.slots, a.cos_sin = static_cast<const float*>(rope_cos_sin.data);
        a.head_dim = static_cast<int>(s.head_dim), a.n_head = static_cast<int>(s.n_head),
        a.n_head_kv = static_cast<int>(s.n_head_kv);
        a.k_cache = static_cast<T*>(cache.k), a.v_cache = static_cast<T*>(cache.v);
        a.cache = cuda::CacheGeometry::of(cache), a.layer = layer;
        if (g.empty()) launch<T, Epi::RopeKv, false>(a, x.rows, vec, stream_);
        else launch<T, Epi::RopeKv, true>(a, x.rows, vec, stream_);
    });
}

void CudaBackend::decode_matmul_add(const TensorView& x, const TensorView& w, const TensorView* bias,
                                    TensorView residual) {
    LAMINA_CHECK(x.dtype == act_ && w.dtype == act_ && residual.dtype == act_);
    LAMINA_CHECK(w.cols == x.cols && residual.cols == w.rows && residual.rows == x.rows);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        const GemvArgs<T> a = gemv_args<T>(x, nullptr, 0.0f, w, bias_of(bias), residual, static_cast<int>(w.rows), vec);
        launch<T, Epi::Add, false>(a, x.rows, vec, stream_);
    });
}

void CudaBackend::decode_gate_up(const TensorView& x, const TensorView& g, float eps, const TensorView& w_gate_up,
                                 const TensorView* bias, TensorView out) {
    LAMINA_CHECK(x.dtype == act_ && w_gate_up.dtype == act_ && out.dtype == act_);
    LAMINA_CHECK(g.empty() || (g.dtype == DType::F32 && g.n_elements() == x.cols));
    LAMINA_CHECK(w_gate_up.cols == x.cols && w_gate_up.rows == 2 * out.cols && out.rows == x.rows);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        GemvArgs<T> a = gemv_args<T>(x, gain_of(g), eps, w_gate_up, bias_of(bias), out, static_cast<int>(out.cols), vec);
        a.pair_offset = static_cast<int>(out.cols);
        if (g.empty()) launch<T, Epi::SwiGlu, false>(a, x.rows, vec, stream_);
        else launch<T, Epi::SwiGlu, true>(a, x.rows, vec, stream_);
    });
}

void CudaBackend::decode_norm_matmul(const TensorView& x, const int32_t* rows, const TensorView& g, float eps,
                                     const TensorView& w, TensorView out) {
    LAMINA_CHECK(x.dtype == act_ && w.dtype == act_ && out.dtype == act_);
    LAMINA_CHECK(g.dtype == DType::F32 && g.n_elements() == x.cols && w.cols == x.cols && out.cols == w.rows);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        bool vec = false;
        GemvArgs<T> a = gemv_args<T>(x, &g, eps, w, nullptr, out, static_cast<int>(w.rows), vec);
        a.x_rows = rows;
        launch<T, Epi::Store, true>(a, out.rows, vec, stream_);
    });
}

}  // namespace lamina
