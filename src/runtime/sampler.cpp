#include "runtime/sampler.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace lamina {

void SamplingParams::validate() const {
    if (!(temperature >= 0.0f) || !std::isfinite(temperature))
        throw Error("--temperature must be >= 0, got " + std::to_string(temperature));
    if (top_k < 0) throw Error("--top_k must be >= 0, got " + std::to_string(top_k));
    if (!(top_p >= 0.0f && top_p <= 1.0f)) throw Error("--top_p must be in [0, 1], got " + std::to_string(top_p));
    if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
        throw Error("--repetition_penalty must be > 0, got " + std::to_string(repetition_penalty));
}

SampleRowParams SamplingParams::row(std::span<const int32_t> history) const {
    SampleRowParams r;
    r.temperature = temperature;
    r.top_k = top_k;
    r.top_p = top_p;
    r.repetition_penalty = repetition_penalty;
    r.history = history;
    return r;
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

double Sampler::next_uniform() {
    // What std::uniform_real_distribution<double>(0, sum) scales by sum: one 64-bit draw, 53 bits kept.
    if (p_.greedy()) return 0.0;
    return std::generate_canonical<double, std::numeric_limits<double>::digits>(rng_);
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
    const SampleRowParams row = p_.row(history);
    const double u = next_uniform();
    return sample_row(logits, row, u, candidates_);
}

}  // namespace lamina
