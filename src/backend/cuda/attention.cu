// Causal GQA attention over the KV cache.
//
//   out[t, h] = sum_p softmax_p(q[t, h] . k[slot t, p, h / group] * scale) v[slot t, p, h / group],
//   p in [0, pos[t]]; softmax statistics (max, sum) in f32.
//
// Prefill steps (f16/bf16, head_dim 64 or 128) go to the tensor-core kernel in flash_prefill.cu.
// Everything else here:
// - split_kernel (any head_dim <= 256, any token mix; used for decode): flash-decoding. Each token's key
//   range is cut into splits so one sequence fills the GPU; a warp streams keys, keeping a running
//   max/sum/accumulator; the last split block of each (token, head) merges the splits' partials (one
//   launch, no separate combine kernel). Bytes: the K and V cache of each token's sequence, read once
//   per query head (the group shares through L2).
//   Partials: per (token, head, split), the accumulators padded to 32 * E floats (a lane's E at lane * E,
//   so the merge reads them as one vector per lane), and after all of them the (max, sum) pairs.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

constexpr int kSplitWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int64_t kTargetBlocks = 1024;  // enough split blocks to fill 132 SMs several times over
constexpr int kMinSplitKeys = 32;
constexpr int kKeysPerStep = 8;  // keys a warp has in flight at once (a 32-key split: one step per warp)

// A lane's E consecutive elements of a row as raw bytes: loaded now, converted when used (fewer live
// registers than f32 while the loads are in flight).
template <typename T, int E>
struct LaneRaw {
    using Word = cuda::Packed<T, E>;
    Word w;

    // One vector load when `vec`, else element by element (elements past head_dim read as 0). kL2: through L2
    // only (ld.global.cg), leaving no line in this SM's L1.
    template <bool kL2 = false>
    __device__ __forceinline__ void load(const T* row, int e0, int head_dim, bool vec) {
        if (vec && e0 < head_dim) {
            const Word* p = reinterpret_cast<const Word*>(row + e0);
            if constexpr (!kL2) w = *p;
            else if constexpr (std::is_same_v<Word, cuda::Bytes32>) w = {__ldcg(&p->a), __ldcg(&p->b)};
            else w = __ldcg(p);
        } else {
            T* v = reinterpret_cast<T*>(&w);
#pragma unroll
            for (int j = 0; j < E; ++j)
                v[j] = e0 + j >= head_dim ? cuda::from_float<T>(0.0f) : kL2 ? __ldcg(row + e0 + j) : row[e0 + j];
        }
    }
    __device__ __forceinline__ float operator[](int j) const { return cuda::to_float(reinterpret_cast<const T*>(&w)[j]); }
};

// A split's softmax state (max m, sum l), merged with another's; l == 0 marks an empty state.
struct SoftmaxStat {
    float m = -INFINITY, l = 0.0f;
    __device__ __forceinline__ void merge(float m2, float l2) {
        if (l2 <= 0.0f) return;
        if (l <= 0.0f) {
            m = m2;
            l = l2;
            return;
        }
        const float top = fmaxf(m, m2);
        l = l * __expf(m - top) + l2 * __expf(m2 - top);
        m = top;
    }
    __device__ __forceinline__ void warp_merge() {
#pragma unroll
        for (int o = 16; o > 0; o /= 2) merge(__shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, l, o));
    }
};

