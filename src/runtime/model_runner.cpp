#include "runtime/model_runner.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "parallel/communicator.h"

namespace lamina {

namespace {
const EngineRank& rank_of(const Engine& engine, const Communicator* comm) {
    LAMINA_CHECK(comm == nullptr ? engine.tp_size() == 1 : comm->size() == engine.tp_size(),
                 "a runner of a tensor-parallel engine needs its rank's communicator (make_step_runner)");
    return engine.rank(comm ? comm->rank() : 0);
}
}  // namespace

ModelRunner::ModelRunner(const Engine& engine, Backend& backend, const ModelLimits& limits, Communicator* comm)
    : config_(rank_of(engine, comm).config),
      backend_(backend),
      limits_(limits),
      weights_(SharedWeights::get(engine, comm ? comm->rank() : 0, backend)),
      kv_(backend, backend.kv_cache_dtype(), limits.n_slot, config_.n_layer, limits.n_ctx, config_.kv_dim()),
      pass_{config_, weights_->views(), kv_.cache(), rope_cos_sin_,
            AttentionShape{config_.n_head, config_.n_head_kv, config_.head_dim,
                           1.0f / std::sqrt(static_cast<float>(config_.head_dim))},
            engine.rmsnorm_plugin(), comm, {}} {
    LAMINA_CHECK(limits.n_slot > 0 && limits.n_ctx > 0 && limits.max_step_tokens > 0);
    const ModelConfig& c = config_;
    try {
        const std::vector<float> table = llama_rope_table(c, limits.n_ctx);
        void* rope = backend.alloc(table.size() * sizeof(float));
        buffers_.push_back(rope);
        backend.to_device(rope, table.data(), table.size() * sizeof(float));
        rope_cos_sin_ = make_view(rope, DType::F32, limits.n_ctx, c.head_dim);

        const int64_t T = limits.max_step_tokens;
        buf_.x = activation(c.n_embd, T);
        buf_.h = activation(c.n_embd, T);
        buf_.qkv = activation(c.qkv_dim(), T);
        buf_.attn = activation(c.q_dim(), T);
        buf_.proj = activation(c.n_embd, T);
        buf_.gate_up = activation(2 * c.n_ff, T);
        buf_.ff = activation(c.n_ff, T);
        buf_.last = activation(c.n_embd, T);
        buf_.logits = activation(c.n_vocab, T);
        if (comm) buf_.logits_part = activation(weights_->views().output.rows, T);
        next_ids_ = static_cast<int32_t*>(backend.alloc(static_cast<size_t>(T) * sizeof(int32_t)));
        buffers_.push_back(next_ids_);
        // ids, positions, slots and logit rows of at most T tokens, and the prefill tiles: a step of T tokens
        // splits into at most T / kAttentionTileRows + n_slot tiles, 4 ints each.
        const auto meta_bytes = static_cast<size_t>(4 * T + 4 * (T + limits.n_slot)) * sizeof(int32_t);
        meta_ = static_cast<int32_t*>(backend.alloc(meta_bytes));
        buffers_.push_back(meta_);
        upload_ = static_cast<int32_t*>(backend.alloc_host(meta_bytes));
        readback_ = static_cast<int32_t*>(backend.alloc_host(static_cast<size_t>(T) * sizeof(int32_t)));
    } catch (...) {
        for (void* p : buffers_) backend.free(p);
        if (upload_) backend.free_host(upload_);
        throw;
    }
}

ModelRunner::~ModelRunner() {
    // No exception may leave a destructor (it would end the program without the error's message, often while
    // that error unwinds the stack): on a failed device every call below fails with it, and nothing is left to
    // release.
    try {
        backend_.synchronize();
        backend_.graph_release(this);
        backend_.free_host(upload_);
        backend_.free_host(readback_);
        for (void* p : buffers_) backend_.free(p);
    } catch (const Error&) {
    }
}

TensorView ModelRunner::activation(int64_t cols, int64_t rows) {
    const DType act = backend_.activation_dtype();
    void* p = backend_.alloc(static_cast<size_t>(rows * cols) * dtype_size(act));
    buffers_.push_back(p);
    return make_view(p, act, rows, cols);
}

StepTokens ModelRunner::upload_step(const StepInput& step) {
    const ModelConfig& c = config_;
    const std::span<const int32_t> ids = step.ids, positions = step.positions, slots = step.slots,
                                   logit_rows = step.logit_rows;
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
    // A decode step: one token of each sequence, every one with logits.
    LAMINA_CHECK(step.kind != StepKind::Decode || (m == n && n <= limits_.n_slot), "a decode step of " +
                 std::to_string(n) + " tokens with " + std::to_string(m) + " logit rows");
    // Tiles (prefill and mixed steps): runs of one slot at consecutive positions, cut every kAttentionTileRows
    // tokens. A decode step gets none: the attention op then takes its per-token path.
    std::vector<int32_t> tiles;
    for (int64_t t = 0; t < n && step.kind != StepKind::Decode;) {
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

void ModelRunner::step_ops(const StepTokens& tok, int64_t n_logits, bool argmax) {
    llama_forward(backend_, pass_, buf_, tok, logit_rows_, n_logits);
    if (argmax) backend_.argmax_rows(rows_of(buf_.logits, n_logits), next_ids_);
}

void ModelRunner::run_step(const StepTokens& tok, int64_t n_logits, bool argmax) {
    // Steps with collectives run uncaptured (CPU ranks meet on the host; NCCL capture is untested).
    constexpr int64_t kKeyField = int64_t{1} << 20;
    const bool graphable = backend_.supports_graphs() && !pass_.on_intermediate && pass_.comm == nullptr &&
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

void ModelRunner::forward(const StepInput& step, float* logits) {
    const StepTokens tok = upload_step(step);
    const auto n_logits = static_cast<int64_t>(step.logit_rows.size());
    run_step(tok, n_logits, false);
    const size_t n_out = static_cast<size_t>(n_logits * config_.n_vocab);
    if (buf_.logits.dtype == DType::F32) {
        backend_.to_host(logits, buf_.logits.data, n_out * sizeof(float));
    } else {
        std::vector<uint16_t> tmp(n_out);
        backend_.to_host(tmp.data(), buf_.logits.data, n_out * sizeof(uint16_t));
        convert_to_f32(buf_.logits.dtype, tmp.data(), logits, n_out);
    }
}

void ModelRunner::forward_argmax(const StepInput& step, int32_t* next_ids) {
    const StepTokens tok = upload_step(step);
    run_step(tok, static_cast<int64_t>(step.logit_rows.size()), true);
    read_next_ids(next_ids, step.logit_rows.size());
}

void ModelRunner::read_next_ids(int32_t* next_ids, size_t n) {
    // Into page-locked memory: the copy itself is a DMA with no staging on the host.
    backend_.to_host_async(readback_, next_ids_, n * sizeof(int32_t));
    backend_.wait(backend_.fence());
    std::copy_n(readback_, n, next_ids);
}

void ModelRunner::forward_sample(const StepInput& step, std::span<const SampleRowParams> params,
                                 std::span<const double> uniforms, int32_t* next_ids) {
    LAMINA_CHECK(params.size() == step.logit_rows.size() && uniforms.size() == step.logit_rows.size());
    const StepTokens tok = upload_step(step);
    const auto n = static_cast<int64_t>(step.logit_rows.size());
    run_step(tok, n, false);
    backend_.sample_rows(rows_of(buf_.logits, n), params, uniforms, next_ids_);
    read_next_ids(next_ids, step.logit_rows.size());
}

}  // namespace lamina
