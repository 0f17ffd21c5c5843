#include "runtime/beam_search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <span>

#include "core/error.h"
#include "runtime/kv_budget.h"
#include "runtime/prefill_packer.h"
#include "runtime/sampler.h"

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
    return plan_model_limits(e, n_slot, backend.activation_dtype(), kv_cache_bytes);
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

// One prompt's search: HF's per-batch-item tensors, as plain vectors.
struct PromptSearch {
    std::vector<int32_t> prompt;
    int32_t slot0 = 0;      // its slots are slot0 .. slot0 + num_beams - 1
    int64_t n_generated = 0;  // new tokens in every running beam
    std::vector<std::vector<int32_t>> run_tokens;
    std::vector<float> run_score;
    std::vector<int32_t> run_slot;
    std::vector<std::vector<int32_t>> fin_tokens;  // num_beams entries, best first
    std::vector<float> fin_score;
    std::vector<bool> fin_done;     // HF's is_sent_finished
    bool improvable = true;         // HF's is_early_stop_heuristic_unsatisfied
    bool done = false;
};

class Stepper {
public:
    Stepper(const BeamSearchParams& p, int64_t n_vocab) : p_(p), n_vocab_(n_vocab) {
        lp_.resize(static_cast<size_t>(n_vocab));
        row_cands_.resize(static_cast<size_t>(n_vocab));
    }

