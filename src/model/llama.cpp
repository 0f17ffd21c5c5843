#include "model/llama.h"

#include <cmath>
#include <vector>

#include "core/env.h"
#include "core/error.h"
#include "parallel/communicator.h"
#include "parallel/tp_model.h"

namespace lamina {

namespace {
TensorView rows_of(const TensorView& v, int64_t rows) {
    TensorView r = v;
    r.rows = rows;
    return r;
}

// Rebases a view of the mapped weights file onto the same offset inside the uploaded copy.
TensorView rebase(const TensorView& v, const uint8_t* file_base, void* device_base) {
    if (v.empty()) return v;
    TensorView r = v;
    r.data = static_cast<char*>(device_base) + (static_cast<const uint8_t*>(v.data) - file_base);
    return r;
}

// An optional tensor (a bias) as the ops take it: null when the model has none.
const TensorView* opt(const TensorView& v) { return v.empty() ? nullptr : &v; }

// Tensor-parallel ranks take the Epilogues mode too: its passes are local to a rank and the shards keep the
// one-rank layouts ([q; k; v] and [gate; up]). At tp 2 on two H200s, random LLaMA-7B, decode 362.1 against 339.1
// tok/s at batch 1 and 6,550 against 6,413 at batch 32 with the plain ops, the same 128 greedy tokens as tp 1
// (bench/results/2026-11-29-h200x2-tp run3). LAMINA_TP_EPILOGUES=0 gives the ranks the plain ops (A/B switch;
// bench/gpu_bench.sh tp runs tp > 1 both ways).
bool tp_epilogues() {
    static const bool on = env_switch("LAMINA_TP_EPILOGUES", true);
    return on;
}
}  // namespace

LlamaModel::LlamaModel(const Engine& engine, Backend& backend, const ModelLimits& limits, Communicator* comm)
    : config_(engine.config()), backend_(backend), limits_(limits), rmsnorm_plugin_(engine.rmsnorm_plugin()), comm_(comm) {
    LAMINA_CHECK(limits.n_slot > 0 && limits.n_ctx > 0 && limits.max_step_tokens > 0);
    LAMINA_CHECK(comm == nullptr || comm->size() == engine.tp_size());
    if (engine.tp_size() > 1 && comm == nullptr) {
        tp_ = std::make_unique<TpModel>(engine, backend, limits);
        return;
    }
    const EngineRank& rank = engine.rank(comm ? comm->rank() : 0);
    config_ = rank.config;
    const ModelConfig& c = config_;
    if (backend.shares_host_memory()) {
        weights_ = rank.weights;
    } else {
        const MappedFile& f = rank.file;
        device_weights_ = backend.alloc(f.size());
        backend.to_device(device_weights_, f.data(), f.size());
        const LlamaWeights& w = rank.weights;
        auto rb = [&](const TensorView& v) { return rebase(v, f.data(), device_weights_); };
        weights_.tok_embd = rb(w.tok_embd);
        weights_.output_norm = rb(w.output_norm);
        weights_.output = rb(w.output);
        for (const LayerWeights& L : w.layers)
            weights_.layers.push_back({rb(L.attn_norm), rb(L.wqkv), rb(L.bqkv), rb(L.wo), rb(L.bo), rb(L.ffn_norm),
                                       rb(L.w_gate_up), rb(L.b_gate_up), rb(L.w_down), rb(L.b_down)});
    }

    const DType act = backend.activation_dtype();
    kv_.dtype = act;
    kv_.n_slot = limits.n_slot;
    kv_.n_layer = c.n_layer;
    kv_.n_ctx = limits.n_ctx;
    kv_.kv_dim = c.kv_dim();
    kv_.k = backend.alloc(kv_.bytes() / 2);
    kv_.v = backend.alloc(kv_.bytes() / 2);
    buffers_ = {kv_.k, kv_.v};

    // RoPE table: row p = [a cos(p f_i) for i < head_dim/2, a sin(p f_i) ...], angles in f32 as HF computes
    // them; a is yarn's attention factor (1 otherwise), applied to cos and sin as HF does, which scales q.k by a².
    const std::vector<float> inv_freq = rope_inv_freq(c);
    const float a = c.rope_scaling.attention_factor;
    const int64_t half = c.head_dim / 2;
    std::vector<float> table(static_cast<size_t>(limits.n_ctx * c.head_dim));
    for (int64_t p = 0; p < limits.n_ctx; ++p)
        for (int64_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(p) * inv_freq[i];
            table[p * c.head_dim + i] = std::cos(angle) * a;
            table[p * c.head_dim + half + i] = std::sin(angle) * a;
        }
    void* rope = backend.alloc(table.size() * sizeof(float));
    backend.to_device(rope, table.data(), table.size() * sizeof(float));
    buffers_.push_back(rope);
    rope_cos_sin_ = make_view(rope, DType::F32, limits.n_ctx, c.head_dim);
    attn_shape_ = {c.n_head, c.n_head_kv, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};

    const int64_t T = limits.max_step_tokens;
    x_ = activation(c.n_embd, T);
    h_ = activation(c.n_embd, T);
    qkv_ = activation(c.qkv_dim(), T);
    attn_ = activation(c.q_dim(), T);
    proj_ = activation(c.n_embd, T);
    gate_up_ = activation(2 * c.n_ff, T);
    ff_ = activation(c.n_ff, T);
    last_ = activation(c.n_embd, T);
    logits_ = activation(c.n_vocab, T);
    if (comm_) logits_part_ = activation(weights_.output.rows, T);
    next_ids_ = static_cast<int32_t*>(backend.alloc(static_cast<size_t>(T) * sizeof(int32_t)));
    buffers_.push_back(next_ids_);
    // ids, positions, slots and logit rows of at most T tokens, and the prefill tiles: a step of T tokens
    // splits into at most T / kAttentionTileRows + n_slot tiles, 4 ints each.
    const auto meta_bytes = static_cast<size_t>(4 * T + 4 * (T + limits.n_slot)) * sizeof(int32_t);
    meta_ = static_cast<int32_t*>(backend.alloc(meta_bytes));
    buffers_.push_back(meta_);
    upload_ = static_cast<int32_t*>(backend.alloc_host(meta_bytes));
    readback_ = static_cast<int32_t*>(backend.alloc_host(static_cast<size_t>(T) * sizeof(int32_t)));
}

LlamaModel::~LlamaModel() {
    // No exception may leave a destructor (it would end the program without the error's message, often while
    // that error unwinds the stack): on a failed device every call below fails with it, and nothing is left to
    // release.
    try {
        backend_.synchronize();
        backend_.graph_release(this);
        backend_.free_host(upload_);
        backend_.free_host(readback_);
        for (void* p : buffers_) backend_.free(p);
        if (device_weights_ != nullptr) backend_.free(device_weights_);
    } catch (const Error&) {
    }
}

TensorView LlamaModel::activation(int64_t cols, int64_t rows) {
    const DType act = backend_.activation_dtype();
    void* p = backend_.alloc(static_cast<size_t>(rows * cols) * dtype_size(act));
    buffers_.push_back(p);
    return make_view(p, act, rows, cols);
}

void LlamaModel::all_reduce(const TensorView& v) {
    if (comm_) comm_->all_reduce_sum(v);
}

void LlamaModel::set_collective_timing(bool on) {
    if (tp_) tp_->set_collective_timing(on);
}

double LlamaModel::collective_seconds() { return tp_ ? tp_->collective_seconds() : 0.0; }

void LlamaModel::copy_slot(int64_t src, int64_t dst, int64_t n_positions) {
    if (tp_) return tp_->copy_slot(src, dst, n_positions);
    LAMINA_CHECK(src >= 0 && src < kv_.n_slot && dst >= 0 && dst < kv_.n_slot && n_positions <= kv_.n_ctx);
    if (src == dst || n_positions <= 0) return;
    const size_t elem = dtype_size(kv_.dtype);
    const size_t bytes = static_cast<size_t>(n_positions * kv_.kv_dim) * elem;
    for (int64_t l = 0; l < kv_.n_layer; ++l) {
        const size_t from = static_cast<size_t>(kv_.offset(src, l, 0)) * elem, to = static_cast<size_t>(kv_.offset(dst, l, 0)) * elem;
        backend_.copy_device(static_cast<char*>(kv_.k) + to, static_cast<const char*>(kv_.k) + from, bytes);
        backend_.copy_device(static_cast<char*>(kv_.v) + to, static_cast<const char*>(kv_.v) + from, bytes);
    }
}

void LlamaModel::trace(const std::string& name, const TensorView& v) {
    if (on_intermediate) {
        backend_.synchronize();
        on_intermediate(name, v);
    }
}

StepTokens LlamaModel::upload_step(std::span<const int32_t> ids, std::span<const int32_t> positions,
                                   std::span<const int32_t> slots, std::span<const int32_t> logit_rows) {
    const ModelConfig& c = config_;
    const auto n = static_cast<int64_t>(positions.size());
    const auto m = static_cast<int64_t>(logit_rows.size());
    LAMINA_CHECK(n > 0 && n <= limits_.max_step_tokens && slots.size() == positions.size() &&
                 ids.size() == positions.size());
    LAMINA_CHECK(m > 0 && m <= n);
    for (int64_t t = 0; t < n; ++t) {
        LAMINA_CHECK(ids[t] >= 0 && ids[t] < c.n_vocab, "token id " + std::to_string(ids[t]));
        LAMINA_CHECK(positions[t] >= 0 && positions[t] < limits_.n_ctx, "position " + std::to_string(positions[t]));
        LAMINA_CHECK(slots[t] >= 0 && slots[t] < limits_.n_slot, "slot " + std::to_string(slots[t]));
    }
    for (int32_t r : logit_rows) LAMINA_CHECK(r >= 0 && r < n, "logit row " + std::to_string(r));
    // Tiles: runs of one slot at consecutive positions, cut every kAttentionTileRows tokens. A decode
    // step (every token its own sequence) gets none: the attention op then takes its per-token path.
    std::vector<int32_t> tiles;
    const bool decode = m == n && n <= limits_.n_slot;
    for (int64_t t = 0; t < n && !decode;) {
        int64_t e = t + 1;
        while (e < n && e - t < kAttentionTileRows && slots[e] == slots[t] && positions[e] == positions[e - 1] + 1) ++e;
        tiles.insert(tiles.end(), {static_cast<int32_t>(t), static_cast<int32_t>(e - t), slots[t], positions[t]});
        t = e;
    }
    // Packed as ids [n], positions [n], slots [n], logit rows [m], tiles: the offsets follow from the step's
    // shape, so a graph captured for a shape (run_step's key) reads each replay's values. One copy from a
    // page-locked staging buffer, rewritten once its last copy is done.
    backend_.wait(upload_fence_);
    int32_t* h = upload_;
    std::copy(ids.begin(), ids.end(), h);
    std::copy(positions.begin(), positions.end(), h + n);
    std::copy(slots.begin(), slots.end(), h + 2 * n);
    std::copy(logit_rows.begin(), logit_rows.end(), h + 3 * n);
    std::copy(tiles.begin(), tiles.end(), h + 3 * n + m);
    const size_t used = static_cast<size_t>(3 * n + m) + tiles.size();
    backend_.to_device_async(meta_, h, used * sizeof(int32_t));
    upload_fence_ = backend_.fence();
    logit_rows_ = meta_ + 3 * n;
    return StepTokens{meta_, meta_ + n, meta_ + 2 * n, n, meta_ + 3 * n + m, static_cast<int64_t>(tiles.size() / 4)};
}

void LlamaModel::run_step(const StepTokens& tok, int64_t n_logits, bool argmax) {
    // Steps with collectives run uncaptured (CPU ranks meet on the host; NCCL capture is untested).
    constexpr int64_t kKeyField = int64_t{1} << 20;
    const bool graphable = backend_.supports_graphs() && !on_intermediate && comm_ == nullptr &&
                           tok.n_tokens < kKeyField && tok.n_tiles < kKeyField && n_logits < kKeyField;
    if (!graphable) {
        step_ops(tok, n_logits, argmax);
        return;
    }
    // One graph per step shape (tokens, prefill tiles, logits rows, argmax or logits): shapes are baked
    // into a capture; ids, positions, slots and tiles are read from device buffers at each replay. Decode
    // steps are captured at once; a prefill shape only when it comes a second time, since a one-off
    // prompt length would pay for a capture it never replays.
    const int64_t key = (((tok.n_tiles * kKeyField + tok.n_tokens) * kKeyField + n_logits) << 1) | (argmax ? 1 : 0);
    if (backend_.graph_replay(this, key)) return;
    if (tok.n_tiles > 0 && ++prefill_shapes_seen_[key] < 2) {
        step_ops(tok, n_logits, argmax);
        return;
    }
    backend_.graph_begin();
    step_ops(tok, n_logits, argmax);
    backend_.graph_end(this, key);
    LAMINA_CHECK(backend_.graph_replay(this, key));
}

void LlamaModel::forward(std::span<const int32_t> ids, std::span<const int32_t> positions,
                         std::span<const int32_t> slots, std::span<const int32_t> logit_rows, float* logits) {
    if (tp_) return tp_->forward(ids, positions, slots, logit_rows, logits, on_intermediate);
    const StepTokens tok = upload_step(ids, positions, slots, logit_rows);
    const auto n_logits = static_cast<int64_t>(logit_rows.size());
    run_step(tok, n_logits, false);
    const size_t n_out = static_cast<size_t>(n_logits * config_.n_vocab);
    if (logits_.dtype == DType::F32) {
        backend_.to_host(logits, logits_.data, n_out * sizeof(float));
    } else {
        std::vector<uint16_t> tmp(n_out);
        backend_.to_host(tmp.data(), logits_.data, n_out * sizeof(uint16_t));
        convert_to_f32(logits_.dtype, tmp.data(), logits, n_out);
    }
}

void LlamaModel::forward_argmax(std::span<const int32_t> ids, std::span<const int32_t> positions,
                                std::span<const int32_t> slots, std::span<const int32_t> logit_rows,
                                int32_t* next_ids) {
    if (tp_) return tp_->forward_argmax(ids, positions, slots, logit_rows, next_ids, on_intermediate);
    const StepTokens tok = upload_step(ids, positions, slots, logit_rows);
    run_step(tok, static_cast<int64_t>(logit_rows.size()), true);
    read_next_ids(next_ids, logit_rows.size());
}

void LlamaModel::read_next_ids(int32_t* next_ids, size_t n) {
    // Into page-locked memory: the copy itself is a DMA with no staging on the host.
    backend_.to_host_async(readback_, next_ids_, n * sizeof(int32_t));
    backend_.wait(backend_.fence());
    std::copy_n(readback_, n, next_ids);
}

void LlamaModel::forward_sample(std::span<const int32_t> ids, std::span<const int32_t> positions,
                                std::span<const int32_t> slots, std::span<const int32_t> logit_rows,
                                std::span<const SampleRowParams> params, std::span<const double> uniforms,
                                int32_t* next_ids) {
    if (tp_) return tp_->forward_sample(ids, positions, slots, logit_rows, params, uniforms, next_ids, on_intermediate);
    LAMINA_CHECK(params.size() == logit_rows.size() && uniforms.size() == logit_rows.size());
    const StepTokens tok = upload_step(ids, positions, slots, logit_rows);
    const auto n = static_cast<int64_t>(logit_rows.size());
    run_step(tok, n, false);
    backend_.sample_rows(rows_of(logits_, n), params, uniforms, next_ids_);
    read_next_ids(next_ids, logit_rows.size());
}

// Whether this step takes the backend's fused decode ops of `mode` (Backend::FusedDecode): a decode step (a few
// tokens, no prefill tiles) with the ops around a matrix pass folded into it (Backend::decode_*). The
// plugin-off ablation and traced runs keep the plain ops, and so do tensor-parallel ranks (Full mode folds the
// residual add into o_proj and down, before the all-reduce; Epilogues only under tp_epilogues()).
bool LlamaModel::fused_decode(const StepTokens& tok, int64_t n_logits, Backend::FusedDecode mode) const {
    const bool rank_ok = comm_ == nullptr || (mode == Backend::FusedDecode::Epilogues && tp_epilogues());
    return backend_.fused_decode_mode() == mode && rmsnorm_plugin_ && rank_ok && !on_intermediate && tok.n_tiles == 0 &&
           tok.n_tokens <= kFusedDecodeMaxTokens && n_logits == tok.n_tokens;
}

void LlamaModel::fused_decode_ops(const StepTokens& tok, bool argmax) {
    const ModelConfig& c = config_;
    const int64_t n = tok.n_tokens;
    TensorView x = rows_of(x_, n), qkv = rows_of(qkv_, n), attn = rows_of(attn_, n), ff = rows_of(ff_, n);
    backend_.embedding(weights_.tok_embd, tok, x);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = weights_.layers[l];
        backend_.decode_qkv(x, L.attn_norm, c.rms_eps, L.wqkv, opt(L.bqkv), tok, rope_cos_sin_, attn_shape_, l, kv_, qkv);
        backend_.attention(qkv, tok, attn_shape_, l, kv_, attn);
        backend_.decode_matmul_add(attn, L.wo, opt(L.bo), x);
        backend_.decode_gate_up(x, L.ffn_norm, c.rms_eps, L.w_gate_up, opt(L.b_gate_up), ff);
        backend_.decode_matmul_add(ff, L.w_down, opt(L.b_down), x);
    }
    TensorView out = rows_of(logits_, n);
    backend_.decode_norm_matmul(x, logit_rows_, weights_.output_norm, c.rms_eps, weights_.output, out);
    if (argmax) backend_.argmax_rows(out, next_ids_);
}

