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

namespace cuda {
// Where the KV cache keeps (slot, layer, position): [slot][layer][pos][kv_dim] elements.
struct CacheGeometry {
    int64_t n_layer, n_ctx, kv_dim;
    static CacheGeometry of(const KvCache& c) { return {c.n_layer, c.n_ctx, c.kv_dim}; }
    __host__ __device__ int64_t offset(int64_t slot, int64_t layer, int64_t pos) const {
        return ((slot * n_layer + layer) * n_ctx + pos) * kv_dim;
    }
};
}  // namespace cuda

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

// decode_gemv.cu: out[n, m] = x[n, k] @ W[m, k]^T (+ bias), n = 1..4, one pass over W (the decode GEMV).
void gemv(DType act, const TensorView& x, const TensorView& w, const float* bias, TensorView out, cudaStream_t stream);

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
    // out_proj.cu: in a one-token step with LAMINA_OPROJ_OVERLAP=1, o_proj as one block an SM started while the
    // attention runs, waiting on its heads instead of the whole grid (slower: 251 against 273 tok/s on the H200);
    // otherwise attention() + matmul().
    void attention_out_proj(const TensorView& qkv, const StepTokens& tok, const AttentionShape& shape, int64_t layer,
                            const KvCache& cache, TensorView attn, const TensorView& wo, const TensorView* bo,
                            TensorView out) override;
    void swiglu(const TensorView& gate_up, TensorView out) override;
    void add(TensorView acc, const TensorView& x) override;
    void gather_rows(const TensorView& x, const int32_t* rows, int64_t n, TensorView out) override;
    void argmax_rows(const TensorView& logits, int32_t* ids) override;
    void sample_rows(const TensorView& logits, std::span<const SampleRowParams> params,
                     std::span<const double> uniforms, int32_t* ids) override;  // sampling.cu

    // decode_gemv.cu: the decode GEMV with the norms, residual adds, RoPE + KV write and SwiGLU folded in.
    // The mode is read when the backend is made, from LAMINA_FUSED_DECODE: unset or `epilogues` (the default:
    // RoPE + KV write and SwiGLU in the GEMVs' epilogues, 249.4 against 237.1 tok/s for the plain ops on the
    // H200, bench/results/2026-11-29-h200-step run17), `0` (the plain ops) or `1` (Full: 231.9 tok/s there).
    FusedDecode fused_decode_mode() const override { return fused_decode_; }
    void decode_qkv(const TensorView& x, const TensorView& g, float eps, const TensorView& wqkv, const TensorView* bqkv,
                    const StepTokens& tok, const TensorView& rope_cos_sin, const AttentionShape& shape, int64_t layer,
                    KvCache& cache, TensorView qkv) override;
    void decode_matmul_add(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView residual) override;
    void decode_gate_up(const TensorView& x, const TensorView& g, float eps, const TensorView& w_gate_up,
                        const TensorView* bias, TensorView out) override;
    void decode_norm_matmul(const TensorView& x, const int32_t* rows, const TensorView& g, float eps,
                            const TensorView& w, TensorView out) override;

    // decode_step.cu: a decode step of one token (f16/bf16) as one persistent kernel. Off unless
    // LAMINA_PERSISTENT_DECODE=1 when the backend is made: on the H200 it measured 228 tok/s against 237 for
    // the separate kernels with its fixed split of rows (bench/results/2026-11-29-h200-step).
    bool decode_step(const LlamaWeights& w, float eps, const StepTokens& tok, const TensorView& rope_cos_sin,
                     const AttentionShape& shape, KvCache& cache, const DecodeStepBuffers& buf) override;

    bool supports_graphs() const override { return true; }
    bool graph_replay(const void* owner, int64_t key) override;
    void graph_begin() override;
    void graph_end(const void* owner, int64_t key) override;
    void graph_release(const void* owner) override;

    cudaStream_t stream() const { return stream_; }

    // RMSNorm writing int8 with scales (the SmoothQuant path of the seed's kernel); tested and
    // benchmarked on their own, not used by the fp16/bf16 forward pass.
    void rms_norm_quant_per_token(const TensorView& x, const TensorView& w, float eps, int8_t* out, float* scales);
    void rms_norm_quant_per_tensor(const TensorView& x, const TensorView& w, float eps, float scale, int8_t* out);

private:
    // attention(); with heads_done (one token), each head's merge adds 1 to heads_done[head] (out_proj.cu).
    void launch_attention(const TensorView& qkv, const StepTokens& tok, const AttentionShape& shape, int64_t layer,
                          const KvCache& cache, TensorView out, unsigned* heads_done);
    void gemm_cublaslt(const TensorView& x, const TensorView& w, TensorView out);
    cublasLtMatmulAlgo_t choose_lt_algo(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                        cublasLtMatrixLayout_t c, const TensorView& x, const TensorView& w, TensorView out);
    float* scratch_f32(size_t n);  // grows once, before any graph capture needs it

    DType act_;
    int device_ = 0;
    FusedDecode fused_decode_ = FusedDecode::None;
    bool persistent_decode_ = false;
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
    // attention_out_proj: per (layers, heads), per layer the heads merged and the o_proj runs (out_proj.cu)
    std::map<std::pair<int64_t, int64_t>, void*> proj_sync_;
    float* step_partials_ = nullptr;  // decode_step: attention partials
    size_t step_partials_n_ = 0;
    void* step_sync_ = nullptr;  // decode_step: its grid barrier
    int* step_heads_ = nullptr;  // decode_step: per head, attention splits done
    size_t step_heads_n_ = 0;
    void* step_profile_ = nullptr;  // decode_step with LAMINA_STEP_PROFILE=1: where its time went
    int step_profile_grid_ = 0;
    void print_step_profile();  // to stderr, when the backend is destroyed
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
