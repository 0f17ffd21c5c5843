// Token sampling on the GPU (Backend::sample_rows): only the chosen ids leave the device.
//
//   Math, exactly the CPU reference's (backend/cpu/cpu_sampling.cpp), per row of n logits l:
//     l' = l with the repetition penalty on each distinct history id (l < 0 ? l * rp : l / rp)
//     greedy (temperature 0 or top_k 1): the argmax of l' (lowest id on ties)
//     else s = l' / temperature (f32, IEEE division: bit-identical to the CPU), candidates ordered by
//     (s descending, id ascending); keep the first k = min(top_k or n, n); p_i = f32(exp(s_i - s_max) /
//     sum_kept exp) with an f64 sum; with 0 < top_p < 1 keep the smallest prefix whose mass reaches top_p;
//     the token is the first kept candidate whose cumulative mass reaches u * mass (mass = the kept mass
//     with a top-p cut, else 1), the last kept one if rounding leaves the walk short.
//
//   Algorithm, no sort: the k-th candidate, the end of the nucleus and the drawn token are each "the first
//   element in candidate order at which a cumulative weight reaches a target" (weight 1 for top-k, p_i
//   for the others), found by radix descent on a 64-bit key that orders elements as the CPU's sort does:
//       key = ordered_bits(s) << 32 | (n - 1 - id)     (larger key = earlier; -0 counts as +0)
//   Each pass takes the next 10-11 bits of the key: a histogram (count, weight) in shared memory of the
//   elements still matching the decided prefix, a block scan over the bins from the top, the first
//   non-empty bin where the running weight reaches the target; the descent stops once that bin holds a
//   single element (one more pass finds it). Probabilities are summed as integers in units of 2^-60:
//   exact and independent of the order of the atomics, so a row's result is deterministic and the
//   cumulative boundaries differ from the CPU's f64 sums only through expf (a few f32 ulp).
//
//   Shapes and dtypes: logits [rows, n] with a row stride, f32, f16 or bf16; n < 2^31. One block of 1024
//   threads per row, every pass a block-strided loop over the row. The f32 row s (penalty and temperature
//   applied) lives in a [rows, n] f32 scratch; per-row settings, uniforms (f64) and histories are one
//   upload; ids [rows] int32 out.
//   Bytes per row: n * (sizeof(T) + 4) to build s, then 4n per pass: ~4 passes for the top-k cut, 1 for
//   the softmax sum, ~4 each for the nucleus and the draw, so ~50n bytes, mostly L2 hits (s is 1 MiB at
//   n = 256k). Latency, not bandwidth, bounds it: one SM per row.
#include <climits>
#include <cstring>

#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

constexpr int kThreads = 1024;
constexpr int kMaxDigitBits = 11;  // 2048 bins: spreads the exponent byte's few hot values over mantissa bits
constexpr int kMaxBins = 1 << kMaxDigitBits;
constexpr double kMassUnit = 0x1p60;  // probabilities as integers: p * 2^60 is exact for p >= 2^-36

// One row's settings as the kernel reads them (the history is an offset into the uploaded ids).
struct SampleRowArgs {
    float temperature;
    int32_t top_k;
    float top_p;
    float repetition_penalty;
    int64_t history_offset;
    int64_t n_history;
    double u;
};

struct SelectShared {
    uint32_t count[kMaxBins];
    unsigned long long weight[kMaxBins];
    unsigned long long scan[32];
    int best;  // bin position (0 = highest digit) chosen by the current pass
    unsigned long long sel_above, sel_weight;
    uint32_t sel_count;
    unsigned long long found_key;
};