// One (split, head, token): the keys [split * chunk, +chunk) of the token's sequence up to its position.
// Each warp streams kKeysPerStep keys at a time (all their K and V loads issued before the first is
// used), keeping a running max / sum / accumulator; the warps merge in shared memory and the block
// writes its partial (head_dim accumulators, max, sum). The last block of a (token, head) to finish
// (a counter per (token, head), reset by that block) merges all splits and writes the output row.
// Early (a step of one token): the warp's first keys are loaded before cuda::pdl_wait(), while the kernel
// before runs. Of the keys read, only the token's own position is written by that kernel (RoPE with the cache
// write, or the fused qkv GEMV); every other key was written by a kernel that has finished (under PDL only the
// kernel just before overlaps this one), and positions and slots are copied from the host before the step.
// The token's own key and value are loaded again after the wait. The early loads go through L2 only
// (ld.global.cg): a line they left in this SM's L1 might answer a load after the wait with what the kernel before
// has since overwritten (with a small kv_dim, a line holds parts of two positions).
// At most 64 registers where a lane holds at most 8 bytes of a row (f16/bf16 up to head_dim 128): 8 blocks an
// SM, so a 32-head step of 20 splits is one wave. Unbounded, the Early kernel took 105 registers (the loads held
// across the wait) and the other 86. Early is a template parameter so that the kernel of several-token steps
// carries none of its code: with one kernel for both, batch 8 ran 0.3% slower (docs/performance.md).
template <typename T, int E, bool Early>
__global__ void __launch_bounds__(kSplitWarps * 32, E * sizeof(T) <= 8 ? 8 : 1)
    split_kernel(const T* qkv, int64_t qkv_stride, const int32_t* positions, const int32_t* slots, const T* k_cache,
                 const T* v_cache, KvCache g, int64_t layer, int n_head, int group, int head_dim,
                 float scale, int chunk, bool vec, float* partials, int* counters, T* out, int64_t out_stride) {
    LAMINA_TRACE_KERNEL(cuda::kTraceAttention);
    // Let the next kernel (the o_proj GEMV) launch now rather than after the wait below, so that its blocks
    // start loading weights while this kernel waits and computes; its own wait still holds it until this
    // kernel has finished. All of this grid's blocks are resident before the next one launches, so its
    // blocks cannot crowd them out (docs/performance.md: +0.6% at 7B batch 1).
    cudaTriggerProgrammaticLaunchCompletion();
    const int t = blockIdx.z, h = blockIdx.y, split = blockIdx.x, n_splits = gridDim.x;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int e0 = lane * E;
    const int n_pos = positions[t] + 1;
    const int begin = split * chunk, end = min(begin + chunk, n_pos);
    const int64_t base = g.offset(slots[t], layer, 0) + static_cast<int64_t>(h / group) * head_dim;
    LaneRaw<T, E> kv[kKeysPerStep], vv[kKeysPerStep];
    // Key p0 + u of the warp's step, or the range's last key past its end (masked below).
    const auto key = [&](int p0, int u) { return base + static_cast<int64_t>(min(p0 + u, end - 1)) * g.kv_dim; };
    const auto load_keys = [&]<bool kL2>(int p0) {
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u) {
            kv[u].template load<kL2>(k_cache + key(p0, u), e0, head_dim, vec);
            vv[u].template load<kL2>(v_cache + key(p0, u), e0, head_dim, vec);
        }
    };
    const int first = begin + warp * kKeysPerStep;
    if (Early && first < end) load_keys.template operator()<true>(first);
    cuda::pdl_wait();
    constexpr int kAccStride = 32 * E;  // a split's accumulators, padded: lane * E is its E floats
    const int64_t head = static_cast<int64_t>(t) * n_head + h;
    float* head_acc = partials + head * n_splits * kAccStride;
    float2* head_stats = reinterpret_cast<float2*>(partials + static_cast<int64_t>(gridDim.z) * n_head * n_splits * kAccStride) +
                         head * n_splits;

    float m = -INFINITY, l = 0.0f, acc[E] = {};
    if (begin < end) {
        LaneRaw<T, E> q;
        q.load(qkv + static_cast<int64_t>(t) * qkv_stride + static_cast<int64_t>(h) * head_dim, e0, head_dim, vec);
        float qv[E];
#pragma unroll
        for (int j = 0; j < E; ++j) qv[j] = q[j] * scale;
        for (int p0 = first; p0 < end; p0 += kSplitWarps * kKeysPerStep) {
            if (!Early || p0 != first) {
                load_keys.template operator()<false>(p0);
            } else if (end == n_pos) {  // the token's own key and value, written by the kernel just before
#pragma unroll
                for (int u = 0; u < kKeysPerStep; ++u)
                    if (min(p0 + u, end - 1) == n_pos - 1) {
                        kv[u].load(k_cache + key(p0, u), e0, head_dim, vec);
                        vv[u].load(v_cache + key(p0, u), e0, head_dim, vec);
                    }
            }
            float sc[kKeysPerStep];
#pragma unroll
            for (int u = 0; u < kKeysPerStep; ++u) {
                float d = 0.0f;
#pragma unroll
                for (int j = 0; j < E; ++j) d += qv[j] * kv[u][j];
                sc[u] = p0 + u < end ? cuda::warp_sum(d) : -INFINITY;
            }
            cuda::online_softmax(sc, m, l, acc, [&](int u, float (&v)[E]) {
#pragma unroll
                for (int j = 0; j < E; ++j) v[j] = vv[u][j];
            });
        }
    }
    // Merge the warps' running states into this split's partial.
    __shared__ float sm_m[kSplitWarps], sm_l[kSplitWarps], sm_acc[kSplitWarps][kMaxHeadDim];
    __shared__ bool last;
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < E; ++j)
        if (e0 + j < head_dim) sm_acc[warp][e0 + j] = acc[j];
    __syncthreads();
    float big = -INFINITY;
    for (int w = 0; w < kSplitWarps; ++w)
        if (sm_l[w] > 0.0f) big = fmaxf(big, sm_m[w]);
    float* part = head_acc + static_cast<int64_t>(split) * kAccStride;
    for (int e = threadIdx.x; e < kAccStride; e += blockDim.x) {
        float a = 0.0f;
        for (int w = 0; e < head_dim && w < kSplitWarps; ++w)
            if (sm_l[w] > 0.0f) a += sm_acc[w][e] * __expf(sm_m[w] - big);
        part[e] = a;
    }
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int w = 0; w < kSplitWarps; ++w)
            if (sm_l[w] > 0.0f) sum += sm_l[w] * __expf(sm_m[w] - big);
        head_stats[split] = make_float2(big, sum);
    }

    // The last split block of this (token, head) to arrive merges them all. The barrier, then one fence by the
    // thread that counts the block, release the partial (the fence is cumulative over what the barrier ordered
    // before it, as in a cooperative-groups grid sync).
    __syncthreads();
    int* counter = counters + head;
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(counter, 1) == n_splits - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    // Every warp merges all the splits' (max, sum) itself (lane-strided, then across lanes: the same result in
    // every lane and warp, no barrier). Then each thread sums its own output elements over the splits, 32 splits
    // at a time: lane s holds split s's weight (shuffled to the others) and every load of the 32 is issued
    // before the first is added.
    const float2 own = lane < n_splits ? __ldcg(head_stats + lane) : make_float2(-INFINITY, 0.0f);
    SoftmaxStat total;
    total.merge(own.x, own.y);
    for (int sp = lane + 32; sp < n_splits; sp += 32) {
        const float2 st = __ldcg(head_stats + sp);
        total.merge(st.x, st.y);
    }
    total.warp_merge();
    for (int e_base = warp * 32; e_base < head_dim; e_base += blockDim.x) {  // uniform in a warp: shuffles below
        const int e = e_base + lane;
        float a = 0.0f;
        for (int sp0 = 0; sp0 < n_splits; sp0 += 32) {
            const float2 st = sp0 == 0                ? own
                              : sp0 + lane < n_splits ? __ldcg(head_stats + sp0 + lane)
                                                      : make_float2(-INFINITY, 0.0f);
            const float wgt = __expf(st.y > 0.0f ? st.x - total.m : -INFINITY);
            const int n = min(32, n_splits - sp0);
            float v[32];
#pragma unroll
            for (int i = 0; i < 32; ++i)
                v[i] = i < n && e < head_dim ? __ldcg(head_acc + static_cast<int64_t>(sp0 + i) * kAccStride + e) : 0.0f;
#pragma unroll
            for (int i = 0; i < 32; ++i) a += __shfl_sync(0xffffffffu, wgt, i) * v[i];
        }
        if (e < head_dim)
            out[static_cast<int64_t>(t) * out_stride + static_cast<int64_t>(h) * head_dim + e] =
                cuda::from_float<T>(a / total.l);
    }
    if (threadIdx.x == 0) *counter = 0;  // ready for the next step (and the next replay of a graph)
}

}  // namespace

