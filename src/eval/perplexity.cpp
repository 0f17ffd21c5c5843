#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace lamina {

void check_perplexity_windows(int64_t ctx, int64_t stride) {
    if (ctx < 2) throw Error("--ctx " + std::to_string(ctx) + ": a window needs at least 2 tokens");
    if (stride < 1 || stride > ctx)
        throw Error("--stride " + std::to_string(stride) + ": must be in 1 to --ctx " + std::to_string(ctx) +
                    " (a larger stride would skip tokens)");
}

std::vector<PerplexityWindow> perplexity_windows(int64_t n_tokens, int64_t ctx, int64_t stride) {
    check_perplexity_windows(ctx, stride);
    std::vector<PerplexityWindow> windows;
    int64_t prev_end = 0;
    for (int64_t begin = 0; begin < n_tokens; begin += stride) {
        PerplexityWindow w;
        w.begin = begin;
        w.end = std::min(begin + ctx, n_tokens);
        w.first_scored = std::max(prev_end, begin + 1);
        if (w.scored() > 0) windows.push_back(w);
        prev_end = w.end;
        if (w.end == n_tokens) break;
    }
    return windows;
}

double token_nll(const float* logits, int64_t n_vocab, int32_t target) {
    double max = logits[0];
    for (int64_t v = 1; v < n_vocab; ++v) max = std::max<double>(max, logits[v]);
    double sum = 0.0;
    for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - max);
    return max + std::log(sum) - static_cast<double>(logits[target]);
}

void NllSums::add(double nll) {
    sum += nll;
    sum_sq += nll * nll;
    ++count;
}

PerplexityEstimate estimate_perplexity(const NllSums& s) {
    PerplexityEstimate e;
    e.tokens = s.count;
    if (s.count == 0) throw Error("no token to score: each text needs at least 2 tokens");
    const double n = static_cast<double>(s.count);
    e.mean_nll = s.sum / n;
    e.perplexity = std::exp(e.mean_nll);
    // Population variance of the NLLs; rounding can take it a hair below zero when they are all equal.
    const double variance = std::max(0.0, s.sum_sq / n - e.mean_nll * e.mean_nll);
    e.perplexity_stderr =
        s.count < 2 ? std::numeric_limits<double>::quiet_NaN() : e.perplexity * std::sqrt(variance / (n - 1.0));
    return e;
}

PerplexityRun score_perplexity(const std::vector<std::vector<int32_t>>& sequences, int64_t ctx, int64_t stride,
                               int64_t n_vocab, const WindowLogitsFn& logits,
                               const std::function<void(const PerplexityRun&)>& on_window) {
    PerplexityRun run;
    for (const std::vector<int32_t>& ids : sequences) {
        for (const PerplexityWindow& w : perplexity_windows(static_cast<int64_t>(ids.size()), ctx, stride)) {
            const std::vector<int32_t> window(ids.begin() + w.begin, ids.begin() + w.end);
            const auto start = std::chrono::steady_clock::now();
            const std::vector<float> rows = logits(window);
            run.model_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            LAMINA_CHECK(rows.size() == window.size() * static_cast<size_t>(n_vocab), "logits of the wrong size");
            // Row r of the window predicts id r + 1.
            double nll = 0.0;
            for (int64_t t = w.first_scored; t < w.end; ++t) {
                const double token = token_nll(rows.data() + (t - 1 - w.begin) * n_vocab, n_vocab, ids[t]);
                run.sums.add(token);
                nll += token;
            }
            run.window_nll.push_back(nll);
            run.window_scored.push_back(w.scored());
            run.evaluated_tokens += w.end - w.begin;
            ++run.windows;
            if (on_window) on_window(run);
        }
    }
    return run;
}

}  // namespace lamina
