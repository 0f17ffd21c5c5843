// Perplexity of a causal language model over token sequences, with the sliding window of Hugging Face's
// "Perplexity of fixed-length models" guide.
//
// Windows: over a sequence of n ids, the model reads windows of at most `ctx` ids starting at 0, stride,
// 2·stride, … (end = min(begin + ctx, n)), and stops after the window that reaches the end. In each
// window only the ids the previous window did not score are scored, each from the ids of the window
// before it: positions [max(previous end, begin + 1), end). So with stride < ctx every id after the
// first is scored exactly once (past the first window from at least ctx - stride ids); with stride = ctx the
// windows are disjoint and the first id of each is not scored (it has no context in its window), as
// in the guide, where the label shift drops it. stride > ctx would skip ids and is refused.
//
// Estimate: PPL = exp(mean NLL) over every scored id, NLL_i = -ln softmax(logits)[id_i] in double.
// Several sequences (articles) are scored each on its own and their sums pooled: one PPL over all
// scored ids, not a mean of per-sequence PPLs. The standard error is llama.cpp's: the delta method
// over per-token NLLs, SE(PPL) = PPL · sqrt((mean(NLL²) - mean(NLL)²) / (N - 1)); it treats the
// tokens as independent, which they are not, so it understates the real spread.
//
// The guide's code weights each window's mean loss by (targets - 1): the ids the loss averaged in the
// first window and with stride = ctx, one fewer when the window's first id is masked (stride < ctx;
// 0.07% on the tiny model at ctx 64 stride 16). Here each scored id counts once, the formula the guide
// states; tools/hf_perplexity.py runs the guide's loop counting ids so (docs/evaluation.md).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace lamina {

// One forward pass: the model reads ids [begin, end) and the NLL of ids [first_scored, end) is summed.
struct PerplexityWindow {
    int64_t begin = 0;
    int64_t end = 0;
    int64_t first_scored = 0;
    int64_t scored() const { return end - first_scored; }
};

// Throws lamina::Error (naming --ctx / --stride) unless ctx >= 2 and 1 <= stride <= ctx.
void check_perplexity_windows(int64_t ctx, int64_t stride);

// The windows over n_tokens ids, as the header says; those that score nothing (a one-id sequence) are
// left out, so a sequence of fewer than 2 ids has none.
std::vector<PerplexityWindow> perplexity_windows(int64_t n_tokens, int64_t ctx, int64_t stride);

// -ln softmax(logits)[target], in double: one row of n_vocab logits.
double token_nll(const float* logits, int64_t n_vocab, int32_t target);

// Running sums of per-token NLL.
struct NllSums {
    double sum = 0.0;
    double sum_sq = 0.0;
    int64_t count = 0;
    void add(double nll);
};

struct PerplexityEstimate {
    double perplexity = 0.0;
    double perplexity_stderr = 0.0;  // NaN with fewer than 2 tokens
    double mean_nll = 0.0;
    int64_t tokens = 0;
};
PerplexityEstimate estimate_perplexity(const NllSums& sums);

// The logits of every position of one window's ids, [ids.size() * n_vocab] (Generator::prompt_logits).
using WindowLogitsFn = std::function<std::vector<float>(const std::vector<int32_t>& ids)>;

struct PerplexityRun {
    NllSums sums;
    int64_t windows = 0;
    int64_t evaluated_tokens = 0;        // ids the model read: window lengths summed (overlaps count again)
    double model_seconds = 0.0;          // time inside WindowLogitsFn
    std::vector<double> window_nll;      // NLL summed over each window's scored ids, in order
    std::vector<int64_t> window_scored;  // scored ids of each window
};

// Scores every sequence on its own with the windows above, pooling the sums. `on_window(done)` is
// called after each window (for progress); count them first with perplexity_windows.
PerplexityRun score_perplexity(const std::vector<std::vector<int32_t>>& sequences, int64_t ctx, int64_t stride,
                               int64_t n_vocab, const WindowLogitsFn& logits,
                               const std::function<void(const PerplexityRun&)>& on_window = {});

}  // namespace lamina
