// The CUDA backend class, shared by the op files (norm.cu, matmul.cu, attention.cu, …). Each op file
// holds its kernels, a typed launcher, and the CudaBackend entry that checks shapes and dtypes.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <map>
#include <tuple>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace lamina {

// Whether every row of t can be read in vectors of v elements: the row length, the row stride and the
// base address are multiples of the vector.
inline bool vector_rows(const TensorView& t, int64_t v) {
    return t.cols % v == 0 && t.row_stride % v == 0 &&
           reinterpret_cast<uintptr_t>(t.data) % (static_cast<uintptr_t>(v) * dtype_size(t.dtype)) == 0;
}

// flash_prefill.cu: tensor-core prefill attention over StepTokens::tiles (f16/bf16, head_dim 64 or 128).
// Returns false, launching nothing, for shapes it does not take (the caller then uses the split kernel).
bool flash_prefill(DType act, const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer,
                   const KvCache& cache, TensorView out, cudaStream_t stream);

// attention.cu: the split (flash-decoding) attention's splits a head for these tokens and cache length, and the
// static shared memory of one of its blocks.
int64_t decode_attention_splits(int64_t n_tokens, int64_t n_head, int64_t n_ctx);
size_t decode_attention_block_smem();

// decode_gemv.cu: the decode GEMV, one pass over W for steps of at most kFusedGemvMaxTokens tokens.
// out[n, m] = x[n, k] @ W[m, k]^T (+ bias)
void gemv(DType act, const TensorView& x, const TensorView& w, const float* bias, TensorView out, cudaStream_t stream);
// Backend::matmul_rope_kv_write and matmul_swiglu with the op in the GEMV's epilogue.
void gemv_rope_kv_write(DType act, const TensorView& x, const TensorView& wqkv, const float* bqkv, const StepTokens& tok,
                        const TensorView& rope_cos_sin, const AttentionShape& s, int64_t layer, const KvCache& cache,
                        TensorView qkv, cudaStream_t stream);
void gemv_swiglu(DType act, const TensorView& x, const TensorView& w_gate_up, const float* bias, TensorView out,
                 cudaStream_t stream);
// More tokens: the registers run out and cuBLASLt's tensor cores win.
inline constexpr int64_t kFusedGemvMaxTokens = 4;

class CudaBackend final : public Backend {
public:
    CudaBackend(DType activation_dtype, int device);
    ~CudaBackend() override;

    std::string name() const override { return "cuda"; }
    DType activation_dtype() const override { return act_; }
    void* alloc(size_t bytes) override;
    void free(void* p) override;
    void to_device(void* dst, const void* src, size_t bytes) override;
    void to_host(void* dst, const void* src, size_t bytes) override;
    void copy_device(void* dst, const void* src, size_t bytes) override;
    void synchronize() override;
    void* alloc_host(size_t bytes) override;
    void free_host(void* p) override;
    void to_device_async(void* dst, const void* src, size_t bytes) override;
    void to_host_async(void* dst, const void* src, size_t bytes) override;
    uint64_t fence() override;
    void wait(uint64_t fence) override;

    void embedding(const TensorView& table, const StepTokens& tok, TensorView out) override;
    void rms_norm(const TensorView& x, const TensorView& w, float eps, TensorView out) override;
    void rms_norm_fused_add(TensorView residual, const TensorView& x, const TensorView& w, float eps,
                            TensorView out) override;
    void rms_norm_unfused(const TensorView& x, const TensorView& w, float eps, TensorView out) override;
    void matmul(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out) override;
    void rope_kv_write(TensorView qkv, const StepTokens& tok, const TensorView& rope_cos_sin,
                       const AttentionShape& shape, int64_t layer, KvCache& cache) override;
    void attention(const TensorView& qkv, const StepTokens& tok, const AttentionShape& shape, int64_t layer,
                   const KvCache& cache, TensorView out) override;
    void swiglu(const TensorView& gate_up, TensorView out) override;
    void add(TensorView acc, const TensorView& x) override;
    void gather_rows(const TensorView& x, const int32_t* rows, int64_t n, TensorView out) override;
    void argmax_rows(const TensorView& logits, int32_t* ids) override;
    void sample_rows(const TensorView& logits, std::span<const SampleRowParams> params,
                     std::span<const double> uniforms, int32_t* ids) override;  // sampling.cu

