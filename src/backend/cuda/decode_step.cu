// The persistent decode step: a whole decode step of one token (batch 1) as one kernel, so the weights
// stream from memory without the gaps between kernels. Opt-in (LAMINA_PERSISTENT_DECODE=1): on the H200
// it runs 228 tok/s at LLaMA-7B against 237 for the separate kernels; LAMINA_STEP_PROFILE=1 prints
// where a step's time goes (bench/results/2026-11-29-h200-step/NOTES.md).
//
// Math: that of the plain ops with the fused RMSNorm, each result rounded to T where they store it:
//   x = embd[id]; per layer: h = rmsnorm(x) * g_attn; [q|k|v] = h @ Wqkv^T + b; RoPE on q, k; k, v -> cache at
//   (slot, layer, pos); a = softmax(q k^T * scale) v over positions 0..pos (GQA); x += a @ Wo^T + b;
//   h = rmsnorm(x) * g_ffn; [g|u] = h @ Wgu^T + b; f = silu(g) * u; x += f @ Wdown^T + b;
//   then logits = rmsnorm(x) * g_out @ Wout^T.
// Grid: one block per SM, all resident (a cooperative launch); 8 consumer warps and 1 producer warp.
// - The producer streams this block's rows of every weight matrix of the step, in order, into a ring of
//   32 KB shared-memory stages with bulk asynchronous copies (TMA, evict-first), running ahead of the
//   consumers by as many stages as fit (6 for LLaMA-7B). Weights depend on nothing computed in the step,
//   so it never waits for the consumers' phases: the stream goes on through their barriers until the
//   ring is full.
// - The consumers go through the step's phases, separated by grid barriers (5 per layer):
//   1. norm: each block normalizes the whole residual row (8 KB for 7B) into shared memory; its rows of Wqkv;
//   2. attention: (head, key range) items over the blocks, flash-decoding partials; RoPE on q and on the new
//      k is applied here, one item per KV head writes the new k, v to the cache, and the block finishing a
//      head's last split merges its partials into the attention output;
//   3. its rows of Wo on the attention output, added to the residual;
//   4. norm; its gate rows and the matching up rows of Wgu; SwiGLU;
//   5. its rows of Wdown on the SwiGLU output, added to the residual.
//   Then norm and the block's rows of the LM head.
//   A block's rows of a matrix are a balanced contiguous range; a stage holds whole rows (or a piece of a
//   row longer than a stage). Within a stage the warps split the rows (long rows in parts), take 16-byte
//   vectors of W from the stage against x (held in registers for whole-row stages), sum in f32, and add the
//   row sums into shared memory.
//   (Rows taken from a per-matrix counter by each block's producer instead, so that fast blocks do more of
//   them, measured slower: 221.7 against 224.5 tok/s for the fixed split in one call on the H200. That code is
//   in commit 20019bf; NOTES.md section 4.)
// Shapes: T = half or bf16; k of every matrix a multiple of 8; head_dim 64 or 128; weights contiguous and
// 16-byte aligned; at most kMaxLayers layers. Other shapes (and f32) take the separate kernels.
// Bytes: the weights once (the step's whole cost at batch 1: the target is the copy bandwidth), the KV cache
// of the sequence once per query head (GQA shares through L2), and per block a few copies of small vectors
// from L2 (the residual, the attention output, the SwiGLU output).
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/sync.cuh"

namespace lamina {

namespace {

constexpr int kConsumerWarps = 8;
constexpr int kConsumers = kConsumerWarps * 32;
constexpr int kThreads = kConsumers + 32;  // and the producer warp
constexpr int kStageBytes = 32 << 10;
constexpr int kMaxStages = 8;
constexpr int kMaxLayers = 96;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxItems = 1024;      // attention (head, split) items of one step
constexpr int kMinSplitKeys = 16;    // keys per attention item at least (fewer splits for short sequences)
// Keys a warp has in flight at once (160 per block: a 640-key cache in 4 splits, one pass).
constexpr int kKeysPerStep = 20;

// Where a block's time goes (LAMINA_STEP_PROFILE=1): clock cycles of consumer thread 0 (the producer's
// stalls from the producer thread), summed over blocks and the steps since the counters were zeroed (a
// captured decode graph zeroes them at each replay, so there: the last step); printed when the backend is
// destroyed.
enum ProfileSlot { kTotal, kStaging, kConsume, kWeightWait, kFinish, kGridBarrier, kAttention, kProducerStall,
                   kTotalNs, kSteps, kProfileSlots };
const char* const kProfileNames[] = {"total", "staging x (norm, copy)", "GEMV (incl. weight waits)",
                                     "  of which waiting for weights", "epilogues", "grid barriers", "attention",
                                     "producer stalled on a full ring"};

template <typename T>
struct LayerPtrs {
    const T *wqkv, *wo, *wgu, *wdown;
    const float *attn_norm, *ffn_norm, *bqkv, *bo, *bgu, *bdown;  // biases may be null
};

// A grid barrier's state: one count of all the step's arrivals, zeroed before each launch. A block adds 1
// without waiting for the result (red.release) and polls until the count reaches (barriers passed) * blocks.
// (It replaced a self-resetting barrier whose last arrival reset the count and advanced a generation: two more
// atomics and a fence on the critical path. With LAMINA_STEP_PROFILE=1 on the H200: 343 against 435 µs of
// barriers per step, 225.9 against 221.9 tok/s.)
struct GridSync {
    unsigned arrivals;
};

template <typename T>
struct StepArgs {
    LayerPtrs<T> layers[kMaxLayers];
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    float eps, scale;
    const T* tok_embd;
    const float* out_norm;
    const T* w_out;
    const int32_t *ids, *positions, *slots;
    const float* cos_sin;  // [n_ctx, head_dim]: cos of the half's angles, then their sin
    T *k_cache, *v_cache;
    cuda::CacheGeometry cache;
    T *residual, *qkv, *attn, *ff, *logits;
    float* partials;  // [n_head][max_splits][head_dim + 2]: accumulators, max, sum
    int* head_done;   // [n_head]: splits finished (zero between steps)
    int max_splits;
    GridSync* sync;
    int stages, x_bytes, acc_floats;  // the dynamic shared memory: staged x, row sums, the ring
    uint64_t watchdog_ns;             // a wait longer than this traps (0: never)
    unsigned long long* profile;      // LAMINA_STEP_PROFILE=1: kProfileSlots sums over blocks and steps, else null
    __host__ __device__ int q_dim() const { return n_head * head_dim; }
    __host__ __device__ int qkv_dim() const { return (n_head + 2 * n_head_kv) * head_dim; }
};

// ---- synchronization primitives (and sync.cuh) ----

// The consumer warps' own block barrier (the producer warp never joins them).
__device__ __forceinline__ void consumer_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory"); }

// Sum over the consumer threads; every one gets it.
__device__ __forceinline__ float consumer_sum(float x, float* red) {
    const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
    x = cuda::warp_sum(x);
    if (lane == 0) red[warp] = x;
    consumer_sync();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kConsumerWarps; ++w) total += red[w];
    consumer_sync();  // red[] is free again
    return total;
}

// Every consumer thread of every block arrives; returns once all have, with their global writes visible.
// `passed` counts the barriers this block has passed in the step (the same in every block).
__device__ __forceinline__ void grid_sync(GridSync* gs, uint64_t watchdog_ns, unsigned& passed) {
    consumer_sync();
    ++passed;
    if (threadIdx.x == 0) {
        __threadfence();
        cuda::add_release(&gs->arrivals, 1);
        const unsigned target = passed * gridDim.x;
        cuda::Watchdog dog{watchdog_ns};
        for (;;) {
            unsigned now;
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(&gs->arrivals) : "memory");
            if (now >= target) break;
            dog.tick();
        }
        __threadfence();
    }
    consumer_sync();
}

