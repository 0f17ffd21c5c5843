// RoPE + KV-cache write, and causal GQA attention, on the CPU.
//
// qkv row layout: [q: n_head * head_dim | k: n_head_kv * head_dim | v: n_head_kv * head_dim].
// RoPE is Hugging Face's rotate-half form: for i < head_dim/2, (x[i], x[i + head_dim/2]) is rotated by
// angle pos * inv_freq[i]; rope_cos_sin row p holds [cos(p f_0..), sin(p f_0..)], head_dim floats.
// Attention: scores = q . k_p * scale for p in [0, pos], fp32 softmax, out = sum_p prob_p v_p (vector dots and
// axpys: cpu/dot.h). The cache holds K and V in f32, or f16 (written rounded to nearest, read exactly).
// Threads: the pool splits tokens (RoPE) and (token, head) pairs (attention), one pair per chunk at least.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/dot.h"
#include "core/error.h"

namespace lamina {

namespace {
void rotate(float* x, const float* cs, int64_t head_dim) {
    const int64_t half = head_dim / 2;
    const float* cos = cs;
    const float* sin = cs + half;
    for (int64_t i = 0; i < half; ++i) {
        const float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * cos[i] - x1 * sin[i];
        x[i + half] = x1 * cos[i] + x0 * sin[i];
    }
}
}  // namespace

void CpuBackend::rope_kv_write(TensorView qkv, const StepTokens& tok, const TensorView& rope_cos_sin,
                               const AttentionShape& s, int64_t layer, KvCache& cache) {
    LAMINA_CHECK((cache.dtype == DType::F32 || cache.dtype == DType::F16) && qkv.dtype == DType::F32);
    const size_t elem = dtype_size(cache.dtype);
    const int64_t kv_dim = s.n_head_kv * s.head_dim;
    const int64_t q_dim = s.n_head * s.head_dim;
    constexpr int64_t kTokenGrain = 8;  // a token's RoPE and cache write is ~1 us at SmolLM2's shape
    pool_.parallel_for(tok.n_tokens, kTokenGrain, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int32_t pos = tok.positions[t];
            LAMINA_CHECK(pos >= 0 && pos < cache.n_ctx && pos < rope_cos_sin.rows, "position " + std::to_string(pos));
            LAMINA_CHECK(tok.slots[t] >= 0 && tok.slots[t] < cache.n_slot);
            const float* cs = rope_cos_sin.row<float>(pos);
            float* row = qkv.row<float>(t);
            for (int64_t h = 0; h < s.n_head + s.n_head_kv; ++h) rotate(row + h * s.head_dim, cs, s.head_dim);
            const size_t off = static_cast<size_t>(cache.offset(tok.slots[t], layer, pos)) * elem;
            convert_from_f32(cache.dtype, row + q_dim, static_cast<char*>(cache.k) + off, static_cast<size_t>(kv_dim));
            convert_from_f32(cache.dtype, row + q_dim + kv_dim, static_cast<char*>(cache.v) + off, static_cast<size_t>(kv_dim));
        }
    });
}

void CpuBackend::attention(const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer,
                           const KvCache& cache, TensorView out) {
    LAMINA_CHECK(out.cols == s.n_head * s.head_dim && out.rows == tok.n_tokens);
    if (score_scratch_.size() < static_cast<size_t>(pool_.size() * cache.n_ctx))
        score_scratch_.resize(static_cast<size_t>(pool_.size() * cache.n_ctx));
    const int64_t group = s.n_head / s.n_head_kv;
    const int64_t hd = s.head_dim;
    const size_t elem = dtype_size(cache.dtype);
    const auto* k_cache = static_cast<const char*>(cache.k);
    const auto* v_cache = static_cast<const char*>(cache.v);
    const cpu::DotFn dot = cpu::dot_for(cache.dtype);
    const cpu::AxpyFn axpy = cpu::axpy_for(cache.dtype);
    pool_.parallel_for(tok.n_tokens * s.n_head, 1, [&](int64_t i0, int64_t i1, int thread) {
        float* scores = score_scratch_.data() + static_cast<size_t>(thread) * cache.n_ctx;
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t t = i / s.n_head, h = i % s.n_head;
            const float* q = qkv.row<float>(t) + h * hd;
            const int64_t kvh = h / group;
            const int64_t n_pos = tok.positions[t] + 1;
            const int64_t base = cache.offset(tok.slots[t], layer, 0) + kvh * hd;
            float max_score = -INFINITY;
            for (int64_t p = 0; p < n_pos; ++p) {
                scores[p] = dot(q, k_cache + static_cast<size_t>(base + p * cache.kv_dim) * elem, hd) * s.scale;
                max_score = std::max(max_score, scores[p]);
            }
            float sum = 0.0f;
            for (int64_t p = 0; p < n_pos; ++p) {
                scores[p] = std::exp(scores[p] - max_score);
                sum += scores[p];
            }
            const float inv_sum = 1.0f / sum;
            float* o = out.row<float>(t) + h * hd;
            std::fill(o, o + hd, 0.0f);
            for (int64_t p = 0; p < n_pos; ++p) axpy(scores[p] * inv_sum, v_cache + static_cast<size_t>(base + p * cache.kv_dim) * elem, o, hd);
        }
    });
}

}  // namespace lamina
