// The CPU backend: fp32 activations, f32/f16/bf16 weights, AVX2 dots, single-threaded OpenBLAS sgemm
// for prefill, and its own ThreadPool (core/thread_pool.h) over rows, heads and weight-row blocks. It is
// also the numerical reference for every other backend.
#pragma once

#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/quant_dot.h"
#include "core/thread_pool.h"

namespace lamina {

class CpuBackend final : public Backend {
public:
    // n_threads: threads of the pool, the caller's included; 0: one per physical core.
    explicit CpuBackend(int n_threads = 0, DType kv_cache_dtype = DType::F32);
    int threads() const { return pool_.size(); }

    std::string name() const override { return "cpu"; }
    void* alloc(size_t bytes) override;
    void free(void* p) override;
    void to_device(void* dst, const void* src, size_t bytes) override;
    void to_host(void* dst, const void* src, size_t bytes) override;
    void copy_device(void* dst, const void* src, size_t bytes) override;
    bool shares_host_memory() const override { return true; }
    DType kv_cache_dtype() const override { return kv_dtype_; }

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
                     std::span<const double> uniforms, int32_t* ids) override;
    void rms_norm_quant_per_token(const TensorView& x, const TensorView& w, float eps, int8_t* out,
                                  float* scales) override;
    void rms_norm_quant_per_tensor(const TensorView& x, const TensorView& w, float eps, float scale,
                                   int8_t* out) override;

private:
    // rms_norm_quant_per_token (scales set) or per_tensor (tensor_scale).
    void rms_norm_quant(const TensorView& x, const TensorView& w, float eps, float tensor_scale, int8_t* out,
                        float* scales);

    // matmul with block-format weights (backend/cpu/quant_dot.h).
    void matmul_quantized(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out);

    ThreadPool pool_;
    DType kv_dtype_;
    std::vector<cpu::ActBlock> act_scratch_;  // the step's activations quantized for block-format weights
    std::vector<float> weight_scratch_;  // per pool thread: f16/bf16 weight rows widened to f32 for sgemm (prefill)
    std::vector<float> score_scratch_;   // per pool thread: one n_ctx row of attention scores
    std::vector<float> norm_scratch_;    // x^2, then x / rms, for the unfused RMSNorm; per thread a row for int8 output
    std::vector<float> sampling_row_;   // one logits row in f32, penalized in place
    std::vector<std::pair<float, int32_t>> sampling_candidates_;
};

}  // namespace lamina
