#include "runtime/beam_search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>
#include <span>

#include "core/error.h"
#include "runtime/kv_budget.h"
#include "runtime/sampler.h"
#include "runtime/step_loop.h"

namespace lamina {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// HF's stand-in for "impossible" inside beam search: added to a score (in float32) to push a beam
// or hypothesis below every real one without making it -inf.
constexpr float kPushDown = -1.0e9f;
ModelLimits beam_limits(const Engine& e, Backend& backend, int64_t n_prompt, int64_t num_beams, uint64_t kv_cache_bytes) {
    if (n_prompt < 1) throw Error("beam search needs at least one prompt at a time, got " + std::to_string(n_prompt));
    if (num_beams < 1) throw Error("--num_beams must be >= 1, got " + std::to_string(num_beams));
    const int64_t n_slot = n_prompt * num_beams;
    const int64_t max_batch = e.limits().max_batch_size;
    if (n_slot > max_batch)
        throw Error("beam search of " + std::to_string(n_prompt) + " prompt(s) x " + std::to_string(num_beams) +
                    " beams needs " + std::to_string(n_slot) + " KV slots, but the engine's max_batch_size is " +
                    std::to_string(max_batch) + "; rebuild the engine with `lamina build --max_batch_size " +
                    std::to_string(n_slot) + "` (batch size x num_beams) or lower the batch size / beams");
    return plan_model_limits(e, n_slot, backend.kv_cache_dtype(), kv_cache_bytes);
}

// HF's length penalty denominator, n ** length_penalty, as the float32 scalar torch divides by.
float length_denominator(int64_t n, float length_penalty) {
    return static_cast<float>(std::pow(static_cast<double>(n), static_cast<double>(length_penalty)));
}

// log_softmax of one row, in float32 output (accumulated in double).
void log_softmax(std::span<const float> logits, std::span<float> out) {
    const float max_logit = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (float x : logits) sum += std::exp(static_cast<double>(x) - max_logit);
    const double log_sum = std::log(sum);
    for (size_t i = 0; i < logits.size(); ++i)
        out[i] = static_cast<float>(static_cast<double>(logits[i]) - max_logit - log_sum);
}

// HF's NoRepeatNGramLogitsProcessor on one sequence: every token that would complete an n-gram that
// already occurs in `seq` gets -inf. With n = 1 every token of `seq` is banned.
void ban_repeated_ngrams(std::span<float> scores, std::span<const int32_t> seq, int64_t n) {
    const int64_t len = static_cast<int64_t>(seq.size());
    if (n <= 0 || len < n) return;
    const auto prefix = seq.subspan(static_cast<size_t>(len - n + 1));  // the last n - 1 tokens
    for (int64_t s = 0; s + n <= len; ++s) {
        if (std::equal(prefix.begin(), prefix.end(), seq.begin() + s))
            scores[static_cast<size_t>(seq[static_cast<size_t>(s + n - 1)])] = -std::numeric_limits<float>::infinity();
    }
}

struct Candidate {
    float score;      // accumulated log-prob
    int32_t beam;     // index of the parent among the running beams
    int32_t token;
    int64_t flat() const { return static_cast<int64_t>(beam) << 32 | static_cast<uint32_t>(token); }
};
// torch.topk order: larger first; equal scores by lower flat index (beam, token).
bool better(const Candidate& a, const Candidate& b) {
    return a.score > b.score || (a.score == b.score && a.flat() < b.flat());
}

// Indices of the k largest values, largest first, ties by lower index.
std::vector<size_t> top_indices(const std::vector<float>& v, size_t k) {
    std::vector<size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), size_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] > v[b]; });
    idx.resize(std::min(k, idx.size()));
    return idx;
}

// The beams of one prompt, a policy over the step loop: HF's per-batch-item tensors as plain vectors,
// with the running beams as the loop's sequences. Its KV slots are slot0 .. slot0 + num_beams - 1.
class BeamGroup : public SequencePolicy {
public:
    BeamGroup(const BeamSearchParams& p, int32_t slot0, int64_t n_vocab, BeamSearchStats& stats, Clock::time_point t_start)
        : p_(p), slot0_(slot0), n_vocab_(n_vocab), stats_(stats), t_start_(t_start) {
        fin_tokens_.assign(static_cast<size_t>(p.num_beams), {});
        fin_score_.assign(static_cast<size_t>(p.num_beams), kPushDown);
        fin_done_.assign(static_cast<size_t>(p.num_beams), false);
        lp_.resize(static_cast<size_t>(n_vocab));
        row_cands_.resize(static_cast<size_t>(n_vocab));
    }

