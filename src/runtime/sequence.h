// A sequence being generated and the policy that picks its tokens. The step loop (runtime/step_loop.h)
// forwards a sequence's pending tokens, those the KV cache does not hold yet: a prompt chunk while it
// prefills, then the one token its policy appended after the previous step.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"

namespace lamina {

class SequencePolicy;
class StepLoop;

struct Sequence {
    Sequence(std::span<const int32_t> prompt, int32_t slot, SequencePolicy* policy, size_t index)
        : tokens(prompt.begin(), prompt.end()), n_prompt(static_cast<int64_t>(prompt.size())), slot(slot),
          policy(policy), index(index) {}

    std::vector<int32_t> tokens;  // the prompt, then the generated tokens
    int64_t n_prompt = 0;
    int64_t n_cached = 0;  // leading tokens whose K and V are in the slot: the next one forwarded has this position
    int32_t slot = -1;     // KV cache slot
    SequencePolicy* policy = nullptr;
    size_t index = 0;      // the caller's name for it (the prompt's index)
    bool finished = false;  // stop state: set by its policy, the sequence leaves the loop after that step

    int64_t n_generated() const { return static_cast<int64_t>(tokens.size()) - n_prompt; }
    bool prefilling() const { return n_cached < n_prompt; }
    std::span<const int32_t> pending() const { return std::span(tokens).subspan(static_cast<size_t>(n_cached)); }
    std::span<const int32_t> generated() const { return std::span(tokens).subspan(static_cast<size_t>(n_prompt)); }
    // This sequence continued by `token` in KV slot `slot` (a beam's child; its policy copies the cache).
    Sequence fork(int32_t token, int32_t fork_slot) const {
        Sequence s = *this;
        s.tokens.push_back(token);
        s.slot = fork_slot;
        s.finished = false;
        return s;
    }
};

// What the step that finishes a sequence's pending tokens returns for it.
enum class StepOutput {
    Argmax,  // the greedy id, picked on the backend
    Sample,  // an id drawn on the backend (Backend::sample_rows) with the policy's settings and uniform
    Logits,  // the whole logits row, [n_vocab] f32
};

struct StepResult {
    Sequence* seq;
    int32_t id = -1;                // Argmax and Sample policies
    std::span<float> logits;        // Logits policies (the policy may modify the row)
};

// Picks the next tokens of the sequences pointing at it: one sequence (greedy, sampling) or a group of
// sequences (the beams of one prompt).
class SequencePolicy {
public:
    virtual ~SequencePolicy() = default;
    virtual StepOutput output() const = 0;
    // StepOutput::Sample: the settings of seq's next draw, and its uniform in [0, 1) (called once per draw).
    virtual SampleRowParams sample_params(const Sequence& seq, double& uniform);
    // After a step, the results of this policy's sequences whose pending tokens that step finished, in
    // step order. The policy appends tokens, sets `finished`, and may add sequences to the loop.
    virtual void on_step(StepLoop& loop, std::span<const StepResult> results) = 0;
};

}  // namespace lamina