int64_t decode_attention_splits(int64_t n_tokens, int64_t n_head, int64_t n_ctx) {
    // Splits depend only on (tokens, heads, cache length), so a captured decode graph stays valid.
    const int64_t max_splits = std::max<int64_t>(1, n_ctx / kMinSplitKeys);
    return std::clamp<int64_t>(kTargetBlocks / (n_tokens * n_head), 1, max_splits);
}

size_t decode_attention_block_smem() {
    cudaFuncAttributes attr{};
    CUDA_CHECK(cudaFuncGetAttributes(&attr, split_kernel<__half, 4, true>));  // the same arrays in every instance
    return attr.sharedSizeBytes;
}

void CudaBackend::attention(const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer,
                            const KvCache& cache, TensorView out) {
    LAMINA_CHECK(qkv.dtype == act_ && out.dtype == act_ && cache.dtype == act_);
    LAMINA_CHECK(out.cols == s.n_head * s.head_dim && out.rows == tok.n_tokens);
    if (s.head_dim > kMaxHeadDim) throw Error("cuda attention: head_dim " + std::to_string(s.head_dim) + " > 256");
    if (flash_prefill(act_, qkv, tok, s, layer, cache, out, stream_)) return;
    const int64_t n_splits = decode_attention_splits(tok.n_tokens, s.n_head, cache.n_ctx);
    const int chunk = cuda::ceil_div(cache.n_ctx, n_splits);
    // Accumulators padded to 32 floats per lane-element (E = 1, 2, 4 or 8 below), then (max, sum) pairs.
    const int64_t acc_stride = 32 * (s.head_dim <= 32 ? 1 : s.head_dim <= 64 ? 2 : s.head_dim <= 128 ? 4 : 8);
    const size_t need = static_cast<size_t>(tok.n_tokens * s.n_head * n_splits * (acc_stride + 2));
    if (need > attn_partials_n_) {
        if (attn_partials_) retired_.push_back(attn_partials_);  // a captured graph may still point here
        CUDA_CHECK(cudaMalloc(&attn_partials_, need * sizeof(float)));
        attn_partials_n_ = need;
    }
    const auto n_counters = static_cast<size_t>(tok.n_tokens * s.n_head);
    if (n_counters > attn_counters_n_) {
        if (attn_counters_) retired_.push_back(attn_counters_);
        CUDA_CHECK(cudaMalloc(&attn_counters_, n_counters * sizeof(int)));
        // Zeroed once; each use leaves them zero. Inside a capture, the memset becomes a graph node.
        CUDA_CHECK(cudaMemsetAsync(attn_counters_, 0, n_counters * sizeof(int), stream_));
        attn_counters_n_ = n_counters;
    }
    const dim3 grid(static_cast<unsigned>(n_splits), static_cast<unsigned>(s.n_head), static_cast<unsigned>(tok.n_tokens));
    // A step of one token loads its earlier keys before the PDL wait (split_kernel); several tokens may write
    // keys that another one reads.
    const bool early = tok.n_tokens == 1;
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        auto go = [&]<int E>() {
            const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % (E * sizeof(T)) == 0; };
            const bool vec = s.head_dim % E == 0 && qkv.row_stride % E == 0 && cache.kv_dim % E == 0 &&
                             aligned(qkv.data) && aligned(cache.k) && aligned(cache.v);
            cuda::launch_pdl(early ? split_kernel<T, E, true> : split_kernel<T, E, false>, grid, kSplitWarps * 32, 0,
                             stream_, static_cast<const T*>(qkv.data), qkv.row_stride, tok.positions, tok.slots,
                             static_cast<const T*>(cache.k), static_cast<const T*>(cache.v),
                             cache, layer, static_cast<int>(s.n_head),
                             static_cast<int>(s.n_head / s.n_head_kv), static_cast<int>(s.head_dim), s.scale, chunk,
                             vec, attn_partials_, attn_counters_, static_cast<T*>(out.data), out.row_stride);
        };
        // Elements per lane: the head split over a warp's 32 lanes.
        if (s.head_dim <= 32) go.template operator()<1>();
        else if (s.head_dim <= 64) go.template operator()<2>();
        else if (s.head_dim <= 128) go.template operator()<4>();
        else go.template operator()<8>();
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