// ---- the weight stream: which bytes, in which order (shared by the producer and the consumers) ----

// The rows of a matrix this block reads: one balanced range, or two (gate rows and the same up rows).
// Local row numbers count through the ranges in order.
struct Slice {
    int begin[2], end[2], n;
};

__device__ __forceinline__ Slice block_rows(int m, int pair_offset = 0) {
    Slice s;
    s.begin[0] = static_cast<int>(static_cast<int64_t>(m) * blockIdx.x / gridDim.x);
    s.end[0] = static_cast<int>(static_cast<int64_t>(m) * (blockIdx.x + 1) / gridDim.x);
    s.begin[1] = s.begin[0] + pair_offset;
    s.end[1] = s.end[0] + pair_offset;
    s.n = pair_offset > 0 ? 2 : 1;
    return s;
}

// Calls f(src, rows, local_row, col0, cols) for each stage-sized chunk of the slice of W [m, k]: whole
// rows, as many as fit a stage, or pieces of one row (multiples of 8 elements) when a row does not fit.
struct ChunkShape {
    int rows;   // whole rows per chunk (1 when rows come in pieces)
    int piece;  // elements of a row per chunk (k for whole rows)
};
__host__ __device__ __forceinline__ ChunkShape chunk_shape(int k, int elem) {
    const int row_bytes = k * elem;
    if (row_bytes <= kStageBytes) return {kStageBytes / row_bytes, k};
    const int pieces = (row_bytes + kStageBytes - 1) / kStageBytes;
    return {1, ((k + pieces - 1) / pieces + 7) / 8 * 8};
}
template <typename T>
__device__ __forceinline__ ChunkShape chunk_shape(int k) {
    return chunk_shape(k, static_cast<int>(sizeof(T)));
}
// Warps per row of a chunk: they split the row's vectors, each adding its share into its own slot of the
// row's sums (acc[row * parts + part]), which the epilogue adds in order: the same sums every run.
__host__ __device__ __forceinline__ int row_parts(int k, int elem) {
    const int rows = chunk_shape(k, elem).rows;
    return rows >= kConsumerWarps ? 1 : kConsumerWarps / rows;
}

template <typename T, typename F>
__device__ __forceinline__ void for_each_chunk(const T* w, int k, const Slice& s, F&& f) {
    const ChunkShape shape = chunk_shape<T>(k);
    const int rows_per_chunk = shape.rows, piece = shape.piece;
    int local = 0;
    for (int g = 0; g < s.n; ++g) {
        for (int r = s.begin[g]; r < s.end[g]; r += rows_per_chunk) {
            const int rows = min(rows_per_chunk, s.end[g] - r);
            for (int c0 = 0; c0 < k; c0 += piece) f(w + static_cast<int64_t>(r) * k + c0, rows, local + r - s.begin[g], c0, min(piece, k - c0));
        }
        local += s.end[g] - s.begin[g];
    }
}

enum class Role { Qkv, O, GateUp, Down, Head };

template <typename T>
struct Matrix {
    Role role;
    int layer;
    const T* w;  // [m, k]
    int k;
    Slice rows;  // this block's rows of it
};

// Every matrix of the step in stream order: the one order the producer streams and the consumers take.
template <typename T, typename F>
__device__ __forceinline__ void for_each_matrix(const StepArgs<T>& a, F&& f) {
    for (int l = 0; l < a.n_layer; ++l) {
        const LayerPtrs<T>& L = a.layers[l];
        f(Matrix<T>{Role::Qkv, l, L.wqkv, a.n_embd, block_rows(a.qkv_dim())});
        f(Matrix<T>{Role::O, l, L.wo, a.q_dim(), block_rows(a.n_embd)});
        f(Matrix<T>{Role::GateUp, l, L.wgu, a.n_embd, block_rows(a.n_ff, a.n_ff)});
        f(Matrix<T>{Role::Down, l, L.wdown, a.n_ff, block_rows(a.n_embd)});
    }
    f(Matrix<T>{Role::Head, a.n_layer, a.w_out, a.n_embd, block_rows(a.n_vocab)});
}

