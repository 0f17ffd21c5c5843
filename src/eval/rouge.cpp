// ROUGE, following rouge_score/{tokenize,rouge_scorer,scoring}.py function by function (see rouge.h).
// Tokens are interned to ints per scored pair so n-grams and LCS compare integers.
#include "eval/rouge.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "core/error.h"
#include "eval/porter_stemmer.h"

namespace lamina {

namespace {

using TokenIds = std::vector<int32_t>;

// Python's text.lower() then re.sub(r"[^a-z0-9]+", " ", ...), on UTF-8 bytes, calling `emit` for
// each maximal [a-z0-9]+ run. Bytes of any other non-ASCII character are separators.
template <typename Emit>
void for_each_alnum_run(std::string_view text, Emit emit) {
    std::string run;
    auto flush = [&] {
        if (!run.empty()) emit(run);
        run.clear();
    };
    const size_t n = text.size();
    for (size_t i = 0; i < n;) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
                run += static_cast<char>(c);
            } else if (c >= 'A' && c <= 'Z') {
                run += static_cast<char>(c - 'A' + 'a');
            } else {
                flush();
            }
            ++i;
        } else if (c == 0xC4 && i + 1 < n && static_cast<unsigned char>(text[i + 1]) == 0xB0) {
            run += 'i';  // U+0130 lowercases to "i" + U+0307 (combining dot above), which separates
            flush();
            i += 2;
        } else if (c == 0xE2 && i + 2 < n && static_cast<unsigned char>(text[i + 1]) == 0x84 &&
                   static_cast<unsigned char>(text[i + 2]) == 0xAA) {
            run += 'k';  // U+212A KELVIN SIGN lowercases to ASCII "k"
            i += 3;
        } else {
            flush();
            ++i;
        }
    }
    flush();
}

// Maps token strings to small ints, shared by the two texts of one pair.
class TokenInterner {
public:
    explicit TokenInterner(bool use_stemmer) : use_stemmer_(use_stemmer) {}
    TokenIds ids(std::string_view text) {
        TokenIds out;
        for (const std::string& tok : rouge_tokenize(text, use_stemmer_))
            out.push_back(ids_.try_emplace(tok, static_cast<int32_t>(ids_.size())).first->second);
        return out;
    }
    size_t size() const { return ids_.size(); }

private:
    bool use_stemmer_;
    std::unordered_map<std::string, int32_t> ids_;
};

double fmeasure(double precision, double recall) {
    return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

RougeScore make_score(double precision, double recall) { return {precision, recall, fmeasure(precision, recall)}; }

// rouge_scorer._score_ngrams(_create_ngrams(target, n), _create_ngrams(prediction, n)).
RougeScore score_ngrams(const TokenIds& prediction, const TokenIds& target, size_t n) {
    auto count = [n](const TokenIds& t) {
        std::map<TokenIds, int64_t> c;
        for (size_t i = 0; i + n <= t.size(); ++i) ++c[TokenIds(t.begin() + i, t.begin() + i + n)];
        return c;
    };
    const auto pred = count(prediction), tgt = count(target);
    int64_t overlap = 0;
    for (const auto& [gram, k] : tgt)
        if (auto it = pred.find(gram); it != pred.end()) overlap += std::min(k, it->second);
    const auto n_pred = static_cast<int64_t>(prediction.size() >= n ? prediction.size() - n + 1 : 0);
    const auto n_tgt = static_cast<int64_t>(target.size() >= n ? target.size() - n + 1 : 0);
    return make_score(static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(n_pred, 1)),
                      static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(n_tgt, 1)));
}

// (|a|+1) x (|b|+1) LCS table, row-major: t[i][j] = LCS length of a[:i], b[:j] (rouge_scorer._lcs_table).
std::vector<int32_t> lcs_table(const TokenIds& a, const TokenIds& b) {
    const size_t cols = b.size() + 1;
    std::vector<int32_t> t((a.size() + 1) * cols, 0);
    for (size_t i = 1; i <= a.size(); ++i)
        for (size_t j = 1; j <= b.size(); ++j)
            t[i * cols + j] = a[i - 1] == b[j - 1] ? t[(i - 1) * cols + j - 1] + 1
                                                   : std::max(t[(i - 1) * cols + j], t[i * cols + j - 1]);
    return t;
}

// rouge_scorer._score_lcs(target, prediction).
RougeScore score_lcs(const TokenIds& prediction, const TokenIds& target) {
    if (prediction.empty() || target.empty()) return {};
    const double lcs = lcs_table(target, prediction).back();
    return make_score(lcs / static_cast<double>(prediction.size()), lcs / static_cast<double>(target.size()));
}