// Monotone map of f32 to u32 (a < b as floats <=> bits(a) < bits(b)); -0 and +0 map alike, as they
// compare equal on the CPU.
__device__ __forceinline__ uint32_t ordered_bits(float v) {
    if (v == 0.0f) v = 0.0f;
    const uint32_t b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ uint64_t sort_key(float s, int i, int n) {
    return (static_cast<uint64_t>(ordered_bits(s)) << 32) | static_cast<uint32_t>(n - 1 - i);
}
__device__ __forceinline__ int id_of(uint64_t key, int n) { return n - 1 - static_cast<int>(key & 0xffffffffu); }

// Calls f(s[i], i) for this thread's elements of the row (block-strided), with kInFlight loads issued
// before any is used: one block per SM leaves too few warps to hide L2 latency one load at a time.
constexpr int kInFlight = 4;
template <typename F>
__device__ __forceinline__ void for_each_element(const float* s, int n, F&& f) {
    int i = threadIdx.x;
    for (; i + (kInFlight - 1) * kThreads < n; i += kInFlight * kThreads) {
        float v[kInFlight];
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) v[u] = s[i + u * kThreads];
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) f(v[u], i + u * kThreads);
    }
    for (; i < n; i += kThreads) f(s[i], i);
}

// Exclusive prefix sum over the block (blockDim.x == kThreads); `total` gets the block's sum.
__device__ unsigned long long block_exclusive_scan(unsigned long long x, unsigned long long* warp_sums,
                                                   unsigned long long& total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    unsigned long long incl = x;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const unsigned long long y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        unsigned long long w = warp_sums[lane];  // kThreads / 32 == 32 warps
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const unsigned long long y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        warp_sums[lane] = w;
    }
    __syncthreads();
    total = warp_sums[31];
    const unsigned long long before = warp == 0 ? 0ull : warp_sums[warp - 1];
    return before + incl - x;
}

__device__ float block_max(float x, float* red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    x = cuda::warp_max(x);
    __syncthreads();
    if (lane == 0) red[warp] = x;
    __syncthreads();
    return cuda::warp_max(red[lane]);
}