struct Ring {
    uint8_t* data;
    uint64_t* full;   // the stage's bytes have landed (the producer's arrival + the copy's bytes)
    uint64_t* empty;  // every consumer warp is done with the stage
    int stages;
};

// The producer: one thread issues every chunk of the step into the ring, waiting only for free stages.
// (An L2 prefetch of the chunks ahead of the ring, to keep memory busy while the consumers are between
// matrices, measured slower: 226.4 tok/s without it, 217.3 / 195.2 / 160.5 with 4 / 8 / 12 chunks ahead.)
template <typename T>
__device__ void produce(const StepArgs<T>& a, const Ring& ring) {
    unsigned long long stalled = 0;
    const uint64_t policy = cuda::evict_first_policy();
    uint32_t i = 0;
    for_each_matrix(a, [&](const Matrix<T>& m) {
        for_each_chunk(m.w, m.k, m.rows, [&](const T* src, int rows, int, int, int cols) {
            const int stage = static_cast<int>(i % ring.stages);
            const uint32_t round = i / ring.stages;
            if (round > 0) {
                const long long t0 = clock64();
                cuda::mbar_wait(&ring.empty[stage], (round - 1) & 1u, a.watchdog_ns);
                stalled += clock64() - t0;
                // The consumers read the stage with ordinary loads; the copy below writes it through the
                // async proxy.
                asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            }
            const auto bytes = static_cast<uint32_t>(rows * cols * static_cast<int>(sizeof(T)));
            cuda::mbar_arrive_expect_tx(&ring.full[stage], bytes);
            cuda::bulk_load(ring.data + static_cast<size_t>(stage) * kStageBytes, src, bytes, &ring.full[stage],
                            policy);
            ++i;
        });
    });
    if (a.profile) atomicAdd(&a.profile[kProducerStall], stalled);
}

// sum + w . x over 8 elements; both by value: the callers' loads are then single 16-byte loads (a reference
// into shared memory let the compiler read the elements one by one, 4-way bank conflicts each).
template <typename T>
__device__ __forceinline__ float dot8(const uint4 w, const uint4 x, float sum) {
    const T* a = reinterpret_cast<const T*>(&w);
    const T* b = reinterpret_cast<const T*>(&x);
#pragma unroll
    for (int j = 0; j < 8; ++j) sum = fmaf(cuda::to_float(a[j]), cuda::to_float(b[j]), sum);
    return sum;
}

// The consumers' side of one matrix: acc[local row] += W[row, :] . xs for the block's rows. `chunk` counts
// the ring's chunks over the whole step (the producer's i). A chunk's rows are split over the warps, `parts`
// warps per row (row_parts: it divides the 8 warps, so a warp's part of a row is the same in every chunk); when
// chunks hold whole rows, each lane keeps its part of x in registers for the whole matrix (at most kXRegs
// vectors) and reads only W from shared memory, half the shared-memory traffic. Each load is used as soon as
// it lands. Issuing all of a row's loads before the first multiply made the consumers faster (ncu had most of
// their stalls on the first use of each load) and the step slower, 225 -> 211 tok/s at LLaMA-7B on the H200:
// the GEMV time stayed the same and the blocks reached the grid barriers further apart (343 -> 876 µs of
// barriers per step; bench/results/2026-11-29-h200-step/NOTES.md).
constexpr int kXRegs = 8;
template <typename T>
__device__ void consume(const Ring& ring, uint32_t& chunk, const T* xs, const Matrix<T>& m, float* acc,
                        uint64_t watchdog_ns, unsigned long long& waited) {
    const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
    const int k = m.k;
    const ChunkShape shape = chunk_shape<T>(k);
    const int parts = row_parts(k, static_cast<int>(sizeof(T))), part = warp % parts, stride = parts * 32;
    const int row_vecs = k / 8;
    const bool x_in_regs = shape.piece == k && row_vecs <= kXRegs * stride;
    const auto* xv_all = reinterpret_cast<const uint4*>(xs);
    uint4 xr[kXRegs];
#pragma unroll
    for (int j = 0; j < kXRegs; ++j) {
        const int v = part * 32 + lane + j * stride;
        xr[j] = x_in_regs && v < row_vecs ? xv_all[v] : make_uint4(0, 0, 0, 0);
    }
    for_each_chunk(m.w, k, m.rows, [&](const T*, int rows, int local, int c0, int cols) {
        const int stage = static_cast<int>(chunk % ring.stages);
        const long long t0 = clock64();
        cuda::mbar_wait(&ring.full[stage], (chunk / ring.stages) & 1u, watchdog_ns);
        waited += clock64() - t0;  // read from thread 0's copy only
        const auto* buf = reinterpret_cast<const uint4*>(ring.data + static_cast<size_t>(stage) * kStageBytes);
        const int vecs = cols / 8;
        for (int u = warp; u < rows * parts; u += kConsumerWarps) {
            const uint4* wr = buf + (u / parts) * vecs;
            float sum0 = 0.0f, sum1 = 0.0f;  // two chains of FMAs
            if (x_in_regs) {
#pragma unroll
                for (int j = 0; j < kXRegs; ++j) {
                    const int v = part * 32 + lane + j * stride;
                    if (v < vecs) {
                        const uint4 wv = wr[v];
                        if (j % 2 == 0) sum0 = dot8<T>(wv, xr[j], sum0);
                        else sum1 = dot8<T>(wv, xr[j], sum1);
                    }
                }
            } else {
                const auto* xv = reinterpret_cast<const uint4*>(xs + c0);
#pragma unroll 4
                for (int v = part * 32 + lane; v < vecs; v += stride) {
                    const uint4 wv = wr[v], x = xv[v];
                    sum0 = dot8<T>(wv, x, sum0);
                }
            }
            const float sum = cuda::warp_sum(sum0 + sum1);
            if (lane == 0) acc[(local + u / parts) * parts + part] += sum;  // this warp's slot only
        }
        __syncwarp();
        if (lane == 0) cuda::mbar_arrive(&ring.empty[stage]);
        ++chunk;
    });
}