// Indices into `ref` of one LCS of ref and can: rouge_scorer.lcs_ind, whose backtracking (prefer moving
// left in `can` only when that keeps a strictly longer LCS) fixes which LCS it is. The union in
// rougeLsum depends on that choice.
std::vector<size_t> lcs_indices(const TokenIds& ref, const TokenIds& can) {
    const std::vector<int32_t> t = lcs_table(ref, can);
    const size_t cols = can.size() + 1;
    std::vector<size_t> out;
    size_t i = ref.size(), j = can.size();
    while (i > 0 && j > 0) {
        if (ref[i - 1] == can[j - 1]) {
            out.push_back(i - 1);
            --i;
            --j;
        } else if (t[i * cols + j - 1] > t[(i - 1) * cols + j]) {
            --j;
        } else {
            --i;
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

// rouge_scorer._summary_level_lcs(target sentences, prediction sentences).
RougeScore score_summary_lcs(const std::vector<TokenIds>& prediction, const std::vector<TokenIds>& target,
                             size_t vocab_size) {
    if (prediction.empty() || target.empty()) return {};
    size_t m = 0, n = 0;
    std::vector<int64_t> count_target(vocab_size, 0), count_prediction(vocab_size, 0);
    for (const TokenIds& s : target) {
        m += s.size();
        for (int32_t tok : s) ++count_target[tok];
    }
    for (const TokenIds& s : prediction) {
        n += s.size();
        for (int32_t tok : s) ++count_prediction[tok];
    }
    if (m == 0 || n == 0) return {};
    int64_t hits = 0;
    for (const TokenIds& ref : target) {
        // Union over prediction sentences of the LCS positions in `ref`, in increasing order.
        std::vector<bool> in_union(ref.size(), false);
        for (const TokenIds& can : prediction)
            for (size_t i : lcs_indices(ref, can)) in_union[i] = true;
        for (size_t i = 0; i < ref.size(); ++i) {
            const int32_t tok = ref[i];
            // A token counts at most as often as it occurs in each summary (as ROUGE-1.5.5 does).
            if (in_union[i] && count_prediction[tok] > 0 && count_target[tok] > 0) {
                ++hits;
                --count_prediction[tok];
                --count_target[tok];
            }
        }
    }
    return make_score(static_cast<double>(hits) / static_cast<double>(n),
                      static_cast<double>(hits) / static_cast<double>(m));
}

// Python's text.split("\n") without the empty pieces.
std::vector<std::string_view> split_sentences(std::string_view text) {
    std::vector<std::string_view> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        if (end > start) out.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

// splitmix64 (Steele, Lea, Flood 2014): a small seeded generator with no global state.
class SplitMix64 {
public:
    explicit SplitMix64(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, n); the modulo bias is below n / 2^64, negligible for any example count.
    size_t below(size_t n) { return static_cast<size_t>(next() % n); }

private:
    uint64_t state_;
};

// numpy.percentile(values, q) with its default "linear" method; sorts `values`.
double percentile(std::vector<double>& values, double q) {
    std::sort(values.begin(), values.end());
    const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

}  // namespace

std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer) {
    std::vector<std::string> tokens;
    for_each_alnum_run(text, [&](const std::string& run) {
        // Only words of more than 3 characters are stemmed (rouge_score/tokenize.py).
        std::string tok = use_stemmer && run.size() > 3 ? porter_stem(run) : run;
        if (!tok.empty()) tokens.push_back(std::move(tok));
    });
    return tokens;
}

RougeScores score_rouge(std::string_view prediction, std::string_view target, bool use_stemmer) {
    TokenInterner interner(use_stemmer);
    const TokenIds pred = interner.ids(prediction), tgt = interner.ids(target);
    std::vector<TokenIds> pred_sents, tgt_sents;
    for (std::string_view s : split_sentences(prediction)) pred_sents.push_back(interner.ids(s));
    for (std::string_view s : split_sentences(target)) tgt_sents.push_back(interner.ids(s));
    RougeScores r;
    r.rouge1 = score_ngrams(pred, tgt, 1);
    r.rouge2 = score_ngrams(pred, tgt, 2);
    r.rougeL = score_lcs(pred, tgt);
    r.rougeLsum = score_summary_lcs(pred_sents, tgt_sents, interner.size());
    return r;
}

RougeAggregate aggregate_rouge(const std::vector<RougeScores>& scores) {
    if (scores.empty()) throw Error("ROUGE: no examples to aggregate");
    RougeAggregate a;
    for (const RougeScores& s : scores) {
        a.rouge1 += s.rouge1.fmeasure;
        a.rouge2 += s.rouge2.fmeasure;
        a.rougeL += s.rougeL.fmeasure;
        a.rougeLsum += s.rougeLsum.fmeasure;
    }
    const double scale = 100.0 / static_cast<double>(scores.size());
    a.rouge1 *= scale;
    a.rouge2 *= scale;
    a.rougeL *= scale;
    a.rougeLsum *= scale;
    return a;
}

RougeBootstrap bootstrap_rouge(const std::vector<RougeScores>& scores, int n_samples, double confidence,
                               uint64_t seed) {
    if (scores.empty()) throw Error("ROUGE: no examples to aggregate");
    if (n_samples <= 0) throw Error("ROUGE bootstrap: n_samples must be positive, got " + std::to_string(n_samples));
    if (!(confidence >= 0.0 && confidence <= 1.0))
        throw Error("ROUGE bootstrap: confidence must be in [0, 1], got " + std::to_string(confidence));
    SplitMix64 rng(seed);
    const size_t n = scores.size();
    std::vector<std::vector<double>> means(4, std::vector<double>(static_cast<size_t>(n_samples)));
    std::vector<RougeScores> sample(n);
    for (size_t s = 0; s < static_cast<size_t>(n_samples); ++s) {
        for (size_t i = 0; i < n; ++i) sample[i] = scores[rng.below(n)];
        const RougeAggregate a = aggregate_rouge(sample);
        means[0][s] = a.rouge1;
        means[1][s] = a.rouge2;
        means[2][s] = a.rougeL;
        means[3][s] = a.rougeLsum;
    }
    const double delta = 100.0 * (1.0 - confidence) / 2.0;
    auto interval = [&](std::vector<double>& v) {
        return RougeInterval{percentile(v, delta), percentile(v, 50.0), percentile(v, 100.0 - delta)};
    };
    return {interval(means[0]), interval(means[1]), interval(means[2]), interval(means[3])};
}

}  // namespace lamina
