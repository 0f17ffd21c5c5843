// The attention and its output projection (o_proj) in a one-token decode step, overlapped. Opt-in
// (LAMINA_OPROJ_OVERLAP=1): on the H200 at LLaMA-7B it measured 250.5-251.7 tok/s against 271.5-273.3 for
// attention() + matmul() (bench/results/2026-11-29-h200-step/NOTES.md, section 9, run45-run48).
//
//   attn = attention(qkv) (attention.cu);  out[r] = T(sum_c W[r, c] * attn[c] + bias[r]),  c < k = n_head * head_dim
//
// At batch 1 the decode attention is latency-bound (about 12 µs a layer at LLaMA-7B for 10 MB of cache) and o_proj
// bandwidth-bound (32 MB). As two kernels, o_proj's blocks start only as attention blocks leave (registers), and its
// PDL wait returns once the whole attention grid has finished (NOTES.md, run38's trace). Here o_proj is one block an
// SM, launched while the attention runs (the attention triggers it at its start) and small enough in threads and
// registers to fit beside about half of the attention's blocks. It lands its rows in shared memory with bulk
// copies (TMA; the attention uses little shared memory) and, rows that do not fit, in registers; then, instead of
// the PDL wait, it waits on per-head counters that the attention's merging blocks release, stages attn in shared
// memory and takes the products. What it loses (run48's trace): half its blocks still start only as the attention
// leaves, and the products of an SM's 32 rows on its 4 warps take most of the 10 µs between the last head and the end.
//
// Shapes: T half or bf16; k <= 4096 (16 vectors a lane), k and head_dim multiples of 8, at most 64 heads; 32 rows a
// block (m <= 32 * SMs); attn, W's rows and out 16-byte aligned. Other shapes take attention() + matmul().
// Threads: 4 warps. Warp w's row slots j = 0..7 hold the block's local rows j * 4 + w: slots j < js in shared
// memory, then JR slots in registers. Lane l takes vectors u * 32 + l of each row, u ascending, as the GEMV does at
// one warp a row (decode_gemv.cu), so the sums are the same bits.
// Sync: per layer, heads_done[h] counts the attention's merges of head h (released after the head's output is
// written); gen counts this kernel's runs: each block reads it at its start and the last block to start advances
// it, so a run waits for heads_done[h] == gen + 1 (relaxed polls, then a fence and a barrier: an acquire). The
// kernel does no PDL wait: it reads attn behind those counters and W; it writes out, which the kernel just before
// the attention read (it finished before the attention launched; see cuda::pdl_wait).
// Bytes: W once, m * k * sizeof(T); attn from L2 once a block.
#include <algorithm>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/sync.cuh"

