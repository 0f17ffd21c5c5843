// Token sampling as a chain of small stages, in Hugging Face's order: repetition penalty,
// temperature, top-k, top-p, then a draw from an explicitly seeded RNG — or argmax when greedy.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/cpu/cpu_sampling.h"

namespace lamina {

struct SamplingParams {
    float temperature = 1.0f;         // 0 means greedy
    int32_t top_k = 1;                // 1 means greedy; 0 means no limit (TensorRT-LLM's run.py default is 1)
    float top_p = 0.0f;               // 0 or 1 means no nucleus cut
    float repetition_penalty = 1.0f;  // HF semantics: seen tokens' logits divided (>0) or multiplied (<0)
    uint64_t seed = 0;
    bool greedy() const { return temperature == 0.0f || top_k == 1; }
    void validate() const;  // throws lamina::Error naming the bad value
    // The settings of one row for Backend::sample_rows (history: the sequence so far, host memory).
    SampleRowParams row(std::span<const int32_t> history) const;
};
// argmax, apply_repetition_penalty and the math of one draw: backend/cpu/cpu_sampling.h.

class Sampler {
public:
    explicit Sampler(const SamplingParams& p);
    // Picks the next token from `logits` (modified in place) given the sequence so far.
    int32_t sample(std::span<float> logits, std::span<const int32_t> history);
    // The uniform in [0, 1) that sample() would use now (advancing the RNG), or 0 without advancing it
    // when greedy — for a backend that samples (Backend::sample_rows) with the same draws as sample().
    double next_uniform();
    const SamplingParams& params() const { return p_; }

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace lamina
