// The one generation loop: advances a set of sequences (runtime/sequence.h) one forward step at a time.
// Each step packs pending tokens into at most the model's max_step_tokens (runtime/prefill_packer.h),
// calls the model once, and hands each sequence whose pending tokens it finished its result (an id or a
// logits row) through that sequence's policy. Greedy, sampling (runtime/sampling_policy.h) and beam
// search (runtime/beam_search.cpp) are policies over this loop.
//
// Scheduling, prompts first: while any sequence prefills, a step carries only prompt chunks, in the
// order the sequences joined (a long prompt continues in the next step); otherwise it carries one token
// of every sequence, in that order. Sequences join (add) and leave (finished) between steps.
//
// The step's model call is the narrowest that serves every row: forward_argmax when all want the greedy
// id, forward_sample when some draw (greedy rows get greedy settings), forward when some want logits
// (then the others' ids are picked on the host from their rows with the same math).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/prefill_packer.h"
#include "runtime/sequence.h"
#include "runtime/step_runner.h"

namespace lamina {

// The model's step API the loop uses: forward, forward_argmax, forward_sample, copy_slot, limits(),
// config(), collective_seconds().
using StepModel = StepRunner;

struct StepStats {
    int64_t prompt_tokens = 0;     // prompt tokens forwarded
    int64_t generated_tokens = 0;  // generated tokens forwarded (a sequence's last token is never forwarded)
    int64_t prefill_steps = 0;     // steps that carried prompt tokens
    int64_t decode_steps = 0;      // steps that carried only generated tokens
    // Wall time of those steps: the model call and the policies' work on its results.
    double prefill_seconds = 0.0;
    double decode_seconds = 0.0;
    double decode_collective_seconds = 0.0;  // of decode_seconds, rank 0's collectives (tensor parallel, timing on)
};

class StepLoop {
public:
    explicit StepLoop(StepModel& model);

    // The sequence joins at the next step; the reference stays valid until the step after which it is
    // finished. It needs pending tokens and a slot no other sequence in the loop holds.
    Sequence& add(Sequence seq);
    // One forward step; false (and nothing done) when no sequence is left.
    bool step();
    // Steps until every sequence has finished.
    void run();

    size_t size() const { return live_.size(); }
    StepModel& model() { return model_; }
    const StepStats& stats() const { return stats_; }
    void reset_stats() { stats_ = {}; }

private:
    // Packs the step's tokens; fills rows_ with the sequences that get a result.
    void pack(bool prefill);
    // Calls the model for the packed step (prompt chunks only, or one token of each decoding sequence) and
    // fills results_.
    void forward(bool prefill);
    // Gives each policy the results of its sequences.
    void hand_out();

    StepModel& model_;
    PrefillPacker packer_;
    std::vector<std::unique_ptr<Sequence>> live_;  // in the order they joined
    std::vector<std::pair<Sequence*, size_t>> packed_;  // each packed sequence and its tokens in the step
    std::vector<StepResult> results_;
    std::vector<int32_t> ids_out_;
    std::vector<float> logits_;
    std::vector<SampleRowParams> sample_params_;
    std::vector<double> uniforms_;
    std::vector<std::pair<float, int32_t>> candidates_;
    std::vector<SequencePolicy*> policies_;
    StepStats stats_;
};

}  // namespace lamina
