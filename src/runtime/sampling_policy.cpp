#include "runtime/sampling_policy.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace lamina {

SamplingPolicy::SamplingPolicy(const SamplingParams& params, int64_t max_new_tokens, std::span<const int32_t> stop_ids,
                               std::function<void(const Sequence&, int32_t)> on_token,
                               std::function<bool(const Sequence&)> stop_requested)
    : sampler_(params), max_new_tokens_(max_new_tokens), stop_ids_(stop_ids), on_token_(std::move(on_token)),
      stop_requested_(std::move(stop_requested)) {
    LAMINA_CHECK(max_new_tokens_ >= 1);
}

StepOutput SamplingPolicy::output() const {
    const SamplingParams& p = sampler_.params();
    return p.greedy() && p.repetition_penalty == 1.0f ? StepOutput::Argmax : StepOutput::Sample;
}

SampleRowParams SamplingPolicy::sample_params(const Sequence& seq, double& uniform) {
    uniform = sampler_.next_uniform();
    return sampler_.params().row(seq.tokens);
}

void SamplingPolicy::on_step(StepLoop&, std::span<const StepResult> results) {
    for (const StepResult& r : results) {
        Sequence& seq = *r.seq;
        seq.tokens.push_back(r.id);
        if (on_token_) on_token_(seq, r.id);
        seq.finished = std::find(stop_ids_.begin(), stop_ids_.end(), r.id) != stop_ids_.end() ||
                       seq.n_generated() >= max_new_tokens_ || (stop_requested_ && stop_requested_(seq));
    }
}

}  // namespace lamina
