// The op interface every backend implements. The CPU backend is the reference: plain fp32 loops
// (vectorized where it matters); the CUDA backend implements the same ops and is tested against it.
//
// A forward step works on a flat batch of tokens. Token t has a KV-cache slot (one per sequence) and
// a position; attention for t reads its slot's cache at positions [0, pos[t]]. Prefill of several
// sequences, chunked prefill and batched decode are all the same call.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/checked.h"
#include "core/host_device.h"
#include "core/tensor.h"

namespace lamina {

// K and V for every slot and layer: [n_slot][n_layer][n_ctx][kv_dim] each, in the backend's memory (a view:
// runtime/kv_pool.h owns the memory). offset() is the one place that says where (slot, layer, position) lives,
// for every backend and kernel (a kernel takes the KvCache by value).
struct KvCache {
    void* k = nullptr;
    void* v = nullptr;
    DType dtype = DType::F32;
    int64_t n_slot = 0, n_layer = 0, n_ctx = 0, kv_dim = 0;
    // The element index of (slot, layer, pos)'s row in k and in v.
    LAMINA_HOST_DEVICE int64_t offset(int64_t slot, int64_t layer, int64_t pos) const {
        return ((slot * n_layer + layer) * n_ctx + pos) * kv_dim;
    }
    // Throws lamina::Error when the size overflows (limits from a hostile engine's config.json).
    size_t bytes() const {
        const char* what = "KV cache bytes (2 * n_slot * n_layer * n_ctx * kv_dim * dtype size)";
        const int64_t elems = checked_mul(checked_mul(checked_mul(n_slot, n_layer, what), n_ctx, what), kv_dim, what);
        return checked_mul(checked_mul(uint64_t{2}, static_cast<uint64_t>(elems), what), uint64_t{dtype_size(dtype)}, what);
    }
};

// Per-step token metadata, in the backend's memory (ids, positions and slots of n_tokens tokens).
struct StepTokens {
    const int32_t* ids = nullptr;
    const int32_t* positions = nullptr;
    const int32_t* slots = nullptr;
    int64_t n_tokens = 0;
    // Prefill tiles for tensor-core attention: n_tiles records of (first token, rows, slot, first
    // position), each at most kAttentionTileRows tokens of one sequence at consecutive positions.
    const int32_t* tiles = nullptr;
    int64_t n_tiles = 0;
};
inline constexpr int64_t kAttentionTileRows = 64;

struct AttentionShape {
    int64_t n_head = 0, n_head_kv = 0, head_dim = 0;
    float scale = 1.0f;  // 1 / sqrt(head_dim)
};

// One logits row's sampling settings for Backend::sample_rows (the semantics of runtime/sampler.h).
struct SampleRowParams {
    float temperature = 1.0f;         // 0: greedy
    int32_t top_k = 0;                // 0: no limit; 1: greedy
    float top_p = 1.0f;               // 0 or 1: no nucleus cut
    float repetition_penalty = 1.0f;  // HF: each distinct id of `history` divided (logit > 0) or multiplied
    std::span<const int32_t> history;  // host memory: the sequence so far (ids outside the vocabulary ignored)
    bool greedy() const { return temperature == 0.0f || top_k == 1; }
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;

    // Memory. alloc throws lamina::Error (saying how much was asked and what is free) on failure.
    virtual void* alloc(size_t bytes) = 0;
    virtual void free(void* p) = 0;
    virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
    virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
    virtual void copy_device(void* dst, const void* src, size_t bytes) = 0;
    virtual void synchronize() {}
    // Host memory that copies to and from the device need not stage (page-locked on CUDA), for the async
    // copies below; plain host memory on a synchronous backend.
    virtual void* alloc_host(size_t bytes) { return ::operator new(bytes); }
    virtual void free_host(void* p) { ::operator delete(p); }
    // Copies in order with the ops that may return before they are done (host side from alloc_host): the
    // host buffer may be reused, or the bytes copied to it read, once wait(f) has returned for a fence f
    // made after the copy. A synchronous backend copies at once, and its fences are always passed.
    virtual void to_device_async(void* dst, const void* src, size_t bytes) { to_device(dst, src, bytes); }
    virtual void to_host_async(void* dst, const void* src, size_t bytes) { to_host(dst, src, bytes); }
    // A point after every op issued so far (0: none needed), and a wait until the backend has passed it.
    virtual uint64_t fence() { return 0; }
    virtual void wait(uint64_t /*fence*/) {}
    // True when device memory is host memory: weights are then used in place from the mapped file.
    virtual bool shares_host_memory() const { return false; }
    // The dtype of activations (and so of logits) on this backend, and of its KV cache.
    virtual DType activation_dtype() const { return DType::F32; }
    virtual DType kv_cache_dtype() const { return activation_dtype(); }

