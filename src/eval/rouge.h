// ROUGE as Google's rouge-score package (PyPI `rouge-score` 0.1.2, what Hugging Face `evaluate`'s
// "rouge" metric calls) computes it, with its default tokenizer and split_summaries=False:
//
//   tokens    lowercase, every run of characters outside [a-z0-9] becomes a separator, optionally
//             Porter-stem (NLTK's) the tokens longer than 3 characters.
//   rouge1/2  n-gram overlap with clipped counts: P = overlap / #pred n-grams, R = overlap / #target.
//   rougeL    longest common subsequence of the two token lists: P = lcs / |pred|, R = lcs / |target|.
//   rougeLsum summary-level LCS (Lin 2004, section 3.2): both texts split on "\n" into sentences; each
//             target sentence takes the union of its LCS with every prediction sentence; hits are
//             counted without reusing a token more often than it occurs on either side.
//   F = 2PR / (P + R), and 0 when P + R = 0; empty texts score 0.
//
// Texts are UTF-8. Python lowercases with full Unicode rules before the ASCII filter, so two
// non-ASCII characters survive as letters: U+0130 'İ' -> "i" (+ a combining dot, a separator) and
// U+212A KELVIN SIGN -> "k". Every other non-ASCII character is a separator.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lamina {

struct RougeScore {
    double precision = 0.0, recall = 0.0, fmeasure = 0.0;
};

struct RougeScores {
    RougeScore rouge1, rouge2, rougeL, rougeLsum;
};

// rougeLsum pairs every target sentence with every prediction sentence; more pairs than this (4096 x 4096)
// are refused with a lamina::Error instead of taking hours (no real summary has a thousand sentences).
constexpr size_t kMaxRougeSentencePairs = size_t{1} << 24;

// rouge-score's DefaultTokenizer(use_stemmer).tokenize(text).
std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer);

// rouge-score's RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer).score(target,
// prediction). Note the order: prediction first here, as in `lamina rouge --predictions --references`.
// Throws lamina::Error past kMaxRougeSentencePairs.
RougeScores score_rouge(std::string_view prediction, std::string_view target, bool use_stemmer);

// The longest common subsequence of two token sequences: its length, and rouge-score's lcs_ind(ref, can), the
// indices into ref of the LCS its table backtrack picks (rougeLsum's union depends on which). Both are
// bit-parallel: |ref| x |can| / 64 steps, and memory of O(sqrt(|ref|) x |can| / 64) words where rouge-score
// keeps the whole table (two 30k-token texts: about 1 MB instead of 3.6 GB). Exposed for tests.
size_t rouge_lcs_length(const std::vector<int32_t>& a, const std::vector<int32_t>& b);
std::vector<size_t> rouge_lcs_indices(const std::vector<int32_t>& ref, const std::vector<int32_t>& can);

// Mean F1 over the examples, times 100, per ROUGE type: the deterministic number that the bootstrap
// "mid" of HF evaluate (use_aggregator=True) and TensorRT-LLM's summarize.py estimate.
struct RougeAggregate {
    double rouge1 = 0.0, rouge2 = 0.0, rougeL = 0.0, rougeLsum = 0.0;
};
RougeAggregate aggregate_rouge(const std::vector<RougeScores>& scores);

// rouge-score's BootstrapAggregator on F1 (times 100): n_samples resamples of the examples with
// replacement; low / mid / high are the (1 - confidence) / 2, 50 and (1 + confidence) / 2 percentiles
// of the resampled means (numpy's default linear interpolation). rouge-score draws from numpy's global
// RNG; Lamina draws from its own generator seeded with `seed` (splitmix64), so its intervals are
// reproducible but not numerically identical to rouge-score's; each is an estimate of the same thing.
// All four types share the same resamples.
struct RougeInterval {
    double low = 0.0, mid = 0.0, high = 0.0;
};
struct RougeBootstrap {
    RougeInterval rouge1, rouge2, rougeL, rougeLsum;
};
// n_samples is at most kMaxBootstrapSamples (rouge-score and HF evaluate use 1000): each resample costs
// one pass over the examples and 32 bytes, so 2^31 of them would take 64 GB and hours.
constexpr int kMaxBootstrapSamples = 100000;
RougeBootstrap bootstrap_rouge(const std::vector<RougeScores>& scores, int n_samples = 1000,
                               double confidence = 0.95, uint64_t seed = 0);

}  // namespace lamina