    // Puts the prompt (prompts[index]) into the loop as beam 0, in slot0: HF starts the other beams at -1e9.
    void start(StepLoop& loop, std::span<const int32_t> prompt, size_t index) {
        beams_ = {&loop.add(Sequence(prompt, slot0_, this, index))};
        run_score_ = {0.0f};
    }

    StepOutput output() const override { return StepOutput::Logits; }

    // One beam-search step given the logits of the running beams (one row each, in order). Every running
    // beam leaves the loop; unless the search ends here, the new ones join it, with their KV forked.
    void on_step(StepLoop& loop, std::span<const StepResult> rows) override {
        LAMINA_CHECK(rows.size() == beams_.size(), "a step carried " + std::to_string(rows.size()) + " of " +
                                                       std::to_string(beams_.size()) + " beams");
        const int64_t num_beams = p_.num_beams;
        const size_t k = static_cast<size_t>(std::max<int64_t>(2, 1 + static_cast<int64_t>(p_.eos_ids.size())) * num_beams);

        // Top-k continuations over all running beams.
        cands_.clear();
        for (size_t b = 0; b < rows.size(); ++b) {
            LAMINA_CHECK(rows[b].seq == beams_[b] && rows[b].logits.size() == static_cast<size_t>(n_vocab_));
            log_softmax(rows[b].logits, lp_);
            const std::span<const int32_t> history = beams_[b]->tokens;  // prompt + beam
            apply_repetition_penalty(lp_, history, p_.repetition_penalty);
            ban_repeated_ngrams(lp_, history, p_.no_repeat_ngram_size);
            for (int64_t v = 0; v < n_vocab_; ++v)
                row_cands_[static_cast<size_t>(v)] = {lp_[static_cast<size_t>(v)] + run_score_[b], static_cast<int32_t>(b),
                                                      static_cast<int32_t>(v)};
            const size_t keep = std::min(k, row_cands_.size());
            std::nth_element(row_cands_.begin(), row_cands_.begin() + static_cast<std::ptrdiff_t>(keep - 1),
                             row_cands_.end(), better);
            cands_.insert(cands_.end(), row_cands_.begin(), row_cands_.begin() + static_cast<std::ptrdiff_t>(keep));
        }
        std::sort(cands_.begin(), cands_.end(), better);
        cands_.resize(std::min(k, cands_.size()));

        // Which candidates hit a stopping criterion (an eos id, or the length budget).
        const bool at_max = n_generated_ + 1 >= p_.max_new_tokens;
        std::vector<bool> hits(cands_.size());
        for (size_t i = 0; i < cands_.size(); ++i)
            hits[i] = at_max || std::find(p_.eos_ids.begin(), p_.eos_ids.end(), cands_[i].token) != p_.eos_ids.end();

        // Running beams of the next step: the best num_beams, finished candidates pushed down.
        std::vector<float> running_scores(cands_.size());
        for (size_t i = 0; i < cands_.size(); ++i) running_scores[i] = cands_[i].score + (hits[i] ? kPushDown : 0.0f);
        const std::vector<size_t> next = top_indices(running_scores, static_cast<size_t>(num_beams));

        // Finished hypotheses: merge those of the top num_beams candidates that just finished.
        const bool all_finished = std::all_of(fin_done_.begin(), fin_done_.end(), [](bool f) { return f; });
        const float denom = length_denominator(n_generated_ + 1, p_.length_penalty);
        std::vector<float> merged_score(fin_score_);
        std::vector<bool> merged_done(fin_done_);
        for (size_t i = 0; i < cands_.size(); ++i) {
            const bool just_finished = hits[i] && static_cast<int64_t>(i) < num_beams;
            float score = cands_[i].score / denom;
            score += (all_finished && p_.early_stopping == EarlyStopping::True) ? kPushDown : 0.0f;
            score += improvable_ ? 0.0f : kPushDown;
            score += just_finished ? 0.0f : kPushDown;
            merged_score.push_back(score);
            merged_done.push_back(just_finished);
        }
        const std::vector<size_t> keep = top_indices(merged_score, static_cast<size_t>(num_beams));
        std::vector<std::vector<int32_t>> fin_tokens;
        std::vector<float> fin_score;
        std::vector<bool> fin_done;
        for (size_t m : keep) {
            if (m < fin_tokens_.size()) {
                fin_tokens.push_back(std::move(fin_tokens_[m]));
            } else {
                const Candidate& c = cands_[m - fin_tokens_.size()];
                const std::span<const int32_t> beam = beams_[static_cast<size_t>(c.beam)]->generated();
                fin_tokens.emplace_back(beam.begin(), beam.end());
                fin_tokens.back().push_back(c.token);
            }
            fin_score.push_back(merged_score[m]);
            fin_done.push_back(merged_done[m]);
        }
        fin_tokens_ = std::move(fin_tokens);
        fin_score_ = std::move(fin_score);
        fin_done_ = std::move(fin_done);

        // The new running beams: each continues a parent by one token.
        std::vector<int32_t> parents, tokens;
        run_score_.clear();
        for (size_t i : next) {
            parents.push_back(cands_[i].beam);
            tokens.push_back(cands_[i].token);
            run_score_.push_back(running_scores[i]);
        }
        ++n_generated_;

        // Early-stop heuristic: can the best running beam still beat the worst finished hypothesis?
        const int64_t best_len =
            (p_.early_stopping == EarlyStopping::Never && p_.length_penalty > 0.0f) ? p_.max_new_tokens : n_generated_;
        const float best_possible = run_score_[0] / length_denominator(best_len, p_.length_penalty);
        const float worst_finished = *std::min_element(fin_score_.begin(), fin_score_.end());
        bool any_better = false;
        for (bool f : fin_done_) any_better = any_better || best_possible > (f ? worst_finished : kPushDown);
        improvable_ = improvable_ && any_better;

        const bool all_done_now = std::all_of(fin_done_.begin(), fin_done_.end(), [](bool f) { return f; });
        const bool open_beam = !(all_done_now && p_.early_stopping == EarlyStopping::True);
        const bool valid_continuation = !std::all_of(hits.begin(), hits.end(), [](bool h) { return h; });
        const bool done = !(improvable_ && open_beam && valid_continuation);

        const size_t index = beams_[0]->index;
        for (Sequence* b : beams_) b->finished = true;
        if (!done) fork(loop, parents, tokens);
        else beams_.clear();
        if (n_generated_ == 1) stats_.first_token_seconds[index] = seconds_since(t_start_);
    }