namespace lamina {

namespace {

constexpr int kWarps = 4;
constexpr int kSlots = 8;         // row slots a warp: 32 rows a block
constexpr int kMaxVectors = 16;   // 16-byte vectors of a row a lane: k <= 4096 for half and bf16
constexpr int kRegisterRows = 2;  // register slots of the kernel with any (JR)
// At most this many registers a thread: one block (4 warps) beside 5 blocks of the attention (64 registers, 4 warps)
// in an SM's 64K. Unbounded, the kernel took 210 (the loads of attn from shared memory hoisted) and did not fit.
constexpr int kMaxRegisters = 184;
constexpr int kMaxHeads = 64;  // warp 0 polls two heads a lane

template <typename T>
struct OutProjArgs {
    const T* x;  // the attention's output row
    const T* w;
    int64_t w_stride;
    const float* bias;
    T* out;
    int m, k, head_dim, n_head;
    int js;          // shared-memory slots a warp
    unsigned* sync;  // this layer's heads_done[n_head], then gen and arrived
    uint64_t watchdog_ns;
};

template <typename T>
__device__ __forceinline__ float dot(const uint4 w, const uint4 x, float acc) {
    const T* a = reinterpret_cast<const T*>(&w);
    const T* b = reinterpret_cast<const T*>(&x);
#pragma unroll
    for (int j = 0; j < 16 / static_cast<int>(sizeof(T)); ++j) acc += cuda::to_float(a[j]) * cuda::to_float(b[j]);
    return acc;
}

template <typename T, int JR>
__global__ void __maxnreg__(kMaxRegisters) out_proj_kernel(const OutProjArgs<T> a) {
    LAMINA_TRACE_KERNEL(cuda::kTraceOutProj);
    constexpr int V = 16 / sizeof(T);
    extern __shared__ uint4 rows[];  // [js * kWarps][k / V]: local row i at i * vecs; then attn
    __shared__ __align__(8) uint64_t landed;
    __shared__ unsigned target_shared;
    const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
    const int r0 = static_cast<int>(static_cast<int64_t>(a.m) * blockIdx.x / gridDim.x);
    const int nb = static_cast<int>(static_cast<int64_t>(a.m) * (blockIdx.x + 1) / gridDim.x) - r0;
    const int vecs = a.k / V;
    const int in_smem = min(nb, a.js * kWarps);
    unsigned* const heads_done = a.sync;
    unsigned* const gen = a.sync + a.n_head;
    unsigned* const arrived = gen + 1;

    if (threadIdx.x == 0) {  // the shared-memory rows: a bulk copy each (as 32 KB copies: the same, run47)
        cuda::mbar_init(&landed, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        const auto row_bytes = static_cast<uint32_t>(a.k * sizeof(T));
        cuda::mbar_arrive_expect_tx(&landed, row_bytes * in_smem);
        const uint64_t policy = cuda::evict_first_policy();
        for (int i = 0; i < in_smem; ++i)
            cuda::bulk_load(rows + static_cast<int64_t>(i) * vecs, a.w + static_cast<int64_t>(r0 + i) * a.w_stride,
                            row_bytes, &landed, policy);
    }
    if (threadIdx.x == 32) {
        // This run's number: read before this block counts itself in (the fence), advanced by the last to count.
        const unsigned g = cuda::ld_relaxed(gen);
        __threadfence();
        if (atomicAdd(arrived, 1u) == gridDim.x - 1) {
            __threadfence();
            *arrived = 0;
            cuda::st_relaxed(gen, g + 1);
        }
        target_shared = g + 1;
    }
    // The register rows: local rows (js + jr) * kWarps + warp, loaded now, read once (evict-first).
    uint4 wreg[JR > 0 ? JR : 1][kMaxVectors];
#pragma unroll
    for (int jr = 0; jr < JR; ++jr) {
        const int local = (a.js + jr) * kWarps + warp;
        const uint4* wr =
            reinterpret_cast<const uint4*>(a.w + static_cast<int64_t>(r0 + (local < nb ? local : 0)) * a.w_stride);
#pragma unroll
        for (int u = 0; u < kMaxVectors; ++u) {
            const int v = u * 32 + lane;
            wreg[jr][u] = local < nb && v < vecs ? __ldcs(wr + v) : make_uint4(0, 0, 0, 0);
        }
    }
    __syncthreads();  // the barrier's init and this run's number
    const unsigned target = target_shared;
    cuda::mbar_wait(&landed, 0, a.watchdog_ns);

    // Every head merged: warp 0 polls, a head a lane (two loads a lane and a ballot a poll; polling each lane's own
    // heads one at a time, a compare between loads, made o_proj 20 µs late, run45), then the fence and the barrier
    // pass the acquire on to the block (as with a flag and __syncthreads).
    if (warp == 0) {
        cuda::Watchdog dog{a.watchdog_ns};
        const auto merged = [&](int head) { return head >= a.n_head || cuda::ld_relaxed(heads_done + head) == target; };
        while (!__all_sync(0xffffffffu, merged(lane) && merged(lane + 32))) dog.tick();
        __threadfence();
    }
    __syncthreads();
    LAMINA_TRACE_WAITED();  // the trace's "wait": the heads are merged
    // attn into shared memory, all of it requested at once (loaded in the loop below, after each head's wait, the
    // loads were 16 dependent L2 round trips: 20 µs, run47).
    uint4* const xs = rows + static_cast<int64_t>(a.js) * kWarps * vecs;
    for (int v = static_cast<int>(threadIdx.x); v < vecs; v += kWarps * 32)
        xs[v] = __ldcg(reinterpret_cast<const uint4*>(a.x) + v);
    __syncthreads();

    float acc[kSlots] = {}, acc_reg[JR > 0 ? JR : 1] = {};
#pragma unroll
    for (int u = 0; u < kMaxVectors; ++u) {
        const int v = u * 32 + lane;
        if (v >= vecs) break;
        const uint4 x = xs[v];
#pragma unroll
        for (int j = 0; j < kSlots; ++j)
            if (j < a.js && j * kWarps + warp < nb)
                acc[j] = dot<T>(rows[static_cast<int64_t>(j * kWarps + warp) * vecs + v], x, acc[j]);
#pragma unroll
        for (int jr = 0; jr < JR; ++jr) acc_reg[jr] = dot<T>(wreg[jr][u], x, acc_reg[jr]);
    }
    cudaTriggerProgrammaticLaunchCompletion();

    const auto store = [&](int local, float sum) {
        sum = cuda::warp_sum(sum);
        if (lane == 0) {
            const int row = r0 + local;
            a.out[row] = cuda::from_float<T>(sum + (a.bias ? a.bias[row] : 0.0f));
        }
    };
#pragma unroll
    for (int j = 0; j < kSlots; ++j)
        if (j < a.js && j * kWarps + warp < nb) store(j * kWarps + warp, acc[j]);
#pragma unroll
    for (int jr = 0; jr < JR; ++jr)
        if ((a.js + jr) * kWarps + warp < nb) store((a.js + jr) * kWarps + warp, acc_reg[jr]);
}

// Where the rows go: js shared-memory slots a warp and jr register slots, or none (the shapes it does not take).
struct OutProjPlan {
    bool ok = false;
    int grid = 0, js = 0, jr = 0;
    size_t smem = 0;
};

OutProjPlan plan_out_proj(DType act, const TensorView& attn, const TensorView& w, const TensorView& out,
                          const AttentionShape& s, const StepTokens& tok, int64_t n_ctx) {
    OutProjPlan p;
    // Opt-in (slower: see the top); read at each call, so that a test can turn it on.
    const bool on = env_switch("LAMINA_OPROJ_OVERLAP", false);
    const int64_t k = attn.cols, m = w.rows;
    if (!on || act == DType::F32 || tok.n_tokens != 1 || tok.n_tiles != 0 || k > kMaxVectors * 32 * 8 || k % 8 != 0 ||
        s.head_dim % 8 != 0 || s.n_head > kMaxHeads || !vector_rows(attn, 8) || !vector_rows(w, 8) || out.rows != 1 ||
        reinterpret_cast<uintptr_t>(out.data) % 16 != 0)
        return p;
    const int sms = cuda::sm_count();
    int device = 0, smem_sm = 0, smem_block = 0, reserved = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device));
    p.grid = static_cast<int>(std::min<int64_t>(sms, m));
    const int64_t per_block = (m + p.grid - 1) / p.grid;
    if (per_block > kSlots * kWarps) return p;
    // Shared memory left beside the attention's blocks on an SM (they are all resident when this kernel launches).
    static const size_t attn_block = decode_attention_block_smem();
    const int64_t attn_blocks = (decode_attention_splits(1, s.n_head, n_ctx) * s.n_head + sms - 1) / sms;
    const int64_t budget =
        std::min<int64_t>(smem_block, smem_sm - attn_blocks * (attn_block + reserved) - reserved - 64);
    const int64_t row_bytes = k * dtype_size(act);
    // LAMINA_OPROJ_SMEM_SLOTS caps the shared-memory slots (tests: the register rows on small models).
    const int64_t cap = env_int("LAMINA_OPROJ_SMEM_SLOTS", kSlots, 0);
    const int64_t js_max =
        std::clamp<int64_t>((budget - row_bytes) / (kWarps * row_bytes), 0, std::min<int64_t>(cap, kSlots));
    const int64_t slots_needed = (per_block + kWarps - 1) / kWarps;
    if (slots_needed <= js_max) {
        p.js = static_cast<int>(slots_needed);
    } else if (slots_needed <= std::min<int64_t>(js_max, kSlots - kRegisterRows) + kRegisterRows) {
        p.js = static_cast<int>(slots_needed - kRegisterRows);
        p.jr = kRegisterRows;
    } else {
        return p;
    }
    p.smem = static_cast<size_t>((p.js * kWarps + 1) * row_bytes);  // the rows, then attn
    p.ok = true;
    return p;
}

template <typename T, int JR>
void launch_out_proj(const OutProjArgs<T>& a, const OutProjPlan& p, cudaStream_t stream) {
    const auto kernel = out_proj_kernel<T, JR>;
    if (p.smem > (48u << 10))
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(p.smem)));
    cuda::launch_pdl(kernel, dim3(static_cast<unsigned>(p.grid)), kWarps * 32, p.smem, stream, a);
}

}  // namespace

