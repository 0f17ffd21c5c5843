// Matrix products of activations with weights: out[n, m] = x[n, k] @ W[m, k]^T (+ bias[m]).
//
// Decode (n <= kGemvMaxTokens): a hand-written GEMV. One warp per output row; lanes stream the row
// of W in 16-byte vectors (eight in flight each) and multiply with the n activation rows, which stay in
// L1/L2; f32 accumulation, warp-shuffle reduction, bias in the epilogue. Bytes = m * k * sizeof(T)
// (the weights, read once) — the whole cost at batch 1, so the target is the copy bandwidth.
// Prefill and large batches: cuBLASLt (fp16/bf16 inputs, f32 accumulation); per shape, the heuristic's
// top candidates (32; LAMINA_GEMM_CANDIDATES) are timed once on the first call and the fastest is kept
// (LAMINA_GEMM_LOG=1 prints each shape's rate). FLOPs = 2 n m k, the target is the tensor cores' measured rate.
#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

// Up to 2 tokens the GEMV wins or ties; from 4 on, cuBLASLt's tensor cores do (H100, 7B decode: b2 336 vs
// 335, b4 566 vs 651, b8 821 vs 1,223 tok/s, GEMV vs cuBLASLt). LAMINA_GEMV_MAX_TOKENS lowers it for A/B.
constexpr int64_t kGemvMaxTokens = 2;
constexpr int kGemvWarps = 8;     // rows per block
constexpr int kGemvUnroll = 8;    // 16-byte loads in flight per lane

// Weights are read once per step: loaded as streaming (evict-first), leaving L2 to the activations and
// the KV cache (H100, 7B: decode 174 -> 181 tok/s at batch 1, 770 -> 822 at batch 8). LAMINA_GEMV_STREAM=0
// reads them through the read-only path instead (an A/B switch).
__device__ __forceinline__ uint4 load_weight(const uint4* p, bool stream) { return stream ? __ldcs(p) : __ldg(p); }
constexpr size_t kWorkspaceBytes = 32u << 20;
constexpr int kAutotuneRepeats = 3;  // timed runs per cuBLASLt candidate

template <typename T, int N, bool Vec>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const T* __restrict__ x, int64_t x_stride, const T* __restrict__ w, int64_t w_stride,
                const float* __restrict__ bias, T* __restrict__ out, int64_t out_stride, int m, int k, bool stream) {
    const int row = blockIdx.x * kGemvWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= m) return;
    const T* wr = w + static_cast<int64_t>(row) * w_stride;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] = 0.0f;

    if constexpr (Vec) {
        constexpr int V = 16 / sizeof(T);
        constexpr int kStep = 32 * V;
        // kGemvUnroll independent vector loads per lane before any use; the last pass is predicated
        // (no serial remainder loop, whose loads would each wait for the previous one's use).
        for (int base = lane * V; base < k; base += kGemvUnroll * kStep) {
            uint4 wv[kGemvUnroll];
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) {
                const int i = base + u * kStep;
                wv[u] = i < k ? load_weight(reinterpret_cast<const uint4*>(wr + i), stream) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) {
                const int i = base + u * kStep;
                if (i >= k) break;
                const T* wt = reinterpret_cast<const T*>(&wv[u]);
#pragma unroll
                for (int t = 0; t < N; ++t) {
                    const uint4 xv = *reinterpret_cast<const uint4*>(x + t * x_stride + i);
                    const T* xt = reinterpret_cast<const T*>(&xv);
#pragma unroll
                    for (int j = 0; j < V; ++j) acc[t] += cuda::to_float(wt[j]) * cuda::to_float(xt[j]);
                }
            }
        }
    } else {
        for (int i = lane; i < k; i += 32) {
            const float wv = cuda::to_float(wr[i]);
#pragma unroll
            for (int t = 0; t < N; ++t) acc[t] += wv * cuda::to_float(x[t * x_stride + i]);
        }
    }
#pragma unroll
    for (int t = 0; t < N; ++t) {
        const float s = cuda::warp_sum(acc[t]);
        if (lane == 0) out[t * out_stride + row] = cuda::from_float<T>(s + (bias ? bias[row] : 0.0f));
    }
}

