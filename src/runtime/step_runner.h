// What the step loop drives: one forward step over a flat batch of tokens of several sequences, each in its KV
// slot. ModelRunner (runtime/model_runner.h) runs it on one backend; TpRunner (parallel/tp_runner.h) runs the
// ranks of a tensor-parallel engine, each a ModelRunner, behind the same interface. make_step_runner picks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "backend/backend.h"
#include "model/model_config.h"

namespace lamina {

class Engine;

struct ModelLimits {
    int64_t n_slot = 1;           // sequences held at once (KV slots)
    int64_t n_ctx = 0;            // positions per slot
    int64_t max_step_tokens = 0;  // tokens per forward step (prefill is chunked to this)
};

// What a step holds, as its caller knows it: prompt tokens only (Prefill), one token of each of several
// sequences at their next position (Decode), or both (Mixed). Decode steps take the one-token attention path
// and are captured into a graph at once.
enum class StepKind { Prefill, Decode, Mixed };

// One step's tokens on the host: token t is ids[t] at positions[t] in KV slot slots[t]; logits (or the
// ids chosen from them) come back for the tokens at indices logit_rows, in that order.
struct StepInput {
    StepKind kind = StepKind::Prefill;
    std::span<const int32_t> ids, positions, slots, logit_rows;
};

class StepRunner {
public:
    virtual ~StepRunner() = default;

    // Writes the logits of the logit rows into `logits` (host, [logit_rows.size(), n_vocab], f32).
    virtual void forward(const StepInput& step, float* logits) = 0;
    // Only the greedy choice (argmax of each logits row, on the backend) comes back: logit_rows.size() ids.
    virtual void forward_argmax(const StepInput& step, int32_t* next_ids) = 0;
    // Each logits row r sampled on the backend (Backend::sample_rows with params[r] and uniforms[r]).
    virtual void forward_sample(const StepInput& step, std::span<const SampleRowParams> params,
                                std::span<const double> uniforms, int32_t* next_ids) = 0;
    // Copies positions [0, n_positions) of KV slot src into slot dst (beam search forks a hypothesis so).
    virtual void copy_slot(int64_t src, int64_t dst, int64_t n_positions) = 0;

    // Time spent in collectives while timing is on (tensor parallelism; 0 otherwise).
    virtual void set_collective_timing(bool /*on*/) {}
    virtual double collective_seconds() { return 0.0; }

    // Called after every named intermediate ("blk.3.attn_out", ...) of rank 0, so a run can be diffed layer
    // by layer against Hugging Face; the step then takes the plain ops and synchronizes. Off when empty.
    using IntermediateHook = std::function<void(const std::string& name, const TensorView& value)>;
    virtual void set_on_intermediate(IntermediateHook hook) = 0;

    virtual const ModelConfig& config() const = 0;  // the whole model's
    virtual const ModelLimits& limits() const = 0;
};

// A runner for `engine` on `backend`: a ModelRunner, or a TpRunner when the engine has tp_size > 1 (its rank 0
// on `backend`, the others on backends of the same kind).
std::unique_ptr<StepRunner> make_step_runner(const Engine& engine, Backend& backend, const ModelLimits& limits);

}  // namespace lamina
