// Token sampling on the CPU: the reference math of Backend::sample_rows, shared with runtime's Sampler.
#include "backend/cpu/cpu_sampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace lamina {

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

double sample_candidates(std::span<const float> logits, const SampleRowParams& p,
                         std::vector<std::pair<float, int32_t>>& candidates) {
    // Temperature, then the top-k candidates sorted by logit (all of them when top_k == 0).
    const size_t n = logits.size();
    const size_t k = p.top_k > 0 ? std::min(n, static_cast<size_t>(p.top_k)) : n;
    candidates.resize(n);
    for (size_t i = 0; i < n; ++i) candidates[i] = {logits[i] / p.temperature, static_cast<int32_t>(i)};
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(k), candidates.end(), by_logit);
    candidates.resize(k);

    // Softmax over the candidates.
    const float max_logit = candidates[0].first;
    double sum = 0.0;
    for (auto& c : candidates) {
        c.first = std::exp(c.first - max_logit);
        sum += c.first;
    }
    for (auto& c : candidates) c.first = static_cast<float>(c.first / sum);

    // Top-p: the smallest prefix whose probability reaches p (always at least one token).
    if (p.top_p > 0.0f && p.top_p < 1.0f) {
        double cum = 0.0;
        size_t keep = 0;
        while (keep < candidates.size()) {
            cum += candidates[keep++].first;
            if (cum >= p.top_p) break;
        }
        candidates.resize(keep);
        return cum;
    }
    return 1.0;
}

int32_t draw_candidate(std::span<const std::pair<float, int32_t>> candidates, double mass, double u) {
    // r = u * mass is what std::uniform_real_distribution<double>(0, mass) makes of the same u.
    double r = u * mass;
    for (const auto& c : candidates) {
        r -= c.first;
        if (r <= 0.0) return c.second;
    }
    return candidates.back().second;
}

int32_t sample_row(std::span<float> logits, const SampleRowParams& p, double u,
                   std::vector<std::pair<float, int32_t>>& candidates) {
    apply_repetition_penalty(logits, p.history, p.repetition_penalty);
    if (p.greedy()) return argmax(logits);
    const double mass = sample_candidates(logits, p, candidates);
    return draw_candidate(candidates, mass, u);
}

void CpuBackend::sample_rows(const TensorView& logits, std::span<const SampleRowParams> params,
                             std::span<const double> uniforms, int32_t* ids) {
    LAMINA_CHECK(static_cast<int64_t>(params.size()) == logits.rows && uniforms.size() == params.size(),
                 std::to_string(logits.rows) + " rows, " + std::to_string(params.size()) + " params, " +
                     std::to_string(uniforms.size()) + " uniforms");
    LAMINA_CHECK(logits.cols > 0);
    const size_t n = static_cast<size_t>(logits.cols);
    sampling_row_.resize(n);
    const size_t row_bytes = static_cast<size_t>(logits.row_stride) * dtype_size(logits.dtype);
    for (int64_t r = 0; r < logits.rows; ++r) {
        // A copy, widened to f32: the penalty is applied in place and the caller's logits stay as they are.
        convert_to_f32(logits.dtype, static_cast<const char*>(logits.data) + r * row_bytes, sampling_row_.data(), n);
        ids[r] = sample_row(sampling_row_, params[static_cast<size_t>(r)], uniforms[static_cast<size_t>(r)], sampling_candidates_);
    }
}

}  // namespace lamina