    // out[t] = table[ids[t]]
    virtual void embedding(const TensorView& table, const StepTokens& tok, TensorView out) = 0;
    // out = x * rsqrt(mean(x^2) + eps) * w, per row
    virtual void rms_norm(const TensorView& x, const TensorView& w, float eps, TensorView out) = 0;
    // residual += x; out = rms_norm(residual) * w  (the fused twin of add + rms_norm)
    virtual void rms_norm_fused_add(TensorView residual, const TensorView& x, const TensorView& w, float eps,
                                    TensorView out) = 0;
    // The unfused composition of rms_norm — square, mean, add eps, sqrt, divide, multiply by the weight
    // as separate passes — the ablation twin of the fused kernel (`lamina build --rmsnorm_plugin off`).
    virtual void rms_norm_unfused(const TensorView& x, const TensorView& w, float eps, TensorView out) = 0;
    // out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m])
    virtual void matmul(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out) = 0;
    // Rotates q and k inside qkv [n, (n_head + 2 n_head_kv) * head_dim] in place (HF rotate-half RoPE)
    // and writes k, v into the cache at each token's (slot, position).
    virtual void rope_kv_write(TensorView qkv, const StepTokens& tok, const TensorView& rope_cos_sin,
                               const AttentionShape& shape, int64_t layer, KvCache& cache) = 0;
    // Causal GQA attention of each token's q (from qkv) over its slot's cache [0, pos]; out [n, n_head*head_dim].
    // (CUDA: in a one-token step it reads the cache rows before `pos` while the op before it may still run, so
    // that op may write no cache row but `pos`: see cuda::pdl_wait.)
    virtual void attention(const TensorView& qkv, const StepTokens& tok, const AttentionShape& shape, int64_t layer,
                           const KvCache& cache, TensorView out) = 0;
    // out[n, n_ff] = silu(gate_up[:, :n_ff]) * gate_up[:, n_ff:]
    virtual void swiglu(const TensorView& gate_up, TensorView out) = 0;
    // acc += x
    virtual void add(TensorView acc, const TensorView& x) = 0;
    // Copies rows rows[i] of x into out row i (to pick the tokens that need logits).
    virtual void gather_rows(const TensorView& x, const int32_t* rows, int64_t n, TensorView out) = 0;
    // ids[r] = argmax of logits row r (the first index on ties, as torch.argmax); ids in backend memory.
    virtual void argmax_rows(const TensorView& logits, int32_t* ids) = 0;
    // ids[r] = the token drawn from logits row r with params[r] and the uniform u = uniforms[r] in [0, 1):
    // repetition penalty, then (unless greedy: argmax) s = logit / temperature, the top_k largest s
    // (ties: lower id first), softmax over them (f32 probabilities, f64 sum), the smallest prefix whose
    // mass reaches top_p, and the first candidate in that order whose cumulative mass reaches u times
    // the kept mass (1 without a top-p cut; the last candidate if rounding leaves the walk short).
    // params, uniforms and history on the host (uploaded); logits unchanged; ids in backend memory.
    virtual void sample_rows(const TensorView& logits, std::span<const SampleRowParams> params,
                             std::span<const double> uniforms, int32_t* ids) = 0;

    // RMSNorm with an int8 output, for SmoothQuant's W8A8 matmuls: y = rms_norm(x) * w as rms_norm computes it,
    // (rounded to the activation dtype), then q = clamp(round_to_nearest_even(y * s), -127, 127). Per token:
    // s = 127 / max_i |y[r, i]|, and scales[r] = max_i |y[r, i]| / 127 (both 0 for an all-zero row); per tensor:
    // s = scale. out [rows, cols] int8 and scales [rows] f32, both in backend memory.
    virtual void rms_norm_quant_per_token(const TensorView& x, const TensorView& w, float eps, int8_t* out,
                                          float* scales) = 0;
    virtual void rms_norm_quant_per_tensor(const TensorView& x, const TensorView& w, float eps, float scale,
                                           int8_t* out) = 0;

    // Fused ops: each computes what the composition of the plain ops above computes (its default here), and a
    // backend may do it in one pass (CUDA: the decode GEMV with the op after the product in its epilogue).
    // qkv = x @ wqkv^T + bqkv, then rope_kv_write(qkv, ...): afterwards qkv's q columns hold the rotated q and the
    // cache holds k and v at each token's (slot, position); qkv's k and v columns are unspecified.
    virtual void matmul_rope_kv_write(const TensorView& x, const TensorView& wqkv, const TensorView* bqkv,
                                      const StepTokens& tok, const TensorView& rope_cos_sin, const AttentionShape& shape,
                                      int64_t layer, KvCache& cache, TensorView qkv) {
        matmul(x, wqkv, bqkv, qkv);
        rope_kv_write(qkv, tok, rope_cos_sin, shape, layer, cache);
    }
    // out = swiglu(x @ w_gate_up^T + bias); gate_up [n, 2 n_ff] is scratch the op may use (contents unspecified
    // afterwards).
    virtual void matmul_swiglu(const TensorView& x, const TensorView& w_gate_up, const TensorView* bias,
                               TensorView gate_up, TensorView out) {
        matmul(x, w_gate_up, bias, gate_up);
        swiglu(gate_up, out);
    }

    // Graph capture of one step's kernels (CUDA graphs): graph_begin/graph_end record the ops issued
    // between them under (owner, key); graph_replay(owner, key) runs them again and returns false if none
    // was recorded. A graph holds the buffers it was captured with, so keys are per owner (each model has
    // its own buffers), and an owner releases its graphs before it frees them.
    virtual bool supports_graphs() const { return false; }
    virtual bool graph_replay(const void* /*owner*/, int64_t /*key*/) { return false; }
    virtual void graph_begin() {}
    virtual void graph_end(const void* /*owner*/, int64_t /*key*/) {}
    virtual void graph_release(const void* /*owner*/) {}
};

// n_threads: the CPU backend's threads, the calling thread's included (`--threads`); 0: one per physical
// core (core/thread_pool.h, physical_core_count()). kv_cache_dtype: float32, or float16 (half the bytes each
// decode step reads at long contexts; the commands choose it for engines of quantized weights).
std::unique_ptr<Backend> make_cpu_backend(int n_threads = 0, DType kv_cache_dtype = DType::F32);

}  // namespace lamina
