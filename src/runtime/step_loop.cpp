#include "runtime/step_loop.h"

#include <algorithm>
#include <chrono>

#include "backend/cpu/cpu_sampling.h"
#include "core/error.h"

namespace lamina {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

SampleRowParams greedy_row() {
    SampleRowParams p;
    p.temperature = 0.0f;
    return p;
}
}  // namespace

SampleRowParams SequencePolicy::sample_params(const Sequence&, double&) {
    LAMINA_CHECK(false, "a policy whose output is Sample must override sample_params");
    return {};
}

StepLoop::StepLoop(StepModel& model) : model_(model), packer_(model.limits().max_step_tokens) {
    // A decode step holds every sequence (a beam group needs all its beams' rows at once).
    LAMINA_CHECK(model.limits().max_step_tokens >= model.limits().n_slot);
}

Sequence& StepLoop::add(Sequence seq) {
    LAMINA_CHECK(seq.policy != nullptr && !seq.pending().empty() && !seq.finished);
    LAMINA_CHECK(seq.slot >= 0 && seq.slot < model_.limits().n_slot, "slot " + std::to_string(seq.slot));
    for (const auto& s : live_)
        LAMINA_CHECK(s->finished || s->slot != seq.slot, "slot " + std::to_string(seq.slot) + " is taken");
    live_.push_back(std::make_unique<Sequence>(std::move(seq)));
    return *live_.back();
}

void StepLoop::run() {
    while (step()) {
    }
}

bool StepLoop::step() {
    if (live_.empty()) return false;
    const bool prefill = std::any_of(live_.begin(), live_.end(), [](const auto& s) { return !s->finished && s->prefilling(); });
    pack(prefill);
    if (packed_.empty()) {  // every sequence left was finished between steps by its owner
        std::erase_if(live_, [](const auto& s) { return s->finished; });
        return !live_.empty();
    }
    const double c0 = prefill ? 0.0 : model_.collective_seconds();  // reading it may synchronize: outside the step's time
    const auto t0 = Clock::now();
    forward(prefill);
    for (auto& [seq, n] : packed_) {
        const auto from_prompt = static_cast<size_t>(std::clamp<int64_t>(seq->n_prompt - seq->n_cached, 0, static_cast<int64_t>(n)));
        stats_.prompt_tokens += static_cast<int64_t>(from_prompt);
        stats_.generated_tokens += static_cast<int64_t>(n - from_prompt);
        seq->n_cached += static_cast<int64_t>(n);
    }

    hand_out();

    const double seconds = seconds_since(t0);
    if (prefill) {
        stats_.prefill_seconds += seconds;
        ++stats_.prefill_steps;
    } else {
        stats_.decode_seconds += seconds;
        stats_.decode_collective_seconds += model_.collective_seconds() - c0;
        ++stats_.decode_steps;
    }
    std::erase_if(live_, [](const auto& s) { return s->finished; });
    return true;
}

void StepLoop::hand_out() {
    // Each policy gets the results of its sequences together, policies in the order of their first
    // result. Usually they are together already (a beam group's sequences join side by side).
    policies_.clear();
    bool grouped = true;
    for (size_t r = 0; r < results_.size(); ++r) {
        SequencePolicy* policy = results_[r].seq->policy;
        if (r > 0 && results_[r - 1].seq->policy == policy) continue;
        if (std::find(policies_.begin(), policies_.end(), policy) == policies_.end()) policies_.push_back(policy);
        else grouped = false;
    }
    if (!grouped) {
        auto rank = [&](const StepResult& r) { return std::find(policies_.begin(), policies_.end(), r.seq->policy) - policies_.begin(); };
        std::stable_sort(results_.begin(), results_.end(), [&](const StepResult& a, const StepResult& b) { return rank(a) < rank(b); });
    }
    for (size_t r0 = 0; r0 < results_.size();) {
        size_t r1 = r0 + 1;
        while (r1 < results_.size() && results_[r1].seq->policy == results_[r0].seq->policy) ++r1;
        results_[r0].seq->policy->on_step(*this, std::span<const StepResult>(results_).subspan(r0, r1 - r0));
        r0 = r1;
    }
}

void StepLoop::pack(bool prefill) {
    packer_.clear();
    packed_.clear();
    results_.clear();
    for (const auto& s : live_) {
        if (s->finished || s->prefilling() != prefill) continue;
        const std::span<const int32_t> pending = s->pending();
        const size_t n = packer_.add(pending, static_cast<int32_t>(s->n_cached), s->slot);
        if (n == 0) break;
        packed_.emplace_back(s.get(), n);
        if (n == pending.size()) results_.push_back({s.get(), -1, {}});
        if (packer_.room() == 0) break;
    }
}

void StepLoop::forward(bool prefill) {
    const PrefillPacker& p = packer_;
    const size_t n_rows = results_.size();
    // A decode step holds one token of each sequence in it, each with a logits row.
    LAMINA_CHECK(prefill || (n_rows == p.ids.size() && n_rows == packed_.size()));
    ids_out_.resize(std::max<size_t>(n_rows, 1));
    if (n_rows == 0) {  // a chunk in the middle of a long prompt: its last token's choice is unused
        const int32_t last = static_cast<int32_t>(p.ids.size() - 1);
        model_.forward_argmax({StepKind::Prefill, p.ids, p.positions, p.slots, std::span<const int32_t>(&last, 1)},
                              ids_out_.data());
        return;
    }
    const StepInput step{prefill ? StepKind::Prefill : StepKind::Decode, p.ids, p.positions, p.slots, p.logit_rows};
    StepOutput kind = StepOutput::Argmax;
    for (const StepResult& r : results_) kind = std::max(kind, r.seq->policy->output());

    if (kind == StepOutput::Argmax) {
        model_.forward_argmax(step, ids_out_.data());
    } else if (kind == StepOutput::Sample) {
        sample_params_.clear();
        uniforms_.clear();
        for (const StepResult& r : results_) {
            double u = 0.0;
            const bool draws = r.seq->policy->output() == StepOutput::Sample;
            sample_params_.push_back(draws ? r.seq->policy->sample_params(*r.seq, u) : greedy_row());
            uniforms_.push_back(u);
        }
        model_.forward_sample(step, sample_params_, uniforms_, ids_out_.data());
    } else {
        const auto n_vocab = static_cast<size_t>(model_.config().n_vocab);
        logits_.resize(n_rows * n_vocab);
        model_.forward(step, logits_.data());
        for (size_t r = 0; r < n_rows; ++r) {
            StepResult& res = results_[r];
            const std::span<float> row(logits_.data() + r * n_vocab, n_vocab);
            switch (res.seq->policy->output()) {
                case StepOutput::Logits: res.logits = row; break;
                case StepOutput::Argmax: ids_out_[r] = argmax(row); break;
                case StepOutput::Sample: {
                    double u = 0.0;
                    const SampleRowParams sp = res.seq->policy->sample_params(*res.seq, u);
                    ids_out_[r] = sample_row(row, sp, u, candidates_);
                    break;
                }
            }
        }
    }
    for (size_t r = 0; r < n_rows; ++r)
        if (results_[r].logits.empty()) results_[r].id = ids_out_[r];
}

}  // namespace lamina