__device__ unsigned long long block_min_u64(unsigned long long x, unsigned long long* red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = min(x, __shfl_xor_sync(0xffffffffu, x, o));
    __syncthreads();
    if (lane == 0) red[warp] = x;
    __syncthreads();
    x = red[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = min(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ double block_sum_f64(double x, double* red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    __syncthreads();
    if (lane == 0) red[warp] = x;
    __syncthreads();
    x = red[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Weight 1 per element (the bins' counts serve as weights): selecting with target k finds the k-th candidate.
struct CountWeight {
    static constexpr bool kCounts = true;
};

// The candidate's probability in units of 2^-60, computed as the CPU does: f32 exp, f64 division, f32.
struct ProbWeight {
    static constexpr bool kCounts = false;
    float s_max;
    double sum;
    __device__ unsigned long long operator()(float s) const {
        const float p = static_cast<float>(static_cast<double>(expf(s - s_max)) / sum);
        return p > 0.0f ? static_cast<unsigned long long>(static_cast<double>(fminf(p, 1.0f)) * kMassUnit) : 0ull;
    }
};

struct SelectResult {
    uint64_t key;    // the selected element
    uint64_t cum;    // weight of the participants from the first one through the selected one
    uint64_t total;  // weight of all participants
    bool found;      // false when the total weight stays below the target
};

// Among the elements with key >= min_key, in descending key order, the first one at which the
// cumulative weight reaches `target` (with target 0: the first one). Called by the whole block.
template <typename Weight>
__device__ SelectResult select_first_reaching(const float* s, int n, int id_bits, uint64_t min_key, uint64_t target,
                                              const Weight& weight, SelectShared& sh) {
    uint64_t prefix = 0, mask = 0;
    unsigned long long above = 0, total = 0;  // weight of the participants before the current bin
    bool first_pass = true;
    int hi = 64;  // this pass decides key bits [lo, hi)
    while (true) {
        int lo;
        if (hi > 32) {
            lo = hi == 64 ? 53 : hi == 53 ? 42 : 32;  // the value half: 11 + 11 + 10 bits
        } else {
            if (hi == 32) hi = id_bits;  // the id half: bits above bit_width(n - 1) are 0 for every element
            lo = hi > kMaxDigitBits ? hi - kMaxDigitBits : 0;
        }
        const int n_bins = 1 << (hi - lo);
        for (int b = threadIdx.x; b < n_bins; b += kThreads) {
            sh.count[b] = 0;
            if constexpr (!Weight::kCounts) sh.weight[b] = 0;
        }
        if (threadIdx.x == 0) sh.best = INT_MAX;
        __syncthreads();
        for_each_element(s, n, [&](float v, int i) {
            const uint64_t key = sort_key(v, i, n);
            if (key < min_key || (key & mask) != prefix) return;
            const uint32_t d = static_cast<uint32_t>(key >> lo) & static_cast<uint32_t>(n_bins - 1);
            atomicAdd(&sh.count[d], 1u);
            if constexpr (!Weight::kCounts) {
                const unsigned long long w = weight(v);
                if (w != 0) atomicAdd(&sh.weight[d], w);
            }
        });
        __syncthreads();

        // Bins from the highest digit down: position j holds digit n_bins - 1 - j. Thread t scans
        // positions [t * per, (t + 1) * per).
        auto bin_weight = [&](int d) -> unsigned long long {
            if constexpr (Weight::kCounts) return sh.count[d];
            else return sh.weight[d];
        };
        const int per = (n_bins + kThreads - 1) / kThreads;
        const int j0 = threadIdx.x * per;
        unsigned long long local = 0;
        for (int j = j0; j < j0 + per && j < n_bins; ++j) local += bin_weight(n_bins - 1 - j);
        unsigned long long pass_total;
        const unsigned long long before = block_exclusive_scan(local, sh.scan, pass_total);
        if (first_pass) total = pass_total;
        int candidate = INT_MAX;
        unsigned long long run = before;
        for (int j = j0; j < j0 + per && j < n_bins; ++j) {
            const int d = n_bins - 1 - j;
            run += bin_weight(d);
            if (sh.count[d] > 0 && above + run >= target) {
                candidate = j;
                break;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) candidate = min(candidate, __shfl_xor_sync(0xffffffffu, candidate, o));
        if (threadIdx.x % 32 == 0 && candidate != INT_MAX) atomicMin(&sh.best, candidate);
        __syncthreads();
        const int best = sh.best;
        if (best == INT_MAX) {
            __syncthreads();  // everyone has read sh.best before a next selection resets it
            return {0, 0, total, false};
        }
        if (best >= j0 && best < j0 + per) {
            unsigned long long excl = before;
            for (int j = j0; j < best; ++j) excl += bin_weight(n_bins - 1 - j);
            sh.sel_above = excl;
            sh.sel_weight = bin_weight(n_bins - 1 - best);
            sh.sel_count = sh.count[n_bins - 1 - best];
        }
        __syncthreads();
        const uint64_t digit = static_cast<uint64_t>(n_bins - 1 - best);
        above += sh.sel_above;
        prefix |= digit << lo;
        mask |= static_cast<uint64_t>(n_bins - 1) << lo;
        first_pass = false;
        if (sh.sel_count == 1 || lo == 0) {
            const unsigned long long cum = above + sh.sel_weight;
            if (lo > 0) {  // one element left in the bin: find its whole key
                for_each_element(s, n, [&](float v, int i) {
                    const uint64_t key = sort_key(v, i, n);
                    if (key >= min_key && (key & mask) == prefix) sh.found_key = key;
                });
                __syncthreads();
                prefix = sh.found_key;
            }
            __syncthreads();  // shared results read before a next selection reuses them
            return {prefix, cum, total, true};
        }
        hi = lo;
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) sample_rows_kernel(const T* logits, int64_t stride, int n,
                                                               const SampleRowArgs* rows, const int32_t* history,
                                                               float* scratch, int32_t* ids) {
    __shared__ SelectShared sh;
    __shared__ float red_f[32];
    __shared__ unsigned long long red_u[32];
    __shared__ double red_d[32];

    const SampleRowArgs a = rows[blockIdx.x];
    const T* l = logits + static_cast<int64_t>(blockIdx.x) * stride;
    float* s = scratch + static_cast<int64_t>(blockIdx.x) * n;
    const bool greedy = a.temperature == 0.0f || a.top_k == 1;
    const int id_bits = n > 1 ? 32 - __clz(n - 1) : 0;

    // s = penalized logits / temperature (no division when greedy: the argmax needs none).
    for (int i = threadIdx.x; i < n; i += kThreads) {
        const float x = cuda::to_float(l[i]);
        s[i] = greedy ? x : x / a.temperature;
    }
    __syncthreads();
    if (a.repetition_penalty != 1.0f) {
        // Repeated history ids write the same value: each distinct id is penalized once.
        for (int64_t h = threadIdx.x; h < a.n_history; h += kThreads) {
            const int32_t id = history[a.history_offset + h];
            if (id < 0 || id >= n) continue;
            float x = cuda::to_float(l[id]);
            x = x < 0.0f ? x * a.repetition_penalty : x / a.repetition_penalty;
            s[id] = greedy ? x : x / a.temperature;
        }
        __syncthreads();
    }

    const int k = greedy ? 1 : (a.top_k > 0 && a.top_k < n ? a.top_k : n);
    // The last candidate of the top-k (the smallest key kept).
    uint64_t kth_key;
    if (k < n) {
        kth_key = select_first_reaching(s, n, id_bits, 0, static_cast<uint64_t>(k), CountWeight{}, sh).key;
        if (greedy) {
            if (threadIdx.x == 0) ids[blockIdx.x] = id_of(kth_key, n);
            return;
        }
    }
    float s_max = -INFINITY;
    unsigned long long min_key = ~0ull;
    for_each_element(s, n, [&](float v, int i) {
        s_max = fmaxf(s_max, v);
        min_key = min(min_key, static_cast<unsigned long long>(sort_key(v, i, n)));
    });
    s_max = block_max(s_max, red_f);
    if (k == n) kth_key = block_min_u64(min_key, red_u);

    // Softmax denominator over the top-k, in f64 as on the CPU.
    double sum = 0.0;
    for_each_element(s, n, [&](float v, int i) {
        if (sort_key(v, i, n) >= kth_key) sum += static_cast<double>(expf(v - s_max));
    });
    sum = block_sum_f64(sum, red_d);
    const ProbWeight prob{s_max, sum};

    // Top-p: the nucleus ends at the first candidate where the cumulative probability reaches top_p.
    uint64_t last_key = kth_key;
    unsigned long long mass = static_cast<unsigned long long>(kMassUnit);  // 1.0
    if (a.top_p > 0.0f && a.top_p < 1.0f) {
        const auto target = static_cast<uint64_t>(ceil(static_cast<double>(a.top_p) * kMassUnit));
        const SelectResult r = select_first_reaching(s, n, id_bits, kth_key, target, prob, sh);
        mass = r.found ? r.cum : r.total;  // short of top_p by rounding: the CPU keeps every candidate
        if (r.found) last_key = r.key;
    }

    // The draw: the first kept candidate whose cumulative probability reaches u * mass.
    const auto target = static_cast<uint64_t>(ceil(a.u * static_cast<double>(mass)));
    const SelectResult r = select_first_reaching(s, n, id_bits, last_key, target, prob, sh);
    if (threadIdx.x == 0) ids[blockIdx.x] = id_of(r.found ? r.key : last_key, n);
}

template <typename T>
void launch_sample_rows(const TensorView& logits, const SampleRowArgs* rows, const int32_t* history, float* scratch,
                        int32_t* ids, cudaStream_t stream) {
    sample_rows_kernel<T><<<static_cast<unsigned>(logits.rows), kThreads, 0, stream>>>(
        static_cast<const T*>(logits.data), logits.row_stride, static_cast<int>(logits.cols), rows, history, scratch,
        ids);
}

// Grows a device buffer to at least `bytes`; the old one is retired, not freed (a captured graph may use it).
void grow(void*& p, size_t& capacity, size_t bytes, std::vector<void*>& retired) {
    if (bytes <= capacity) return;
    if (p != nullptr) retired.push_back(p);
    CUDA_CHECK(cudaMalloc(&p, bytes));
    capacity = bytes;
}

}  // namespace

void CudaBackend::sample_rows(const TensorView& logits, std::span<const SampleRowParams> params,
                              std::span<const double> uniforms, int32_t* ids) {
    LAMINA_CHECK(static_cast<int64_t>(params.size()) == logits.rows && uniforms.size() == params.size(),
                 std::to_string(logits.rows) + " rows, " + std::to_string(params.size()) + " params, " +
                     std::to_string(uniforms.size()) + " uniforms");
    // Up to 2^30 columns: block-strided int indices never overflow.
    LAMINA_CHECK(logits.cols > 0 && logits.cols <= (int64_t{1} << 30) && logits.row_stride >= logits.cols,
                 "logits cols " + std::to_string(logits.cols));
    if (logits.rows == 0) return;

    // One upload: the rows' settings, then the histories of the penalized rows.
    const size_t rows = params.size();
    size_t n_history = 0;
    for (const SampleRowParams& p : params) n_history += p.repetition_penalty != 1.0f ? p.history.size() : 0;
    const size_t args_bytes = rows * sizeof(SampleRowArgs);  // a multiple of 8: the ids that follow stay aligned
    sample_upload_.resize(args_bytes + n_history * sizeof(int32_t));
    int64_t offset = 0;
    for (size_t r = 0; r < rows; ++r) {
        const SampleRowParams& p = params[r];
        LAMINA_CHECK(uniforms[r] >= 0.0 && uniforms[r] < 1.0, "uniform " + std::to_string(uniforms[r]) + " outside [0, 1)");
        const bool penalized = p.repetition_penalty != 1.0f;
        const SampleRowArgs a{p.temperature, p.top_k, p.top_p, p.repetition_penalty, offset,
                              penalized ? static_cast<int64_t>(p.history.size()) : 0, uniforms[r]};
        std::memcpy(sample_upload_.data() + r * sizeof(SampleRowArgs), &a, sizeof a);
        if (penalized && !p.history.empty()) {
            std::memcpy(sample_upload_.data() + args_bytes + static_cast<size_t>(offset) * sizeof(int32_t),
                        p.history.data(), p.history.size_bytes());
            offset += static_cast<int64_t>(p.history.size());
        }
    }
    grow(sample_args_, sample_args_bytes_, sample_upload_.size(), retired_);
    void* scratch = sample_scratch_;
    grow(scratch, sample_scratch_bytes_, rows * static_cast<size_t>(logits.cols) * sizeof(float), retired_);
    sample_scratch_ = static_cast<float*>(scratch);
    // Pageable source: the copy has taken the bytes when it returns, so sample_upload_ may be reused.
    CUDA_CHECK(cudaMemcpyAsync(sample_args_, sample_upload_.data(), sample_upload_.size(), cudaMemcpyHostToDevice, stream_));

    const auto* dev_args = static_cast<const SampleRowArgs*>(sample_args_);
    const auto* dev_hist = reinterpret_cast<const int32_t*>(static_cast<const char*>(sample_args_) + args_bytes);
    LAMINA_CHECK(logits.dtype == DType::F32 || logits.dtype == DType::F16 || logits.dtype == DType::BF16);
    cuda::dispatch_dtype(logits.dtype, [&]<typename T>() {
        launch_sample_rows<T>(logits, dev_args, dev_hist, sample_scratch_, ids, stream_);
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
