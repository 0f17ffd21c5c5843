// Token sampling as a chain of small stages, in Hugging Face's order: repetition penalty,
// temperature, top-k, top-p, then a draw from an explicitly seeded RNG — or argmax when greedy.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace lamina {

struct SamplingParams {
    float temperature = 1.0f;         // 0 means greedy
    int32_t top_k = 1;                // 1 means greedy; 0 means no limit (TensorRT-LLM's run.py default is 1)
    float top_p = 0.0f;               // 0 or 1 means no nucleus cut
    float repetition_penalty = 1.0f;  // HF semantics: seen tokens' logits divided (>0) or multiplied (<0)
    uint64_t seed = 0;
    bool greedy() const { return temperature == 0.0f || top_k == 1; }
    void validate() const;  // throws lamina::Error naming the bad value
};

// Index of the largest value; the first one on ties (as torch.argmax).
int32_t argmax(std::span<const float> logits);
// Applies the repetition penalty in place to every distinct id in `history`.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, float penalty);

class Sampler {
public:
    explicit Sampler(const SamplingParams& p);
    // Picks the next token from `logits` (modified in place) given the sequence so far.
    int32_t sample(std::span<float> logits, std::span<const int32_t> history);

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace lamina
