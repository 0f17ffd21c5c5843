#include "model/llama.h"

#include <cmath>
#include <vector>

#include "parallel/communicator.h"

namespace lamina {

namespace {
// An optional tensor (a bias) as the ops take it: null when the model has none.
const TensorView* opt(const TensorView& v) { return v.empty() ? nullptr : &v; }
}  // namespace

std::vector<float> llama_rope_table(const ModelConfig& c, int64_t n_ctx) {
    // a scales cos and sin as HF applies yarn's attention factor, which scales q.k by a².
    const std::vector<float> inv_freq = rope_inv_freq(c);
    const float a = c.rope_scaling.attention_factor;
    const int64_t half = c.head_dim / 2;
    std::vector<float> table(static_cast<size_t>(n_ctx * c.head_dim));
    for (int64_t p = 0; p < n_ctx; ++p)
        for (int64_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(p) * inv_freq[i];
            table[p * c.head_dim + i] = std::cos(angle) * a;
            table[p * c.head_dim + half + i] = std::sin(angle) * a;
        }
    return table;
}

void llama_forward(Backend& backend, const LlamaPass& pass, const LlamaBuffers& buf, const StepTokens& tok,
                   const int32_t* logit_rows, int64_t n_logits) {
    const ModelConfig& c = pass.config;
    const LlamaWeights& weights = pass.weights;
    const bool plugin = pass.rmsnorm_plugin;
    // The fused ops (Backend::matmul_rope_kv_write, matmul_swiglu), or for the ablation and traced runs the plain
    // ops they compose.
    const bool fused = plugin && !pass.on_intermediate;
    const int64_t n = tok.n_tokens;
    TensorView x = rows_of(buf.x, n), h = rows_of(buf.h, n), qkv = rows_of(buf.qkv, n), attn = rows_of(buf.attn, n);
    TensorView proj = rows_of(buf.proj, n), gate_up = rows_of(buf.gate_up, n), ff = rows_of(buf.ff, n);
    const float eps = c.rms_eps;
    auto trace = [&](const std::string& name, const TensorView& v) {
        if (!pass.on_intermediate) return;
        backend.synchronize();
        pass.on_intermediate(name, v);
    };
    // Sums a row-parallel partial result over the ranks (nothing with one rank).
    auto all_reduce = [&](const TensorView& v) {
        if (pass.comm) pass.comm->all_reduce_sum(v);
    };
    // residual += sublayer output; h = rms_norm(residual) * w — fused, or as its unfused ops.
    auto add_and_norm = [&](const TensorView& w) {
        if (plugin) {
            backend.rms_norm_fused_add(x, proj, w, eps, h);
        } else {
            backend.add(x, proj);
            backend.rms_norm_unfused(x, w, eps, h);
        }
    };

    backend.embedding(weights.tok_embd, tok, x);
    all_reduce(x);  // vocabulary-split table: a rank's rows for its ids, zeros for the others'
    trace("embd", x);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = weights.layers[l];
        const std::string prefix = pass.on_intermediate ? "blk." + std::to_string(l) + "." : std::string();
        if (l > 0) add_and_norm(L.attn_norm);
        else if (plugin) backend.rms_norm(x, L.attn_norm, eps, h);
        else backend.rms_norm_unfused(x, L.attn_norm, eps, h);
        trace(prefix + "attn_norm", h);
        if (fused) {
            backend.matmul_rope_kv_write(h, L.wqkv, opt(L.bqkv), tok, pass.rope_cos_sin, pass.shape, l, pass.kv, qkv);
        } else {
            backend.matmul(h, L.wqkv, opt(L.bqkv), qkv);
            backend.rope_kv_write(qkv, tok, pass.rope_cos_sin, pass.shape, l, pass.kv);
        }
        trace(prefix + "qkv_rope", qkv);
        backend.attention(qkv, tok, pass.shape, l, pass.kv, attn);
        trace(prefix + "attn", attn);
        backend.matmul(attn, L.wo, opt(L.bo), proj);
        all_reduce(proj);  // row-parallel o_proj: partial sums over each rank's heads
        trace(prefix + "attn_out", proj);

        add_and_norm(L.ffn_norm);
        trace(prefix + "ffn_norm", h);
        if (fused) {
            backend.matmul_swiglu(h, L.w_gate_up, opt(L.b_gate_up), gate_up, ff);
        } else {
            backend.matmul(h, L.w_gate_up, opt(L.b_gate_up), gate_up);
            backend.swiglu(gate_up, ff);
        }
        backend.matmul(ff, L.w_down, opt(L.b_down), proj);
        all_reduce(proj);  // row-parallel down: partial sums over each rank's n_ff columns
        trace(prefix + "ffn_out", proj);
    }
    add_and_norm(weights.output_norm);
    trace("output_norm", h);

    TensorView last = rows_of(buf.last, n_logits), out = rows_of(buf.logits, n_logits);
    backend.gather_rows(h, logit_rows, n_logits, last);
    if (pass.comm) {  // vocabulary-split LM head: each rank's columns, gathered in rank order
        TensorView part = rows_of(buf.logits_part, n_logits);
        backend.matmul(last, weights.output, nullptr, part);
        pass.comm->all_gather_cols(part, out);
    } else {
        backend.matmul(last, weights.output, nullptr, out);
    }
    trace("logits", out);
}

}  // namespace lamina