// ---- the consumers' phases ----

// xs = T(g * (x * rsqrt(mean(x^2) + eps))) for the n elements of src (as the RMSNorm op rounds them).
// share: when set, the block also copies its 1/gridDim share of src there (the embedding into the residual).
template <typename T>
__device__ void stage_norm(const T* src, const float* g, int n, float eps, T* xs, T* share, float* red) {
    float ss = 0.0f;
    for (int i = static_cast<int>(threadIdx.x) * 8; i < n; i += kConsumers * 8) {
        const uint4 raw = __ldcg(reinterpret_cast<const uint4*>(src + i));
        *reinterpret_cast<uint4*>(xs + i) = raw;
        if (share != nullptr && (i / 8) % static_cast<int>(gridDim.x) == static_cast<int>(blockIdx.x))
            *reinterpret_cast<uint4*>(share + i) = raw;
        const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int j = 0; j < 8; ++j) ss += cuda::to_float(v[j]) * cuda::to_float(v[j]);
    }
    const float inv = rsqrtf(consumer_sum(ss, red) / static_cast<float>(n) + eps);
    for (int i = static_cast<int>(threadIdx.x) * 8; i < n; i += kConsumers * 8) {  // each thread its own elements
        uint4 raw = *reinterpret_cast<const uint4*>(xs + i);
        T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = cuda::from_float<T>(g[i + j] * (cuda::to_float(v[j]) * inv));
        *reinterpret_cast<uint4*>(xs + i) = raw;
    }
    consumer_sync();
}

// xs = src (n elements written earlier in the step by other blocks).
template <typename T>
__device__ void stage_copy(const T* src, int n, T* xs) {
    for (int i = static_cast<int>(threadIdx.x) * 8; i < n; i += kConsumers * 8)
        *reinterpret_cast<uint4*>(xs + i) = __ldcg(reinterpret_cast<const uint4*>(src + i));
    consumer_sync();
}

enum class Out { Store, Add, SwiGlu };

// After consume(): the block's outputs from the row sums (each product rounded to T as the matmul stores it,
// then the bias; Add: residual += it; SwiGlu: out[i] = silu(gate) * up), and the sums zeroed for the next matrix.
// Takes (and zeroes) local row lr's sum: its parts added in order.
__device__ __forceinline__ float take_row_sum(float* acc, int lr, int parts) {
    float sum = 0.0f;
    for (int p = 0; p < parts; ++p) {
        sum += acc[lr * parts + p];
        acc[lr * parts + p] = 0.0f;
    }
    return sum;
}

template <typename T>
__device__ void finish(const Matrix<T>& m, Out o, float* acc, const float* bias, T* out) {
    consumer_sync();
    const Slice& s = m.rows;
    const int n0 = s.end[0] - s.begin[0], parts = row_parts(m.k, static_cast<int>(sizeof(T)));
    for (int lr = static_cast<int>(threadIdx.x); lr < n0; lr += kConsumers) {
        const int row = s.begin[0] + lr;
        const float y = cuda::to_float(cuda::from_float<T>(take_row_sum(acc, lr, parts) + (bias ? bias[row] : 0.0f)));
        if (o == Out::Store) {
            out[row] = cuda::from_float<T>(y);
        } else if (o == Out::Add) {
            out[row] = cuda::from_float<T>(cuda::to_float(__ldcg(out + row)) + y);
        } else {
            const int up_row = s.begin[1] + lr;
            const float u = cuda::to_float(cuda::from_float<T>(take_row_sum(acc, n0 + lr, parts) + (bias ? bias[up_row] : 0.0f)));
            out[row] = cuda::from_float<T>(y / (1.0f + __expf(-y)) * u);
        }
    }
}

// Attention splits of a step at n_pos positions: enough (head, key range) items to fill the grid, each of
// `chunk` >= kMinSplitKeys keys, none empty.
struct Splits {
    int n, chunk;
};
template <typename T>
__device__ __forceinline__ Splits attention_splits(const StepArgs<T>& a, int n_pos) {
    const int want = min(max(1, static_cast<int>(gridDim.x) / a.n_head), a.max_splits);
    const int chunk = max(kMinSplitKeys, (n_pos + want - 1) / want);
    return {(n_pos + chunk - 1) / chunk, chunk};
}

// Lane's E elements of a head vector, rotated (RoPE, rotate-half: the partner element is 16 lanes away when
// head_dim = 32 E) and rounded to T as the RoPE op stores them.
template <typename T, int E>
__device__ __forceinline__ void load_rotated(const T* src, const float* cs, int lane, float (&out)[E]) {
    const int half = 16 * E;
    const cuda::Packed<T, E> raw = __ldcg(reinterpret_cast<const cuda::Packed<T, E>*>(src + lane * E));
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < E; ++j) {
        const float x = cuda::to_float(v[j]);
        const float partner = __shfl_xor_sync(0xffffffffu, x, 16);
        const int i = (lane * E + j) % half;
        const float c = cs[i], s = cs[half + i];
        out[j] = cuda::to_float(cuda::from_float<T>(lane < 16 ? x * c - partner * s : x * c + partner * s));
    }
}

template <typename T, int E>
__device__ __forceinline__ void to_floats(const cuda::Packed<T, E> raw, float (&out)[E]) {
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < E; ++j) out[j] = cuda::to_float(v[j]);
}

