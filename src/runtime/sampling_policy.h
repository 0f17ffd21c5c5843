// The policy of one sequence generated token by token: the greedy id, or a draw from its own seeded
// Sampler (runtime/sampler.h), so a sequence gets the same tokens whatever it is batched with. The
// sequence stops after a stop id (kept, as HF does), after max_new_tokens, or when asked to.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "runtime/sampler.h"
#include "runtime/sequence.h"

namespace lamina {

// One object per sequence: its Sampler's draws are that sequence's own.
class SamplingPolicy : public SequencePolicy {
public:
    // on_token: after each token is appended. stop_requested: asked after on_token unless a stop id or
    // the budget already ends the sequence; true ends it there (stop strings). Either may be empty.
    SamplingPolicy(const SamplingParams& params, int64_t max_new_tokens, std::span<const int32_t> stop_ids,
                   std::function<void(const Sequence&, int32_t)> on_token = {},
                   std::function<bool(const Sequence&)> stop_requested = {});

    // Argmax for greedy without a repetition penalty (only the id comes back), else Sample.
    StepOutput output() const override;
    SampleRowParams sample_params(const Sequence& seq, double& uniform) override;
    void on_step(StepLoop& loop, std::span<const StepResult> results) override;

private:
    Sampler sampler_;
    int64_t max_new_tokens_;
    std::span<const int32_t> stop_ids_;
    std::function<void(const Sequence&, int32_t)> on_token_;
    std::function<bool(const Sequence&)> stop_requested_;
};

}  // namespace lamina