    // The n best finished hypotheses, best first.
    std::vector<BeamHypothesis> take_hypotheses(int64_t n) {
        std::vector<BeamHypothesis> out;
        for (size_t r = 0; r < static_cast<size_t>(n); ++r) out.push_back({std::move(fin_tokens_[r]), fin_score_[r]});
        return out;
    }

private:
    // Adds the new running beam j, parents[j] continued by tokens[j]. KV slots: a parent's first child
    // keeps its slot; later children take the slots of parents without children (or the unused slots at
    // the first step) and copy the parent's cache.
    void fork(StepLoop& loop, const std::vector<int32_t>& parents, const std::vector<int32_t>& tokens) {
        std::vector<bool> claimed(beams_.size(), false);
        std::vector<int32_t> free_slots;
        for (size_t b = 0; b < beams_.size(); ++b)
            if (std::find(parents.begin(), parents.end(), static_cast<int32_t>(b)) == parents.end())
                free_slots.push_back(beams_[b]->slot);
        for (int64_t j = static_cast<int64_t>(beams_.size()); j < p_.num_beams; ++j)
            free_slots.push_back(slot0_ + static_cast<int32_t>(j));
        std::vector<Sequence*> next;
        for (size_t j = 0; j < parents.size(); ++j) {
            const auto parent = static_cast<size_t>(parents[j]);
            const Sequence& from = *beams_[parent];
            int32_t slot = from.slot;
            if (claimed[parent]) {
                LAMINA_CHECK(!free_slots.empty(), "no free KV slot for a forked beam");
                slot = free_slots.back();
                free_slots.pop_back();
                loop.model().copy_slot(from.slot, slot, from.n_cached);
                stats_.copied_positions += from.n_cached;
            }
            claimed[parent] = true;
            next.push_back(&loop.add(from.fork(tokens[j], slot)));
        }
        beams_ = std::move(next);
    }

    const BeamSearchParams& p_;
    int32_t slot0_;
    int64_t n_vocab_;
    BeamSearchStats& stats_;
    Clock::time_point t_start_;
    int64_t n_generated_ = 0;      // new tokens in every running beam
    std::vector<Sequence*> beams_;  // the running beams, sequences of the loop
    std::vector<float> run_score_;
    std::vector<std::vector<int32_t>> fin_tokens_;  // num_beams entries, best first
    std::vector<float> fin_score_;
    std::vector<bool> fin_done_;   // HF's is_sent_finished
    bool improvable_ = true;       // HF's is_early_stop_heuristic_unsatisfied
    std::vector<float> lp_;
    std::vector<Candidate> row_cands_, cands_;
};
}  // namespace

