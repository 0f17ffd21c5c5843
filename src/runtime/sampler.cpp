#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

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

int32_t argmax(std::span<const float> logits) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, float penalty) {
    if (penalty == 1.0f) return;
    std::unordered_set<int32_t> seen(history.begin(), history.end());
    for (int32_t id : seen) {
        if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
        float& l = logits[static_cast<size_t>(id)];
        l = l < 0.0f ? l * penalty : l / penalty;
    }
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
    apply_repetition_penalty(logits, history, p_.repetition_penalty);
    if (p_.greedy()) return argmax(logits);

    // Temperature, then the top-k candidates sorted by logit (all of them when top_k == 0).
    const size_t n = logits.size();
    const size_t k = p_.top_k > 0 ? std::min(n, static_cast<size_t>(p_.top_k)) : n;
    candidates_.resize(n);
    for (size_t i = 0; i < n; ++i) candidates_[i] = {logits[i] / p_.temperature, static_cast<int32_t>(i)};
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k), candidates_.end(), by_logit);
    candidates_.resize(k);

    // Softmax over the candidates.
    const float max_logit = candidates_[0].first;
    double sum = 0.0;
    for (auto& c : candidates_) {
        c.first = std::exp(c.first - max_logit);
        sum += c.first;
    }
    for (auto& c : candidates_) c.first = static_cast<float>(c.first / sum);

    // Top-p: the smallest prefix whose probability reaches p (always at least one token).
    if (p_.top_p > 0.0f && p_.top_p < 1.0f) {
        double cum = 0.0;
        size_t keep = 0;
        while (keep < candidates_.size()) {
            cum += candidates_[keep++].first;
            if (cum >= p_.top_p) break;
        }
        candidates_.resize(keep);
        sum = cum;
    } else {
        sum = 1.0;
    }
    std::uniform_real_distribution<double> uniform(0.0, sum);
    double r = uniform(rng_);
    for (const auto& c : candidates_) {
        r -= c.first;
        if (r <= 0.0) return c.second;
    }
    return candidates_.back().second;
}

}  // namespace lamina
