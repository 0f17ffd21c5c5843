// Generation: prefill (chunked to the model's step size, several sequences packed per step), then
// batched decode, one token per live sequence per step, until each hits a stop id or its budget.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "runtime/step_runner.h"

namespace lamina {

struct GenerationParams {
    int64_t max_new_tokens = 32;
    SamplingParams sampling;
    std::vector<int32_t> stop_ids;  // generation of a sequence ends after it emits one of these
    // Asked after each token of sequence i (after on_token): true ends that sequence there (stop strings).
    std::function<bool(size_t)> stop_requested;
};

struct GenerationStats {
    int64_t prompt_tokens = 0;
    int64_t generated_tokens = 0;
    double prefill_seconds = 0.0;  // wall time of steps that carried prompt tokens
    double decode_seconds = 0.0;   // wall time of steps that carried only generated tokens
    double first_token_seconds = 0.0;  // from start to the first sampled token of the first group
    int64_t decode_steps = 0;
    double decode_collective_seconds = 0.0;  // of decode_seconds, rank 0's collectives (tensor parallel, timing on)
};

class Generator {
public:
    // n_slot sequences at once (<= the engine's max_batch_size); the context per slot is
    // max_input_len + max_output_len of the engine, or what kv_cache_bytes (> 0) holds (runtime/kv_budget.h).
    Generator(const Engine& engine, Backend& backend, int64_t n_slot, uint64_t kv_cache_bytes = 0);

    // Generates a continuation for every prompt; returns the new tokens (stop token included, as HF
    // does). `on_token(i, id)` is called for each token of prompt i as it is produced. A prompt that is
    // empty, longer than max_input_len, or a budget over max_output_len is a lamina::Error.
    std::vector<std::vector<int32_t>> generate(const std::vector<std::vector<int32_t>>& prompts,
                                               const GenerationParams& params,
                                               const std::function<void(size_t, int32_t)>& on_token = {});

    // Logits at every position of one prompt, [prompt.size() * n_vocab] (for reference checks).
    std::vector<float> prompt_logits(const std::vector<int32_t>& prompt);

    const GenerationStats& stats() const { return stats_; }
    StepRunner& runner() { return *runner_; }

private:
    void check_prompt(const std::vector<int32_t>& prompt, size_t index) const;

    const Engine& engine_;
    std::unique_ptr<StepRunner> runner_;
    GenerationStats stats_;
};

}  // namespace lamina
