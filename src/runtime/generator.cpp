#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "core/error.h"
#include "runtime/kv_budget.h"
#include "runtime/sampling_policy.h"
#include "runtime/step_loop.h"

namespace lamina {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

ModelLimits limits_for(const Engine& e, Backend& backend, int64_t n_slot, uint64_t kv_cache_bytes) {
    if (n_slot < 1 || n_slot > e.limits().max_batch_size)
        throw Error("batch size " + std::to_string(n_slot) + " is outside [1, max_batch_size " +
                    std::to_string(e.limits().max_batch_size) + "] of the engine");
    return plan_model_limits(e, n_slot, backend.kv_cache_dtype(), kv_cache_bytes);
}
}  // namespace

Generator::Generator(const Engine& engine, Backend& backend, int64_t n_slot, uint64_t kv_cache_bytes)
    : engine_(engine), runner_(make_step_runner(engine, backend, limits_for(engine, backend, n_slot, kv_cache_bytes))) {}

void Generator::check_prompt(const std::vector<int32_t>& prompt, size_t index) const {
    if (prompt.empty()) throw Error("prompt " + std::to_string(index) + " is empty");
    const int64_t max_in = engine_.limits().max_input_len;
    if (static_cast<int64_t>(prompt.size()) > max_in)
        throw Error("prompt " + std::to_string(index) + " has " + std::to_string(prompt.size()) +
                    " tokens, more than the engine's max_input_len " + std::to_string(max_in));
    for (int32_t id : prompt)
        if (id < 0 || id >= runner_->config().n_vocab)
            throw Error("prompt " + std::to_string(index) + " has token id " + std::to_string(id) + " outside the vocabulary");
}

std::vector<std::vector<int32_t>> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                      const GenerationParams& params,
                                                      const std::function<void(size_t, int32_t)>& on_token) {
    params.sampling.validate();
    if (params.max_new_tokens < 1 || params.max_new_tokens > engine_.limits().max_output_len)
        throw Error("max new tokens " + std::to_string(params.max_new_tokens) + " is outside [1, max_output_len " +
                    std::to_string(engine_.limits().max_output_len) + "] of the engine");
    for (size_t i = 0; i < prompts.size(); ++i) {
        check_prompt(prompts[i], i);
        check_fits_kv_cache(runner_->limits(), static_cast<int64_t>(prompts[i].size()), params.max_new_tokens, i);
    }

    stats_ = {};
    const auto t_start = Clock::now();
    const auto n_slot = static_cast<size_t>(runner_->limits().n_slot);
    std::vector<std::vector<int32_t>> outputs(prompts.size());
    const size_t first_group = std::min(prompts.size(), n_slot);
    size_t n_first_tokens = 0;  // sequences of the first group with their first token
    auto on_seq_token = [&](const Sequence& seq, int32_t id) {
        outputs[seq.index].push_back(id);
        ++stats_.generated_tokens;
        if (on_token) on_token(seq.index, id);
        if (seq.n_generated() == 1 && seq.index < first_group && ++n_first_tokens == first_group)
            stats_.first_token_seconds = seconds_since(t_start);
    };
    std::function<bool(const Sequence&)> stop_requested;
    if (params.stop_requested) stop_requested = [&](const Sequence& seq) { return params.stop_requested(seq.index); };

    // Prompts in groups of n_slot: the next group joins once the last one has finished. Sequence i of a
    // group uses KV slot i.
    StepLoop loop(*runner_);
    for (size_t g0 = 0; g0 < prompts.size(); g0 += n_slot) {
        const size_t g1 = std::min(prompts.size(), g0 + n_slot);
        std::deque<SamplingPolicy> policies;
        for (size_t i = g0; i < g1; ++i) {
            SamplingPolicy& policy =
                policies.emplace_back(params.sampling, params.max_new_tokens, params.stop_ids, on_seq_token, stop_requested);
            loop.add(Sequence(prompts[i], static_cast<int32_t>(i - g0), &policy, i));
        }
        loop.run();
    }
    const StepStats& s = loop.stats();
    stats_.prompt_tokens = s.prompt_tokens;
    stats_.prefill_seconds = s.prefill_seconds;
    stats_.decode_seconds = s.decode_seconds;
    stats_.decode_steps = s.decode_steps;
    stats_.decode_collective_seconds = s.decode_collective_seconds;
    return outputs;
}

std::vector<float> Generator::prompt_logits(const std::vector<int32_t>& prompt) {
    check_prompt(prompt, 0);
    const int64_t n_vocab = runner_->config().n_vocab;
    const int64_t step = runner_->limits().max_step_tokens;
    std::vector<float> out(prompt.size() * static_cast<size_t>(n_vocab));
    std::vector<int32_t> ids, pos, slots, rows;
    for (size_t c0 = 0; c0 < prompt.size(); c0 += static_cast<size_t>(step)) {
        const size_t c1 = std::min(prompt.size(), c0 + static_cast<size_t>(step));
        ids.assign(prompt.begin() + static_cast<std::ptrdiff_t>(c0), prompt.begin() + static_cast<std::ptrdiff_t>(c1));
        pos.clear(); slots.assign(ids.size(), 0); rows.clear();
        for (size_t j = c0; j < c1; ++j) {
            pos.push_back(static_cast<int32_t>(j));
            rows.push_back(static_cast<int32_t>(j - c0));
        }
        runner_->forward({StepKind::Prefill, ids, pos, slots, rows}, out.data() + c0 * static_cast<size_t>(n_vocab));
    }
    return out;
}

}  // namespace lamina