// A decode step of one token as one kernel (Backend::decode_step), where the backend takes these shapes;
// the same exclusions as the fused decode ops.
bool LlamaModel::whole_step_decode(const StepTokens& tok, int64_t n_logits, bool argmax) {
    if (!rmsnorm_plugin_ || comm_ != nullptr || on_intermediate || tok.n_tiles != 0 || tok.n_tokens != 1 || n_logits != 1)
        return false;
    const DecodeStepBuffers buf{rows_of(x_, 1), rows_of(qkv_, 1), rows_of(attn_, 1), rows_of(ff_, 1), rows_of(logits_, 1)};
    if (!backend_.decode_step(weights_, config_.rms_eps, tok, rope_cos_sin_, attn_shape_, kv_, buf)) return false;
    ++whole_step_kernels_;
    if (argmax) backend_.argmax_rows(buf.logits, next_ids_);
    return true;
}

void LlamaModel::step_ops(const StepTokens& tok, int64_t n_logits, bool argmax) {
    if (whole_step_decode(tok, n_logits, argmax)) return;
    if (fused_decode(tok, n_logits, Backend::FusedDecode::Full)) return fused_decode_ops(tok, argmax);
    // The plain ops, or with RoPE + KV write and SwiGLU in the qkv and gate/up passes (FusedDecode::Epilogues).
    const bool epilogues = fused_decode(tok, n_logits, Backend::FusedDecode::Epilogues);
    const ModelConfig& c = config_;
    const int64_t n = tok.n_tokens;
    TensorView x = rows_of(x_, n), h = rows_of(h_, n), qkv = rows_of(qkv_, n), attn = rows_of(attn_, n);
    TensorView proj = rows_of(proj_, n), gate_up = rows_of(gate_up_, n), ff = rows_of(ff_, n);
    const float eps = c.rms_eps;

    // residual += sublayer output; h = rms_norm(residual) * w — fused, or as its unfused ops.
    auto add_and_norm = [&](const TensorView& w) {
        if (rmsnorm_plugin_) {
            backend_.rms_norm_fused_add(x, proj, w, eps, h);
        } else {
            backend_.add(x, proj);
            backend_.rms_norm_unfused(x, w, eps, h);
        }
    };

    backend_.embedding(weights_.tok_embd, tok, x);
    all_reduce(x);  // vocabulary-split table: a rank's rows for its ids, zeros for the others'
    trace("embd", x);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = weights_.layers[l];
        const std::string prefix = "blk." + std::to_string(l) + ".";
        if (l > 0) add_and_norm(L.attn_norm);
        else if (rmsnorm_plugin_) backend_.rms_norm(x, L.attn_norm, eps, h);
        else backend_.rms_norm_unfused(x, L.attn_norm, eps, h);
        trace(prefix + "attn_norm", h);
        if (epilogues) {
            backend_.decode_qkv(h, TensorView{}, eps, L.wqkv, opt(L.bqkv), tok, rope_cos_sin_, attn_shape_, l, kv_, qkv);
        } else {
            backend_.matmul(h, L.wqkv, opt(L.bqkv), qkv);
            backend_.rope_kv_write(qkv, tok, rope_cos_sin_, attn_shape_, l, kv_);
        }
        trace(prefix + "qkv_rope", qkv);
        backend_.attention_out_proj(qkv, tok, attn_shape_, l, kv_, attn, L.wo, opt(L.bo), proj);
        trace(prefix + "attn", attn);
        all_reduce(proj);  // row-parallel o_proj: partial sums over each rank's heads
        trace(prefix + "attn_out", proj);

        add_and_norm(L.ffn_norm);
        trace(prefix + "ffn_norm", h);
        if (epilogues) {
            backend_.decode_gate_up(h, TensorView{}, eps, L.w_gate_up, opt(L.b_gate_up), ff);
        } else {
            backend_.matmul(h, L.w_gate_up, opt(L.b_gate_up), gate_up);
            backend_.swiglu(gate_up, ff);
        }
        backend_.matmul(ff, L.w_down, opt(L.b_down), proj);
        all_reduce(proj);  // row-parallel down: partial sums over each rank's n_ff columns
        trace(prefix + "ffn_out", proj);
    }
    add_and_norm(weights_.output_norm);
    trace("output_norm", h);

    TensorView last = rows_of(last_, n_logits), out = rows_of(logits_, n_logits);
    backend_.gather_rows(h, logit_rows_, n_logits, last);
    if (comm_) {  // vocabulary-split LM head: each rank's columns, gathered in rank order
        TensorView part = rows_of(logits_part_, n_logits);
        backend_.matmul(last, weights_.output, nullptr, part);
        comm_->all_gather_cols(part, out);
    } else {
        backend_.matmul(last, weights_.output, nullptr, out);
    }
    trace("logits", out);
    if (argmax) backend_.argmax_rows(out, next_ids_);
}

}  // namespace lamina