    // matmul.cu: the decode GEMV with the op in its epilogue for decode steps of up to kFusedGemvMaxTokens tokens
    // (decode_gemv.cu), else the plain ops.
    void matmul_rope_kv_write(const TensorView& x, const TensorView& wqkv, const TensorView* bqkv, const StepTokens& tok,
                              const TensorView& rope_cos_sin, const AttentionShape& shape, int64_t layer, KvCache& cache,
                              TensorView qkv) override;
    void matmul_swiglu(const TensorView& x, const TensorView& w_gate_up, const TensorView* bias, TensorView gate_up,
                       TensorView out) override;
    // norm.cu: the SmoothQuant RMSNorm with int8 output.
    void rms_norm_quant_per_token(const TensorView& x, const TensorView& w, float eps, int8_t* out,
                                  float* scales) override;
    void rms_norm_quant_per_tensor(const TensorView& x, const TensorView& w, float eps, float scale,
                                   int8_t* out) override;

    bool supports_graphs() const override { return true; }
    bool graph_replay(const void* owner, int64_t key) override;
    void graph_begin() override;
    void graph_end(const void* owner, int64_t key) override;
    void graph_release(const void* owner) override;

    cudaStream_t stream() const { return stream_; }

private:
    void gemm_cublaslt(const TensorView& x, const TensorView& w, TensorView out);
    cublasLtMatmulAlgo_t choose_lt_algo(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                        cublasLtMatrixLayout_t c, const TensorView& x, const TensorView& w, TensorView out);
    float* scratch_f32(size_t n);  // grows once, before any graph capture needs it

    DType act_;
    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    cublasLtHandle_t lt_ = nullptr;
    void* lt_workspace_ = nullptr;
    size_t lt_workspace_bytes_ = 0;
    std::map<std::tuple<int64_t, int64_t, int64_t, int>, cublasLtMatmulAlgo_t> lt_algos_;
    float* scratch_ = nullptr;
    size_t scratch_n_ = 0;
    float* attn_partials_ = nullptr;  // flash-decoding partial results
    size_t attn_partials_n_ = 0;
    int* attn_counters_ = nullptr;  // per (token, head): split blocks done (attention.cu)
    size_t attn_counters_n_ = 0;
    void* sample_args_ = nullptr;  // sample_rows: per-row settings and histories, uploaded each call
    size_t sample_args_bytes_ = 0;
    std::vector<char> sample_upload_;  // their host staging copy
    float* sample_scratch_ = nullptr;  // sample_rows: [rows, n_vocab] penalized, scaled logits
    size_t sample_scratch_bytes_ = 0;
    std::vector<void*> retired_;  // buffers replaced by larger ones; captured graphs may still use them
    std::map<std::pair<const void*, int64_t>, cudaGraphExec_t> graphs_;  // by (owner, key)
    // fence(): events recorded in turn; fence f is events_[(f - 1) % size]. A wait on a fence whose event was
    // recorded again since waits for the later point, which is past it too.
    std::array<cudaEvent_t, 8> events_{};
    uint64_t fences_ = 0;
    cudaGraph_t capturing_ = nullptr;
    // LAMINA_KERNEL_TRACE (kernel_trace.cuh): the graph replay to record (0: none) and how many have run.
    int64_t trace_replay_ = 0, replays_ = 0;
    std::string trace_path_;
    void traced_graph_launch(cudaGraphExec_t exec);
};

}  // namespace lamina