template <typename T, int E>
__device__ __forceinline__ cuda::Packed<T, E> to_word(const float (&in)[E]) {
    cuda::Packed<T, E> raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int j = 0; j < E; ++j) v[j] = cuda::from_float<T>(in[j]);
    return raw;
}

struct AttentionSmem {
    float m[kConsumerWarps], l[kConsumerWarps], acc[kConsumerWarps][kMaxHeadDim];
    float split_w[kMaxItems];  // the merge of a head's splits: each split's weight
    float sum;                 // and the softmax denominator
    int last;                  // this block finished the head's last split
};

// Phase 2: this block's (head, key range) items. Each streams its keys (8 warps, kKeysPerStep keys each in
// flight, running max / sum / accumulator) and writes its partial (accumulators, max, sum); the block that
// finishes a head's last split (a counter per head, reset by that block) merges the head's partials into
// a.attn, rounded to T. RoPE on q and the new k happens here; one item per KV head writes the new k, v to
// the cache, and the item holding position pos takes its key and value from registers.
template <typename T, int E>
__device__ void attention_items(const StepArgs<T>& a, int layer, int pos, int slot, AttentionSmem& sm) {
    using Word = cuda::Packed<T, E>;
    const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
    const int hd = a.head_dim, n_pos = pos + 1, group = a.n_head / a.n_head_kv;
    const Splits splits = attention_splits(a, n_pos);
    const int ns = splits.n, chunk = splits.chunk, split_of_pos = pos / chunk;
    const float* cs = a.cos_sin + static_cast<int64_t>(pos) * hd;
    const int64_t kv_dim = a.cache.kv_dim, row0 = a.cache.offset(slot, layer, 0);
    for (int item = static_cast<int>(blockIdx.x); item < a.n_head * ns; item += static_cast<int>(gridDim.x)) {
        const int h = item / ns, split = item % ns, kvh = h / group;
        const int begin = split * chunk, end = min(begin + chunk, n_pos);
        T* k_head = a.k_cache + row0 + static_cast<int64_t>(kvh) * hd + lane * E;
        T* v_head = a.v_cache + row0 + static_cast<int64_t>(kvh) * hd + lane * E;
        float q[E], k_new[E];
        load_rotated<T, E>(a.qkv + static_cast<int64_t>(h) * hd, cs, lane, q);
#pragma unroll
        for (int j = 0; j < E; ++j) q[j] *= a.scale;
        load_rotated<T, E>(a.qkv + static_cast<int64_t>(a.n_head + kvh) * hd, cs, lane, k_new);
        const Word k_word = to_word<T, E>(k_new);
        const Word v_word = __ldcg(reinterpret_cast<const Word*>(a.qkv + static_cast<int64_t>(a.n_head + a.n_head_kv + kvh) * hd) + lane);
        if (split == split_of_pos && h % group == 0 && warp == 0) {  // the new key and value into the cache
            *reinterpret_cast<Word*>(k_head + pos * kv_dim) = k_word;
            *reinterpret_cast<Word*>(v_head + pos * kv_dim) = v_word;
        }
        float m = -INFINITY, l = 0.0f, acc[E] = {};
        for (int p0 = begin + warp * kKeysPerStep; p0 < end; p0 += kConsumerWarps * kKeysPerStep) {
            Word kw[kKeysPerStep], vw[kKeysPerStep];  // raw until used: fewer live registers
#pragma unroll
            for (int u = 0; u < kKeysPerStep; ++u) {
                const int p = min(p0 + u, end - 1);
                kw[u] = p == pos ? k_word : __ldcg(reinterpret_cast<const Word*>(k_head + p * kv_dim));
                vw[u] = p == pos ? v_word : __ldcg(reinterpret_cast<const Word*>(v_head + p * kv_dim));
            }
            float sc[kKeysPerStep];
#pragma unroll
            for (int u = 0; u < kKeysPerStep; ++u) {
                float kf[E], d = 0.0f;
                to_floats<T, E>(kw[u], kf);
#pragma unroll
                for (int j = 0; j < E; ++j) d += q[j] * kf[j];
                sc[u] = p0 + u < end ? cuda::warp_sum(d) : -INFINITY;
            }
            cuda::online_softmax(sc, m, l, acc, [&](int u, float (&v)[E]) { to_floats<T, E>(vw[u], v); });
        }
        // The warps' states merged into this item's partial.
        if (lane == 0) sm.m[warp] = m, sm.l[warp] = l;
#pragma unroll
        for (int j = 0; j < E; ++j) sm.acc[warp][lane * E + j] = acc[j];
        consumer_sync();
        float big = -INFINITY;
        for (int w = 0; w < kConsumerWarps; ++w)
            if (sm.l[w] > 0.0f) big = fmaxf(big, sm.m[w]);
        float* head_parts = a.partials + static_cast<int64_t>(h) * a.max_splits * (hd + 2);
        float* part = head_parts + static_cast<int64_t>(split) * (hd + 2);
        for (int e = static_cast<int>(threadIdx.x); e < hd; e += kConsumers) {
            float s = 0.0f;
            for (int w = 0; w < kConsumerWarps; ++w)
                if (sm.l[w] > 0.0f) s += sm.acc[w][e] * __expf(sm.m[w] - big);
            part[e] = s;
        }
        if (threadIdx.x == 0) {
            float s = 0.0f;
            for (int w = 0; w < kConsumerWarps; ++w)
                if (sm.l[w] > 0.0f) s += sm.l[w] * __expf(sm.m[w] - big);
            part[hd] = big;
            part[hd + 1] = s;
        }

        // The last split of head h to finish merges them: out = sum_s w_s acc_s / sum_s w_s l_s, w_s = exp(m_s - max m).
        __threadfence();
        consumer_sync();
        if (threadIdx.x == 0) sm.last = atomicAdd(&a.head_done[h], 1) == ns - 1;
        consumer_sync();
        if (sm.last) {
            __threadfence();
            for (int sp = static_cast<int>(threadIdx.x); sp < ns; sp += kConsumers) {
                const float* p = head_parts + static_cast<int64_t>(sp) * (hd + 2);
                const float ls = __ldcg(p + hd + 1);
                sm.split_w[sp] = ls > 0.0f ? __ldcg(p + hd) : -INFINITY;
                sm.acc[sp % kConsumerWarps][sp / kConsumerWarps] = ls;  // free again: a scratch for the sums
            }
            consumer_sync();
            if (threadIdx.x == 0) {
                float top = -INFINITY, sum = 0.0f;
                for (int sp = 0; sp < ns; ++sp) top = fmaxf(top, sm.split_w[sp]);
                for (int sp = 0; sp < ns; ++sp) {
                    const float w = sm.split_w[sp] == -INFINITY ? 0.0f : __expf(sm.split_w[sp] - top);
                    sum += w * sm.acc[sp % kConsumerWarps][sp / kConsumerWarps];
                    sm.split_w[sp] = w;
                }
                sm.sum = sum;
                a.head_done[h] = 0;  // ready for the next layer and step
            }
            consumer_sync();
            for (int e = static_cast<int>(threadIdx.x); e < hd; e += kConsumers) {
                float v = 0.0f;
                for (int sp = 0; sp < ns; ++sp) v += sm.split_w[sp] * __ldcg(head_parts + static_cast<int64_t>(sp) * (hd + 2) + e);
                a.attn[static_cast<int64_t>(h) * hd + e] = cuda::from_float<T>(v / sm.sum);
            }
        }
        consumer_sync();  // sm is free for the next item
    }
}

