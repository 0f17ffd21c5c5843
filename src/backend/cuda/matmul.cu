// Matrix products of activations with weights: out[n, m] = x[n, k] @ W[m, k]^T (+ bias[m]).
//
// Decode (n <= kGemvMaxTokens): the hand-written GEMV of decode_gemv.cu (one warp per output row, the
// weights streamed once in 16-byte vectors; bytes = m * k * sizeof(T), so the target is the copy bandwidth).
// Prefill and large batches: cuBLASLt (fp16/bf16 inputs, f32 accumulation); per shape, the heuristic's
// top candidates (up to 32) are timed once on the first call and the fastest is kept (LAMINA_GEMM_LOG=1 prints
// each shape's rate). FLOPs = 2 n m k, the target is the tensor cores' measured rate.
// The fused ops (matmul_rope_kv_write, matmul_swiglu) take the decode GEMV with the op in its epilogue in decode
// steps of up to kFusedGemvMaxTokens tokens, and the plain ops otherwise.
#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

// Up to 2 tokens the GEMV wins or ties; from 4 on, cuBLASLt's tensor cores do (H100, 7B decode: b2 336 vs
// 335, b4 566 vs 651, b8 821 vs 1,223 tok/s, GEMV vs cuBLASLt).
constexpr int64_t kGemvMaxTokens = 2;

constexpr size_t kWorkspaceBytes = 32u << 20;
constexpr int kAutotuneRepeats = 3;  // timed runs per cuBLASLt candidate
constexpr int kAutotuneCandidates = 32;

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

// The heuristic's candidates for a shape, each timed on the real operands (outside graph capture);
// the fastest is kept for the shape. During a capture only the heuristic's first choice is used.
cublasLtMatmulAlgo_t CudaBackend::choose_lt_algo(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
                                                 cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                                 const TensorView& x, const TensorView& w, TensorView out) {
    cublasLtMatmulPreference_t pref = nullptr;
    check_lt(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
    check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt_workspace_bytes_,
                                                  sizeof lt_workspace_bytes_), "pref");
    cublasLtMatmulHeuristicResult_t results[kAutotuneCandidates] = {};
    int found = 0;
    check_lt(cublasLtMatmulAlgoGetHeuristic(lt_, op, a, b, c, c, pref, kAutotuneCandidates, results, &found),
             "AlgoGetHeuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    if (found == 0)
        throw Error("cuBLASLt found no algorithm for " + std::to_string(x.rows) + "x" + std::to_string(w.rows) + "x" +
                    std::to_string(w.cols));
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
    if (found == 1 || capture != cudaStreamCaptureStatusNone) return results[0].algo;
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
    static const bool log = env_switch("LAMINA_GEMM_LOG", false);
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
    if (x.rows <= kGemvMaxTokens) {
        gemv(act_, x, w, b, out, stream_);
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

// A decode step (no prefill tiles) of a few tokens: the op in the GEMV's epilogue (decode_gemv.cu). Prefill keeps
// the plain ops: its attention reads keys this step writes, so its cache writes must be done before it starts.
void CudaBackend::matmul_rope_kv_write(const TensorView& x, const TensorView& wqkv, const TensorView* bqkv,
                                       const StepTokens& tok, const TensorView& rope_cos_sin, const AttentionShape& s,
                                       int64_t layer, KvCache& cache, TensorView qkv) {
    if (tok.n_tiles != 0 || x.rows > kFusedGemvMaxTokens) {
        matmul(x, wqkv, bqkv, qkv);
        rope_kv_write(qkv, tok, rope_cos_sin, s, layer, cache);
        return;
    }
    LAMINA_CHECK(x.dtype == act_ && wqkv.dtype == act_ && qkv.dtype == act_ && cache.dtype == act_);
    LAMINA_CHECK(rope_cos_sin.dtype == DType::F32 && rope_cos_sin.cols == s.head_dim && s.head_dim % 2 == 0);
    const int64_t qkv_dim = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
    LAMINA_CHECK(wqkv.rows == qkv_dim && wqkv.cols == x.cols && qkv.cols == qkv_dim && qkv.rows == x.rows &&
                 x.rows == tok.n_tokens && cache.kv_dim == s.n_head_kv * s.head_dim);
    gemv_rope_kv_write(act_, x, wqkv, bqkv ? static_cast<const float*>(bqkv->data) : nullptr, tok, rope_cos_sin, s,
                       layer, cache, qkv, stream_);
}

void CudaBackend::matmul_swiglu(const TensorView& x, const TensorView& w_gate_up, const TensorView* bias,
                                TensorView gate_up, TensorView out) {
    if (x.rows > kFusedGemvMaxTokens) {
        matmul(x, w_gate_up, bias, gate_up);
        swiglu(gate_up, out);
        return;
    }
    LAMINA_CHECK(x.dtype == act_ && w_gate_up.dtype == act_ && out.dtype == act_);
    LAMINA_CHECK(w_gate_up.cols == x.cols && w_gate_up.rows == 2 * out.cols && out.rows == x.rows);
    gemv_swiglu(act_, x, w_gate_up, bias ? static_cast<const float*>(bias->data) : nullptr, out, stream_);
}

size_t cublaslt_workspace_bytes() { return kWorkspaceBytes; }

}  // namespace lamina
