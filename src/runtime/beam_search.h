// Beam search with Hugging Face transformers' semantics (GenerationMixin._beam_search, 5.x), so
// that the same model gives the same beams, token for token. One step, per prompt:
//
//   lp[b, v]   = log_softmax(logits[b])[v], then the logits processors in HF's order, applied to
//                the log-probs (HF runs them after log_softmax in beam search): repetition penalty
//                (every id in prompt + beam: lp < 0 ? lp * p : lp / p), then no-repeat-ngram (-inf
//                for a token that would repeat an n-gram of prompt + beam)
//   acc[b, v]  = score[b] + lp[b, v]                  (float32, as torch)
//   candidates = the top K of acc over all (b, v), K = max(2, 1 + n_eos) * num_beams
//   a candidate "hits a stop" when its token is an eos id or it reaches max_new_tokens
//   running    = the best num_beams candidates, finished ones pushed down by -1e9
//   finished   = the num_beams best of (finished so far) ∪ (those of the top num_beams candidates
//                that hit a stop), each scored sum_logprobs / n_generated^length_penalty, where
//                n_generated counts the new tokens including the eos
//   stop       when every candidate hits a stop (max_new_tokens), or early_stopping is true and
//              num_beams hypotheses are finished, or the best running beam can no longer beat the
//              worst finished one: score[0] / L^length_penalty <= worst, L = n_generated so far
//              (early_stopping false) or max_new_tokens (never, with length_penalty > 0)
//
// At the first step only beam 0 is live (HF starts the others at -1e9). The result of a prompt is
// its num_return_sequences best finished hypotheses, best first, with HF's sequences_scores.
//
// KV cache: num_beams slots per prompt. After each step a new beam takes over its parent's slot
// when it is the parent's first child; other children get a slot freed by a parent without
// children, filled with StepRunner::copy_slot. Prompts are independent: running several at once
// (n_prompt > 1) gives each the same beams as running it alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine.h"
#include "runtime/step_runner.h"

namespace lamina {

// HF's early_stopping: false (the heuristic above), true (stop once num_beams are finished), "never".
enum class EarlyStopping { Heuristic, True, Never };
// "false"/"0", "true"/"1", "never" (summarize.py's integer form: other integers mean never).
EarlyStopping early_stopping_from_name(std::string_view name);
std::string_view early_stopping_name(EarlyStopping e);  // "false", "true", "never"

struct BeamSearchParams {
    int64_t num_beams = 2;
    int64_t num_return_sequences = 0;  // 0 means num_beams
    int64_t max_new_tokens = 32;
    float length_penalty = 1.0f;
    EarlyStopping early_stopping = EarlyStopping::Heuristic;
    int64_t no_repeat_ngram_size = 0;  // 0: off
    float repetition_penalty = 1.0f;   // 1: off
    std::vector<int32_t> eos_ids;      // HF's eos_token_id (one id or several); may be empty
    int64_t n_return() const { return num_return_sequences > 0 ? num_return_sequences : num_beams; }
    void validate() const;  // throws lamina::Error naming the bad flag value
};

struct BeamHypothesis {
    std::vector<int32_t> tokens;  // new tokens; ends with the eos id when it finished on one
    float score = 0.0f;           // HF's sequences_scores: sum of log-probs / n_tokens^length_penalty
};

struct BeamSearchStats {
    int64_t prompt_tokens = 0;
    int64_t beam_tokens = 0;        // tokens forwarded in decode steps (one per live beam per step)
    int64_t copied_positions = 0;   // KV positions copied by forks
    double prefill_seconds = 0.0;
    double decode_seconds = 0.0;    // every step after prefill, selection and KV forks included
    int64_t decode_steps = 0;
    std::vector<double> first_token_seconds;  // per prompt: from the start of generate() to its first step
};

class BeamSearch {
public:
    // Room for n_prompt prompts of num_beams beams at once: n_prompt * num_beams KV slots, which must
    // fit the engine's max_batch_size (a lamina::Error says what to rebuild with otherwise).
    // kv_cache_bytes > 0 sizes the KV cache to that budget instead (runtime/kv_budget.h).
    BeamSearch(const Engine& engine, Backend& backend, int64_t n_prompt, int64_t num_beams,
               uint64_t kv_cache_bytes = 0);

    // For every prompt, params.n_return() hypotheses, best first. params.num_beams must equal the
    // constructor's. Prompts are checked like Generator's (non-empty, <= max_input_len, ids in range).
    std::vector<std::vector<BeamHypothesis>> generate(const std::vector<std::vector<int32_t>>& prompts,
                                                      const BeamSearchParams& params);

    const BeamSearchStats& stats() const { return stats_; }

private:
    const Engine& engine_;
    int64_t n_prompt_, num_beams_;
    std::unique_ptr<StepRunner> runner_;
    BeamSearchStats stats_;
};

}  // namespace lamina