template <typename T, int E>
__global__ void __launch_bounds__(kThreads, 1) decode_step_kernel(const __grid_constant__ StepArgs<T> a) {
    extern __shared__ __align__(128) uint8_t dyn[];
    __shared__ __align__(8) uint64_t full[kMaxStages], empty[kMaxStages];
    __shared__ float red[kConsumerWarps];
    __shared__ AttentionSmem att;
    T* xs = reinterpret_cast<T*>(dyn);
    float* acc = reinterpret_cast<float*>(dyn + a.x_bytes);
    const Ring ring{dyn + a.x_bytes + static_cast<size_t>(a.acc_floats) * sizeof(float), full, empty, a.stages};
    if (threadIdx.x == 0) {
        for (int s = 0; s < a.stages; ++s) {
            cuda::mbar_init(&full[s], 1);
            cuda::mbar_init(&empty[s], kConsumerWarps);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    for (int i = static_cast<int>(threadIdx.x); i < a.acc_floats; i += kThreads) acc[i] = 0.0f;
    __syncthreads();
    if (threadIdx.x >= kConsumers) {  // the producer warp: one thread streams, the others are done
        if (threadIdx.x == kConsumers) produce(a, ring);
        return;
    }

    const int pos = a.positions[0], slot = a.slots[0];
    unsigned long long prof[kProfileSlots] = {};
    const long long start = clock64();
    const uint64_t start_ns = cuda::globaltimer();
    long long mark = start;
    auto lap = [&](ProfileSlot slot_) {  // the time since the last lap goes to slot_
        const long long now = clock64();
        prof[slot_] += now - mark;
        mark = now;
    };
    uint32_t chunk = 0;
    unsigned barriers = 0;
    // One matrix: the block's rows of it against xs, their outputs, then (unless last) the grid barrier
    // that makes them visible to every block.
    auto gemv = [&](const Matrix<T>& m, Out o, const float* bias, T* out, bool barrier) {
        consume(ring, chunk, xs, m, acc, a.watchdog_ns, prof[kWeightWait]);
        lap(kConsume);
        finish(m, o, acc, bias, out);
        lap(kFinish);
        if (!barrier) return;
        grid_sync(a.sync, a.watchdog_ns, barriers);
        lap(kGridBarrier);
    };
    // The matrices in the producer's order, each with the work around it.
    for_each_matrix(a, [&](const Matrix<T>& m) {
        const LayerPtrs<T>& L = a.layers[m.role == Role::Head ? 0 : m.layer];
        switch (m.role) {
            case Role::Qkv: {  // qkv = rmsnorm(x) @ Wqkv^T; layer 0 takes x from the embedding into the residual
                const bool first = m.layer == 0;
                stage_norm(first ? a.tok_embd + static_cast<int64_t>(a.ids[0]) * a.n_embd : a.residual, L.attn_norm,
                           a.n_embd, a.eps, xs, first ? a.residual : nullptr, red);
                lap(kStaging);
                gemv(m, Out::Store, L.bqkv, a.qkv, true);
                // attention (RoPE, the cache write), each head merged by the block finishing its last split
                attention_items<T, E>(a, m.layer, pos, slot, att);
                lap(kAttention);
                grid_sync(a.sync, a.watchdog_ns, barriers);
                lap(kGridBarrier);
                break;
            }
            case Role::O:  // x += attn @ Wo^T
                stage_copy(a.attn, a.q_dim(), xs);
                lap(kStaging);
                gemv(m, Out::Add, L.bo, a.residual, true);
                break;
            case Role::GateUp:  // ff = swiglu(rmsnorm(x) @ Wgu^T)
                stage_norm(a.residual, L.ffn_norm, a.n_embd, a.eps, xs, static_cast<T*>(nullptr), red);
                lap(kStaging);
                gemv(m, Out::SwiGlu, L.bgu, a.ff, true);
                break;
            case Role::Down:  // x += ff @ Wdown^T
                stage_copy(a.ff, a.n_ff, xs);
                lap(kStaging);
                gemv(m, Out::Add, L.bdown, a.residual, true);
                break;
            case Role::Head:  // logits = rmsnorm(x) @ Wout^T
                stage_norm(a.residual, a.out_norm, a.n_embd, a.eps, xs, static_cast<T*>(nullptr), red);
                lap(kStaging);
                gemv(m, Out::Store, nullptr, a.logits, false);
                break;
        }
    });
    if (a.profile != nullptr && threadIdx.x == 0) {
        prof[kTotal] = clock64() - start;
        prof[kTotalNs] = cuda::globaltimer() - start_ns;
        prof[kSteps] = blockIdx.x == 0 ? 1 : 0;
        for (int i = 0; i < kProfileSlots; ++i)
            if (i != kProducerStall) atomicAdd(&a.profile[i], prof[i]);
    }
}

// Whether v's rows are contiguous, 16-byte aligned and made of whole 16-byte vectors of dtype `t`.
bool streamable(const TensorView& v, DType t) {
    return v.dtype == t && v.row_stride == v.cols && v.cols % 8 == 0 && reinterpret_cast<uintptr_t>(v.data) % 16 == 0;
}

bool f32_vector(const TensorView& v, int64_t n, bool optional) {
    if (v.empty()) return optional;
    return v.dtype == DType::F32 && v.n_elements() == n;
}

}  // namespace

bool CudaBackend::decode_step(const LlamaWeights& w, float eps, const StepTokens& tok, const TensorView& rope_cos_sin,
                              const AttentionShape& s, KvCache& cache, const DecodeStepBuffers& buf) {
    if (!persistent_decode_ || (act_ != DType::F16 && act_ != DType::BF16)) return false;
    if (tok.n_tokens != 1 || tok.n_tiles != 0 || w.layers.empty() || w.layers.size() > static_cast<size_t>(kMaxLayers))
        return false;
    if ((s.head_dim != 64 && s.head_dim != 128) || s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0) return false;
    const int64_t E = w.tok_embd.cols, q_dim = s.n_head * s.head_dim, kv_dim = s.n_head_kv * s.head_dim;
    const int64_t n_ff = w.layers[0].w_down.cols, n_vocab = w.output.rows;
    for (const LayerWeights& L : w.layers) {
        const bool ok = streamable(L.wqkv, act_) && L.wqkv.rows == q_dim + 2 * kv_dim && L.wqkv.cols == E &&
                        streamable(L.wo, act_) && L.wo.rows == E && L.wo.cols == q_dim &&
                        streamable(L.w_gate_up, act_) && L.w_gate_up.rows == 2 * n_ff && L.w_gate_up.cols == E &&
                        streamable(L.w_down, act_) && L.w_down.rows == E && L.w_down.cols == n_ff &&
                        f32_vector(L.attn_norm, E, false) && f32_vector(L.ffn_norm, E, false) &&
                        f32_vector(L.bqkv, q_dim + 2 * kv_dim, true) && f32_vector(L.bo, E, true) &&
                        f32_vector(L.b_gate_up, 2 * n_ff, true) && f32_vector(L.b_down, E, true);
        if (!ok) return false;
    }
    if (!streamable(w.tok_embd, act_) || !streamable(w.output, act_) || w.output.cols != E ||
        !f32_vector(w.output_norm, E, false) || rope_cos_sin.dtype != DType::F32 || rope_cos_sin.cols != s.head_dim ||
        rope_cos_sin.rows < cache.n_ctx || cache.dtype != act_ || cache.kv_dim != kv_dim ||
        cache.n_layer < static_cast<int64_t>(w.layers.size()) || reinterpret_cast<uintptr_t>(cache.k) % 16 != 0 ||
        reinterpret_cast<uintptr_t>(cache.v) % 16 != 0)
        return false;
    for (const TensorView* v : {&buf.residual, &buf.qkv, &buf.attn, &buf.ff, &buf.logits})
        if (v->dtype != act_ || reinterpret_cast<uintptr_t>(v->data) % 16 != 0) return false;
    if (buf.residual.cols != E || buf.qkv.cols != q_dim + 2 * kv_dim || buf.attn.cols != q_dim || buf.ff.cols != n_ff ||
        buf.logits.cols != n_vocab)
        return false;

    int sms = 0, cooperative = 0, optin = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_));
    CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device_));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_));
    if (cooperative == 0) return false;
    const int grid = std::min(sms, kMaxItems);
    const size_t elem = dtype_size(act_);
    // Row sums: a block's rows of each matrix times the warps that share a row (row_parts).
    const auto sums = [&](int64_t m, int64_t k) {
        return ((m + grid - 1) / grid + 1) * row_parts(static_cast<int>(k), static_cast<int>(elem));
    };
    const int64_t acc_floats =
        std::max({sums(q_dim + 2 * kv_dim, E), sums(E, q_dim), 2 * sums(n_ff, E), sums(E, n_ff), sums(n_vocab, E)});
    const auto round128 = [](size_t b) { return (b + 127) / 128 * 128; };
    const size_t x_bytes = round128(static_cast<size_t>(std::max({E, q_dim, n_ff})) * elem);
    const size_t acc_bytes = round128(static_cast<size_t>(acc_floats) * sizeof(float));
    const int max_splits = std::max<int>(1, grid / static_cast<int>(s.n_head));

    bool launched = false;
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        if constexpr (!std::is_same_v<T, float>) {
            auto k = s.head_dim == 64 ? decode_step_kernel<T, 2> : decode_step_kernel<T, 4>;
            cudaFuncAttributes attr{};
            CUDA_CHECK(cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(k)));
            const int64_t room = static_cast<int64_t>(optin) - static_cast<int64_t>(attr.sharedSizeBytes + x_bytes + acc_bytes);
            const int stages = static_cast<int>(std::min<int64_t>(kMaxStages, room / kStageBytes));
            if (stages < 2) return;
            const size_t smem = x_bytes + acc_bytes + static_cast<size_t>(stages) * kStageBytes;
            CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
            int resident = 0;
            CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, k, kThreads, smem));
            if (resident < 1) return;

            const size_t partials = static_cast<size_t>(s.n_head * max_splits * (s.head_dim + 2));
            if (partials > step_partials_n_) {
                if (step_partials_) retired_.push_back(step_partials_);  // a captured graph may still point here
                CUDA_CHECK(cudaMalloc(&step_partials_, partials * sizeof(float)));
                step_partials_n_ = partials;
            }
            if (step_sync_ == nullptr) CUDA_CHECK(cudaMalloc(&step_sync_, sizeof(GridSync)));  // zeroed per launch below
            if (static_cast<size_t>(s.n_head) > step_heads_n_) {
                if (step_heads_) retired_.push_back(step_heads_);
                CUDA_CHECK(cudaMalloc(&step_heads_, static_cast<size_t>(s.n_head) * sizeof(int)));
                CUDA_CHECK(cudaMemsetAsync(step_heads_, 0, static_cast<size_t>(s.n_head) * sizeof(int), stream_));
                step_heads_n_ = static_cast<size_t>(s.n_head);
            }

            static const bool profile = env_switch("LAMINA_STEP_PROFILE", false);
            if (profile && step_profile_ == nullptr) {
                CUDA_CHECK(cudaMalloc(&step_profile_, kProfileSlots * sizeof(unsigned long long)));
                CUDA_CHECK(cudaMemsetAsync(step_profile_, 0, kProfileSlots * sizeof(unsigned long long), stream_));
                step_profile_grid_ = grid;
            }

            StepArgs<T> a{};
            for (size_t l = 0; l < w.layers.size(); ++l) {
                const LayerWeights& L = w.layers[l];
                auto f32 = [](const TensorView& v) { return v.empty() ? nullptr : static_cast<const float*>(v.data); };
                a.layers[l] = {static_cast<const T*>(L.wqkv.data), static_cast<const T*>(L.wo.data),
                               static_cast<const T*>(L.w_gate_up.data), static_cast<const T*>(L.w_down.data),
                               f32(L.attn_norm), f32(L.ffn_norm), f32(L.bqkv), f32(L.bo), f32(L.b_gate_up), f32(L.b_down)};
            }
            a.n_layer = static_cast<int>(w.layers.size());
            a.n_embd = static_cast<int>(E), a.n_head = static_cast<int>(s.n_head), a.n_head_kv = static_cast<int>(s.n_head_kv);
            a.head_dim = static_cast<int>(s.head_dim), a.n_ff = static_cast<int>(n_ff), a.n_vocab = static_cast<int>(n_vocab);
            a.eps = eps, a.scale = s.scale;
            a.tok_embd = static_cast<const T*>(w.tok_embd.data);
            a.out_norm = static_cast<const float*>(w.output_norm.data);
            a.w_out = static_cast<const T*>(w.output.data);
            a.ids = tok.ids, a.positions = tok.positions, a.slots = tok.slots;
            a.cos_sin = static_cast<const float*>(rope_cos_sin.data);
            a.k_cache = static_cast<T*>(cache.k), a.v_cache = static_cast<T*>(cache.v);
            a.cache = cuda::CacheGeometry::of(cache);
            a.residual = static_cast<T*>(buf.residual.data), a.qkv = static_cast<T*>(buf.qkv.data);
            a.attn = static_cast<T*>(buf.attn.data), a.head_done = step_heads_;
            a.ff = static_cast<T*>(buf.ff.data), a.logits = static_cast<T*>(buf.logits.data);
            a.partials = step_partials_, a.max_splits = max_splits;
            a.sync = static_cast<GridSync*>(step_sync_);
            a.profile = static_cast<unsigned long long*>(step_profile_);

            a.watchdog_ns = cuda::watchdog_ns();
            // the barrier's count starts from zero in every step (a graph node when captured)
            CUDA_CHECK(cudaMemsetAsync(&static_cast<GridSync*>(step_sync_)->arrivals, 0, sizeof(unsigned), stream_));
            a.stages = stages, a.x_bytes = static_cast<int>(x_bytes), a.acc_floats = static_cast<int>(acc_bytes / sizeof(float));

            cudaLaunchConfig_t cfg{};
            cfg.gridDim = dim3(static_cast<unsigned>(grid));
            cfg.blockDim = dim3(kThreads);
            cfg.dynamicSmemBytes = smem;
            cfg.stream = stream_;
            cudaLaunchAttribute attrs[1]{};
            attrs[0].id = cudaLaunchAttributeCooperative;  // every block resident: the grid barriers need it
            attrs[0].val.cooperative = 1;
            cfg.attrs = attrs;
            cfg.numAttrs = 1;
            const cudaError_t e = cudaLaunchKernelEx(&cfg, k, a);
            if (e == cudaErrorCooperativeLaunchTooLarge) {  // fewer SMs than the device has (MPS limits): separate ops
                cudaGetLastError();
                return;
            }
            CUDA_CHECK(e);
            launched = true;
        }
    });
    return launched;
}

void CudaBackend::print_step_profile() {
    if (step_profile_ == nullptr) return;
    unsigned long long p[kProfileSlots];
    CUDA_CHECK(cudaMemcpy(p, step_profile_, sizeof(p), cudaMemcpyDeviceToHost));
    if (p[kSteps] == 0 || p[kTotal] == 0) return;
    const double blocks = static_cast<double>(p[kSteps]) * step_profile_grid_;
    const double ns_per_cycle = static_cast<double>(p[kTotalNs]) / static_cast<double>(p[kTotal]);
    std::fprintf(stderr, "decode_step profile: %llu steps, per step and block (µs; %.2f GHz):\n", p[kSteps], 1.0 / ns_per_cycle);
    for (int i = 0; i <= kProducerStall; ++i)
        std::fprintf(stderr, "  %-34s %8.1f\n", kProfileNames[i], p[i] * ns_per_cycle / blocks / 1000.0);
}

}  // namespace lamina