template <typename T>
void launch_gemv(const TensorView& x, const TensorView& w, const float* bias, TensorView out, cudaStream_t stream) {
    constexpr int64_t V = 16 / sizeof(T);
    const bool vec = vector_rows(x, V) && vector_rows(w, V);
    static const bool stream_weights = cuda::env_switch("LAMINA_GEMV_STREAM", true);
    const int m = static_cast<int>(w.rows), k = static_cast<int>(w.cols);
    const dim3 grid(static_cast<unsigned>(cuda::ceil_div(m, kGemvWarps)));
    auto go = [&]<int N>() {
        auto args = std::make_tuple(static_cast<const T*>(x.data), x.row_stride, static_cast<const T*>(w.data),
                                    w.row_stride, bias, static_cast<T*>(out.data), out.row_stride, m, k, stream_weights);
        if (vec) std::apply([&](auto... a) { gemv_kernel<T, N, true><<<grid, kGemvWarps * 32, 0, stream>>>(a...); }, args);
        else std::apply([&](auto... a) { gemv_kernel<T, N, false><<<grid, kGemvWarps * 32, 0, stream>>>(a...); }, args);
    };
    switch (x.rows) {
        case 1: go.template operator()<1>(); break;
        case 2: go.template operator()<2>(); break;
        default: LAMINA_CHECK(false, "gemv takes 1 or 2 rows");
    }
    CUDA_CHECK_LAUNCH();
}

template <typename T>
__global__ void add_bias_kernel(T* out, int64_t stride, const float* bias, int m) {
    const int64_t r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < m; i += gridDim.x * blockDim.x)
        out[r * stride + i] = cuda::from_float<T>(cuda::to_float(out[r * stride + i]) + bias[i]);
}

cudaDataType_t cuda_type(DType t) {
    switch (t) {
        case DType::F32: return CUDA_R_32F;
        case DType::F16: return CUDA_R_16F;
        case DType::BF16: return CUDA_R_16BF;
    }
    return CUDA_R_32F;
}

void check_lt(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLASLt error ") + std::to_string(static_cast<int>(s)) + " in " + what);
}

}  // namespace

// Timing cuBLASLt's candidates can be turned off (LAMINA_GEMM_AUTOTUNE=0): the heuristic's first choice.
bool autotune_gemm() {
    static const bool on = cuda::env_switch("LAMINA_GEMM_AUTOTUNE", true);
    return on;
}