void CudaBackend::attention_out_proj(const TensorView& qkv, const StepTokens& tok, const AttentionShape& s,
                                     int64_t layer, const KvCache& cache, TensorView attn, const TensorView& wo,
                                     const TensorView* bo, TensorView out) {
    LAMINA_CHECK(wo.dtype == act_ && out.dtype == act_ && wo.cols == attn.cols && out.cols == wo.rows &&
                 out.rows == attn.rows);
    LAMINA_CHECK(bo == nullptr || (bo->dtype == DType::F32 && bo->n_elements() == wo.rows));
    const OutProjPlan p = plan_out_proj(act_, attn, wo, out, s, tok, cache.n_ctx);
    if (!p.ok) {
        attention(qkv, tok, s, layer, cache, attn);
        matmul(attn, wo, bo, out);
        return;
    }
    // The counters: per layer, n_head heads_done, then gen and arrived; one set per (layers, heads), since a
    // complete run leaves heads_done == gen in every layer (so models of one shape may share them) but another
    // shape would read them at other offsets. Zeroed once (inside a capture, as a graph node: then each replay
    // starts them all from zero, which keeps them consistent too).
    const auto per_layer = static_cast<size_t>(s.n_head + 2);
    void*& counters = proj_sync_[{cache.n_layer, s.n_head}];
    if (counters == nullptr) {
        const size_t bytes = static_cast<size_t>(cache.n_layer) * per_layer * sizeof(unsigned);
        CUDA_CHECK(cudaMalloc(&counters, bytes));
        CUDA_CHECK(cudaMemsetAsync(counters, 0, bytes, stream_));
    }
    unsigned* sync = static_cast<unsigned*>(counters) + static_cast<size_t>(layer) * per_layer;
    launch_attention(qkv, tok, s, layer, cache, attn, sync);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        if constexpr (!std::is_same_v<T, float>) {
            const OutProjArgs<T> a{static_cast<const T*>(attn.data),
                                   static_cast<const T*>(wo.data),
                                   wo.row_stride,
                                   bo ? static_cast<const float*>(bo->data) : nullptr,
                                   static_cast<T*>(out.data),
                                   static_cast<int>(wo.rows),
                                   static_cast<int>(wo.cols),
                                   static_cast<int>(s.head_dim),
                                   static_cast<int>(s.n_head),
                                   p.js,
                                   sync,
                                   cuda::watchdog_ns()};
            if (p.jr == 0)
                launch_out_proj<T, 0>(a, p, stream_);
            else
                launch_out_proj<T, kRegisterRows>(a, p, stream_);
        }
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