    // One beam-search step of `s` given the logits of its running beams (one row each, in order).
    // Forks the KV cache of the surviving beams in `model` unless the search ends here.
    void advance(PromptSearch& s, const float* rows, LlamaModel& model, BeamSearchStats& stats) {
        const int64_t num_beams = p_.num_beams;
        const size_t k = static_cast<size_t>(std::max<int64_t>(2, 1 + static_cast<int64_t>(p_.eos_ids.size())) * num_beams);

        // Top-k continuations over all running beams.
        cands_.clear();
        for (size_t b = 0; b < s.run_tokens.size(); ++b) {
            std::span<const float> logits(rows + b * static_cast<size_t>(n_vocab_), static_cast<size_t>(n_vocab_));
            log_softmax(logits, lp_);
            history_.assign(s.prompt.begin(), s.prompt.end());
            history_.insert(history_.end(), s.run_tokens[b].begin(), s.run_tokens[b].end());
            apply_repetition_penalty(lp_, history_, p_.repetition_penalty);
            ban_repeated_ngrams(lp_, history_, p_.no_repeat_ngram_size);
            for (int64_t v = 0; v < n_vocab_; ++v)
                row_cands_[static_cast<size_t>(v)] = {lp_[static_cast<size_t>(v)] + s.run_score[b], static_cast<int32_t>(b),
                                                      static_cast<int32_t>(v)};
            const size_t keep = std::min(k, row_cands_.size());
            std::nth_element(row_cands_.begin(), row_cands_.begin() + static_cast<std::ptrdiff_t>(keep - 1),
                             row_cands_.end(), better);
            cands_.insert(cands_.end(), row_cands_.begin(), row_cands_.begin() + static_cast<std::ptrdiff_t>(keep));
        }
        std::sort(cands_.begin(), cands_.end(), better);
        cands_.resize(std::min(k, cands_.size()));

        // Which candidates hit a stopping criterion (an eos id, or the length budget).
        const bool at_max = s.n_generated + 1 >= p_.max_new_tokens;
        std::vector<bool> hits(cands_.size());
        for (size_t i = 0; i < cands_.size(); ++i)
            hits[i] = at_max || std::find(p_.eos_ids.begin(), p_.eos_ids.end(), cands_[i].token) != p_.eos_ids.end();

        // Running beams of the next step: the best num_beams, finished candidates pushed down.
        std::vector<float> running_scores(cands_.size());
        for (size_t i = 0; i < cands_.size(); ++i) running_scores[i] = cands_[i].score + (hits[i] ? kPushDown : 0.0f);
        const std::vector<size_t> next = top_indices(running_scores, static_cast<size_t>(num_beams));

        // Finished hypotheses: merge those of the top num_beams candidates that just finished.
        const bool all_finished = std::all_of(s.fin_done.begin(), s.fin_done.end(), [](bool f) { return f; });
        const float denom = length_denominator(s.n_generated + 1, p_.length_penalty);
        std::vector<float> merged_score(s.fin_score);
        std::vector<bool> merged_done(s.fin_done);
        for (size_t i = 0; i < cands_.size(); ++i) {
            const bool just_finished = hits[i] && static_cast<int64_t>(i) < num_beams;
            float score = cands_[i].score / denom;
            score += (all_finished && p_.early_stopping == EarlyStopping::True) ? kPushDown : 0.0f;
            score += s.improvable ? 0.0f : kPushDown;
            score += just_finished ? 0.0f : kPushDown;
            merged_score.push_back(score);
            merged_done.push_back(just_finished);
        }
        const std::vector<size_t> keep = top_indices(merged_score, static_cast<size_t>(num_beams));
        std::vector<std::vector<int32_t>> fin_tokens;
        std::vector<float> fin_score;
        std::vector<bool> fin_done;
        for (size_t m : keep) {
            if (m < s.fin_tokens.size()) {
                fin_tokens.push_back(std::move(s.fin_tokens[m]));
            } else {
                const Candidate& c = cands_[m - s.fin_tokens.size()];
                fin_tokens.push_back(s.run_tokens[static_cast<size_t>(c.beam)]);
                fin_tokens.back().push_back(c.token);
            }
            fin_score.push_back(merged_score[m]);
            fin_done.push_back(merged_done[m]);
        }
        s.fin_tokens = std::move(fin_tokens);
        s.fin_score = std::move(fin_score);
        s.fin_done = std::move(fin_done);

        // The new running beams, before the old ones are overwritten.
        std::vector<std::vector<int32_t>> run_tokens;
        std::vector<float> run_score;
        std::vector<int32_t> parents;
        for (size_t i : next) {
            const Candidate& c = cands_[i];
            run_tokens.push_back(s.run_tokens[static_cast<size_t>(c.beam)]);
            run_tokens.back().push_back(c.token);
            run_score.push_back(running_scores[i]);
            parents.push_back(c.beam);
        }
        const std::vector<int32_t> old_slots = s.run_slot;
        const int64_t old_positions = static_cast<int64_t>(s.prompt.size()) + s.n_generated;
        s.run_tokens = std::move(run_tokens);
        s.run_score = std::move(run_score);
        ++s.n_generated;

        // Early-stop heuristic: can the best running beam still beat the worst finished hypothesis?
        const int64_t best_len =
            (p_.early_stopping == EarlyStopping::Never && p_.length_penalty > 0.0f) ? p_.max_new_tokens : s.n_generated;
        const float best_possible = s.run_score[0] / length_denominator(best_len, p_.length_penalty);
        const float worst_finished = *std::min_element(s.fin_score.begin(), s.fin_score.end());
        bool any_better = false;
        for (bool f : s.fin_done) any_better = any_better || best_possible > (f ? worst_finished : kPushDown);
        s.improvable = s.improvable && any_better;

        const bool all_done_now = std::all_of(s.fin_done.begin(), s.fin_done.end(), [](bool f) { return f; });
        const bool open_beam = !(all_done_now && p_.early_stopping == EarlyStopping::True);
        const bool valid_continuation = !std::all_of(hits.begin(), hits.end(), [](bool h) { return h; });
        s.done = !(s.improvable && open_beam && valid_continuation);
        if (s.done) return;

        // KV forks: a parent's first child keeps its slot; later children take the slots of parents
        // without children (or the unused slots at the first step) and copy the parent's cache.
        std::vector<bool> claimed(old_slots.size(), false);
        std::vector<int32_t> free_slots;
        for (size_t b = 0; b < old_slots.size(); ++b)
            if (std::find(parents.begin(), parents.end(), static_cast<int32_t>(b)) == parents.end())
                free_slots.push_back(old_slots[b]);
        for (int64_t j = static_cast<int64_t>(old_slots.size()); j < num_beams; ++j)
            free_slots.push_back(s.slot0 + static_cast<int32_t>(j));
        s.run_slot.assign(parents.size(), -1);
        for (size_t j = 0; j < parents.size(); ++j) {
            const size_t parent = static_cast<size_t>(parents[j]);
            if (!claimed[parent]) {
                claimed[parent] = true;
                s.run_slot[j] = old_slots[parent];
                continue;
            }
            LAMINA_CHECK(!free_slots.empty(), "no free KV slot for a forked beam");
            s.run_slot[j] = free_slots.back();
            free_slots.pop_back();
            model.copy_slot(old_slots[parent], s.run_slot[j], old_positions);
            stats.copied_positions += old_positions;
        }
    }

private:
    const BeamSearchParams& p_;
    int64_t n_vocab_;
    std::vector<float> lp_;
    std::vector<int32_t> history_;
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
      model_(engine, backend, beam_limits(engine, backend, n_prompt, num_beams, kv_cache_bytes)) {}

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
    const int64_t n_vocab = model_.config().n_vocab;
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
        check_fits_kv_cache(model_.limits(), static_cast<int64_t>(prompts[i].size()), params.max_new_tokens, i);
    }

    stats_ = {};
    stats_.first_token_seconds.assign(prompts.size(), 0.0);
    const auto t_start = Clock::now();
    const int64_t step = model_.limits().max_step_tokens;
    std::vector<float> logits(static_cast<size_t>(model_.limits().n_slot * n_vocab));
    std::vector<int32_t> ids, pos, slots, logit_rows;
    Stepper stepper(params, n_vocab);
    std::vector<std::vector<BeamHypothesis>> results(prompts.size());

    for (size_t g0 = 0; g0 < prompts.size(); g0 += static_cast<size_t>(n_prompt_)) {
        const size_t g1 = std::min(prompts.size(), g0 + static_cast<size_t>(n_prompt_));
        std::vector<PromptSearch> group(g1 - g0);
        for (size_t s = 0; s < group.size(); ++s) {
            PromptSearch& ps = group[s];
            ps.prompt = prompts[g0 + s];
            ps.slot0 = static_cast<int32_t>(s * static_cast<size_t>(num_beams_));
            ps.run_tokens = {{}};  // beam 0 only: HF starts the other beams at -1e9
            ps.run_score = {0.0f};
            ps.run_slot = {ps.slot0};
            ps.fin_tokens.assign(static_cast<size_t>(num_beams_), {});
            ps.fin_score.assign(static_cast<size_t>(num_beams_), kPushDown);
            ps.fin_done.assign(static_cast<size_t>(num_beams_), false);
        }

        // Prefill: each prompt into its first slot, packed into steps of at most `step` tokens.
        std::vector<std::span<const int32_t>> group_prompts;
        std::vector<int32_t> group_slots;
        for (const auto& ps : group) {
            group_prompts.emplace_back(ps.prompt);
            group_slots.push_back(ps.slot0);
        }
        PrefillPacker packer(std::move(group_prompts), std::move(group_slots), step);
        while (packer.next()) {
            ids = packer.ids;
            pos = packer.positions;
            slots = packer.slots;
            logit_rows = packer.logit_rows;
            const std::vector<size_t>& finishing = packer.finishing;
            const auto t0 = Clock::now();
            if (logit_rows.empty()) logit_rows.push_back(static_cast<int32_t>(ids.size() - 1));  // mid-prompt chunk
            model_.forward(ids, pos, slots, logit_rows, logits.data());
            stats_.prompt_tokens += static_cast<int64_t>(ids.size());
            for (size_t r = 0; r < finishing.size(); ++r) {
                stepper.advance(group[finishing[r]], logits.data() + r * static_cast<size_t>(n_vocab), model_, stats_);
                stats_.first_token_seconds[g0 + finishing[r]] = seconds_since(t_start);
            }
            stats_.prefill_seconds += seconds_since(t0);
        }

        // Decode: every running beam of every unfinished prompt, one token per step.
        while (std::any_of(group.begin(), group.end(), [](const PromptSearch& s) { return !s.done; })) {
            ids.clear(); pos.clear(); slots.clear(); logit_rows.clear();
            std::vector<size_t> live;
            for (size_t s = 0; s < group.size(); ++s) {
                const PromptSearch& ps = group[s];
                if (ps.done) continue;
                live.push_back(s);
                for (size_t b = 0; b < ps.run_tokens.size(); ++b) {
                    logit_rows.push_back(static_cast<int32_t>(ids.size()));
                    ids.push_back(ps.run_tokens[b].back());
                    pos.push_back(static_cast<int32_t>(static_cast<int64_t>(ps.prompt.size()) + ps.n_generated - 1));
                    slots.push_back(ps.run_slot[b]);
                }
            }
            const auto t0 = Clock::now();
            model_.forward(ids, pos, slots, logit_rows, logits.data());
            stats_.beam_tokens += static_cast<int64_t>(ids.size());
            size_t row = 0;
            for (size_t s : live) {
                PromptSearch& ps = group[s];
                const size_t n_rows = ps.run_tokens.size();
                stepper.advance(ps, logits.data() + row * static_cast<size_t>(n_vocab), model_, stats_);
                row += n_rows;
            }
            stats_.decode_seconds += seconds_since(t0);
            ++stats_.decode_steps;
        }

        for (size_t s = 0; s < group.size(); ++s) {
            PromptSearch& ps = group[s];
            for (int64_t r = 0; r < params.n_return(); ++r)
                results[g0 + s].push_back({std::move(ps.fin_tokens[static_cast<size_t>(r)]), ps.fin_score[static_cast<size_t>(r)]});
        }
    }
    return results;
}

}  // namespace lamina