// The heuristic's candidates for a shape, each timed on the real operands (outside graph capture);
// the fastest is kept for the shape. During a capture only the heuristic's first choice is used.
cublasLtMatmulAlgo_t CudaBackend::choose_lt_algo(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
                                                 cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                                 const TensorView& x, const TensorView& w, TensorView out) {
    cublasLtMatmulPreference_t pref = nullptr;
    check_lt(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
    check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt_workspace_bytes_,
                                                  sizeof lt_workspace_bytes_), "pref");
    constexpr int kMaxCandidates = 64;
    static const int candidates = std::min(kMaxCandidates, cuda::env_int("LAMINA_GEMM_CANDIDATES", 32));
    cublasLtMatmulHeuristicResult_t results[kMaxCandidates] = {};
    int found = 0;
    check_lt(cublasLtMatmulAlgoGetHeuristic(lt_, op, a, b, c, c, pref, candidates, results, &found), "AlgoGetHeuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    if (found == 0)
        throw Error("cuBLASLt found no algorithm for " + std::to_string(x.rows) + "x" + std::to_string(w.rows) + "x" +
                    std::to_string(w.cols));
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
    if (found == 1 || capture != cudaStreamCaptureStatusNone || !autotune_gemm()) return results[0].algo;
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    const float alpha = 1.0f, beta = 0.0f;
    float best_ms = -1.0f, first_ms = -1.0f;
    int best = 0;
    for (int i = 0; i < found; ++i) {
        auto run = [&] {
            return cublasLtMatmul(lt_, op, &alpha, w.data, a, x.data, b, &beta, out.data, c, out.data, c, &results[i].algo,
                                  lt_workspace_, lt_workspace_bytes_, stream_);
        };
        if (run() != CUBLAS_STATUS_SUCCESS) continue;  // warm-up; a candidate that fails is skipped
        CUDA_CHECK(cudaEventRecord(start, stream_));
        for (int r = 0; r < kAutotuneRepeats; ++r) check_lt(run(), "Matmul (autotune)");
        CUDA_CHECK(cudaEventRecord(stop, stream_));
        CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        if (i == 0) first_ms = ms;
        if (best_ms < 0.0f || ms < best_ms) best_ms = ms, best = i;
    }
    static const bool log = cuda::env_switch("LAMINA_GEMM_LOG", false);
    if (log) {
        const double flops = 2.0 * kAutotuneRepeats * static_cast<double>(x.rows) * static_cast<double>(w.rows) *
                             static_cast<double>(w.cols);
        std::fprintf(stderr, "gemm %lldx%lldx%lld: heuristic's first %.1f TFLOP/s, best (#%d of %d) %.1f TFLOP/s\n",
                     static_cast<long long>(x.rows), static_cast<long long>(w.rows), static_cast<long long>(w.cols),
                     first_ms > 0 ? flops / (first_ms * 1e-3) / 1e12 : 0.0, best, found, flops / (best_ms * 1e-3) / 1e12);
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    return results[best].algo;
}

void CudaBackend::gemm_cublaslt(const TensorView& x, const TensorView& w, TensorView out) {
    const int64_t n = x.rows, m = w.rows, k = w.cols;
    const cudaDataType_t type = cuda_type(act_);
    // Column-major view: out^T [m, n] = W [m, k] (stored as k x m, transposed) * x^T [k, n].
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    check_lt(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
    check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
    check_lt(cublasLtMatrixLayoutCreate(&a, type, k, m, w.row_stride), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&b, type, k, n, x.row_stride), "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&c, type, m, n, out.row_stride), "layout C");
    const auto key = std::make_tuple(n, m, k, static_cast<int>(act_));
    auto it = lt_algos_.find(key);
    if (it == lt_algos_.end()) it = lt_algos_.emplace(key, choose_lt_algo(op, a, b, c, x, w, out)).first;
    const float alpha = 1.0f, beta = 0.0f;
    check_lt(cublasLtMatmul(lt_, op, &alpha, w.data, a, x.data, b, &beta, out.data, c, out.data, c, &it->second,
                            lt_workspace_, lt_workspace_bytes_, stream_), "Matmul");
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
    cublasLtMatmulDescDestroy(op);
}

void CudaBackend::matmul(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out) {
    LAMINA_CHECK(x.dtype == act_ && w.dtype == act_ && out.dtype == act_, "cuda matmul: weights must be the engine dtype");
    LAMINA_CHECK(x.cols == w.cols && out.rows == x.rows && out.cols == w.rows);
    const float* b = bias ? static_cast<const float*>(bias->data) : nullptr;
    static const int64_t gemv_max_tokens = std::min<int64_t>(kGemvMaxTokens, cuda::env_int("LAMINA_GEMV_MAX_TOKENS", kGemvMaxTokens));
    if (x.rows <= gemv_max_tokens) {
        cuda::dispatch_dtype(act_, [&]<typename T>() { launch_gemv<T>(x, w, b, out, stream_); });
        return;
    }
    gemm_cublaslt(x, w, out);
    if (b != nullptr) {
        const dim3 grid(static_cast<unsigned>(cuda::ceil_div(w.rows, 256)), static_cast<unsigned>(x.rows));
        cuda::dispatch_dtype(act_, [&]<typename T>() {
            add_bias_kernel<T><<<grid, 256, 0, stream_>>>(static_cast<T*>(out.data), out.row_stride, b, static_cast<int>(w.rows));
        });
        CUDA_CHECK_LAUNCH();
    }
}

size_t cublaslt_workspace_bytes() { return kWorkspaceBytes; }

}  // namespace lamina