EarlyStopping early_stopping_from_name(std::string_view name) {
    if (name == "false" || name == "False" || name == "0") return EarlyStopping::Heuristic;
    if (name == "true" || name == "True" || name == "1") return EarlyStopping::True;
    if (name == "never") return EarlyStopping::Never;
    // summarize.py passes an integer: 0 false, 1 true, anything else "never".
    if (!name.empty() && std::all_of(name.begin() + (name[0] == '-' ? 1 : 0), name.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        name != "-")
        return EarlyStopping::Never;
    throw Error("--early_stopping '" + std::string(name) + "' is not one of true, false, never (or 1, 0, another integer)");
}

std::string_view early_stopping_name(EarlyStopping e) {
    switch (e) {
        case EarlyStopping::Heuristic: return "false";
        case EarlyStopping::True: return "true";
        case EarlyStopping::Never: return "never";
    }
    return "false";
}

void BeamSearchParams::validate() const {
    if (num_beams < 1) throw Error("--num_beams must be >= 1, got " + std::to_string(num_beams));
    if (num_return_sequences < 0 || num_return_sequences > num_beams)
        throw Error("--num_return_sequences must be in [1, num_beams " + std::to_string(num_beams) + "], got " +
                    std::to_string(num_return_sequences));
    if (max_new_tokens < 1) throw Error("max new tokens must be >= 1, got " + std::to_string(max_new_tokens));
    if (!std::isfinite(length_penalty)) throw Error("--length_penalty must be finite");
    if (no_repeat_ngram_size < 0)
        throw Error("--no_repeat_ngram_size must be >= 0, got " + std::to_string(no_repeat_ngram_size));
    if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
        throw Error("--repetition_penalty must be > 0, got " + std::to_string(repetition_penalty));
}

BeamSearch::BeamSearch(const Engine& engine, Backend& backend, int64_t n_prompt, int64_t num_beams,
                       uint64_t kv_cache_bytes)
    : engine_(engine), n_prompt_(n_prompt), num_beams_(num_beams),
      runner_(make_step_runner(engine, backend, beam_limits(engine, backend, n_prompt, num_beams, kv_cache_bytes))) {}

std::vector<std::vector<BeamHypothesis>> BeamSearch::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                              const BeamSearchParams& params) {
    params.validate();
    if (params.num_beams != num_beams_)
        throw Error("beam search was set up for " + std::to_string(num_beams_) + " beams, asked for " +
                    std::to_string(params.num_beams));
    const int64_t max_out = engine_.limits().max_output_len;
    if (params.max_new_tokens > max_out)
        throw Error("max new tokens " + std::to_string(params.max_new_tokens) + " is more than the engine's max_output_len " +
                    std::to_string(max_out));
    const int64_t n_vocab = runner_->config().n_vocab;
    for (int32_t id : params.eos_ids)
        if (id < 0 || id >= n_vocab) throw Error("eos id " + std::to_string(id) + " is outside the vocabulary");
    const int64_t max_in = engine_.limits().max_input_len;
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (prompts[i].empty()) throw Error("prompt " + std::to_string(i) + " is empty");
        if (static_cast<int64_t>(prompts[i].size()) > max_in)
            throw Error("prompt " + std::to_string(i) + " has " + std::to_string(prompts[i].size()) +
                        " tokens, more than the engine's max_input_len " + std::to_string(max_in));
        for (int32_t id : prompts[i])
            if (id < 0 || id >= n_vocab)
                throw Error("prompt " + std::to_string(i) + " has token id " + std::to_string(id) + " outside the vocabulary");
        check_fits_kv_cache(runner_->limits(), static_cast<int64_t>(prompts[i].size()), params.max_new_tokens, i);
    }

    stats_ = {};
    stats_.first_token_seconds.assign(prompts.size(), 0.0);
    const auto t_start = Clock::now();
    std::vector<std::vector<BeamHypothesis>> results(prompts.size());

    // Prompts in groups of n_prompt: the next group joins once the last one has finished.
    StepLoop loop(*runner_);
    const auto n_group = static_cast<size_t>(n_prompt_);
    for (size_t g0 = 0; g0 < prompts.size(); g0 += n_group) {
        const size_t g1 = std::min(prompts.size(), g0 + n_group);
        std::deque<BeamGroup> groups;
        for (size_t i = g0; i < g1; ++i)
            groups.emplace_back(params, static_cast<int32_t>((i - g0) * static_cast<size_t>(num_beams_)), n_vocab, stats_, t_start)
                .start(loop, prompts[i], i);
        loop.run();
        for (size_t i = g0; i < g1; ++i) results[i] = groups[i - g0].take_hypotheses(params.n_return());
    }
    const StepStats& s = loop.stats();
    stats_.prompt_tokens = s.prompt_tokens;
    stats_.beam_tokens = s.generated_tokens;
    stats_.prefill_seconds = s.prefill_seconds;
    stats_.decode_seconds = s.decode_seconds;
    stats_.decode_steps = s.decode_steps;
    return results;
}

}  // namespace lamina
