// ROUGE, following rouge_score/{tokenize,rouge_scorer,scoring}.py function by function (see rouge.h).
// Tokens are interned to ints per scored pair so n-grams and LCS compare integers.
#include "eval/rouge.h"

#include <algorithm>
#include <bit>
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

// The rows of the LCS table of a sequence (one row per token) against a fixed sequence `b`, bit-parallel
// (Allison & Dix 1986, Hyyrö 2004): row i is a bit vector S over b's positions, bit j clear where
// t[i][j+1] = t[i][j] + 1, so t[i][j] = the clear bits below j. Row 0 is all ones; row i takes
// U = S & match(token), S = (S + U) | (S & ~U), the addition carrying upwards across words. 64 cells a step,
// and a row is |b| / 8 bytes where rouge_score._lcs_table keeps (|a| + 1) x (|b| + 1) ints.
class LcsRows {
public:
    explicit LcsRows(const TokenIds& b) : words_((b.size() + 63) / 64), match_(words_, 0) {
        for (size_t j = 0; j < b.size(); ++j) positions_[b[j]].push_back(static_cast<uint32_t>(j));
    }
    size_t words() const { return words_; }
    void first(uint64_t* s) const { std::fill(s, s + words_, ~uint64_t{0}); }
    // s <- the row after s, for one more token of the other sequence.
    void next(uint64_t* s, int32_t token) {
        const auto it = positions_.find(token);
        if (it == positions_.end()) return;  // no match anywhere: the row is unchanged
        for (uint32_t j : it->second) match_[j / 64] |= uint64_t{1} << (j % 64);
        uint64_t carry = 0;
        for (size_t w = 0; w < words_; ++w) {
            const uint64_t x = s[w], u = x & match_[w];
            const uint64_t sum = x + u, with_carry = sum + carry;
            carry = static_cast<uint64_t>(sum < x) | static_cast<uint64_t>(with_carry < sum);
            s[w] = with_carry | (x & ~u);
        }
        for (uint32_t j : it->second) match_[j / 64] = 0;
    }
    // t[i][j] of row s: the LCS length of the row's prefix and b[:j].
    static size_t value(const uint64_t* s, size_t j) {
        size_t ones = 0;
        for (size_t w = 0; w < j / 64; ++w) ones += static_cast<size_t>(std::popcount(s[w]));
        if (j % 64) ones += static_cast<size_t>(std::popcount(s[j / 64] & ((uint64_t{1} << (j % 64)) - 1)));
        return j - ones;
    }

private:
    size_t words_;
    std::vector<uint64_t> match_;  // scratch: the positions of one token, set then cleared
    std::unordered_map<int32_t, std::vector<uint32_t>> positions_;
};

size_t lcs_length(const TokenIds& a, const TokenIds& b) {
    if (a.empty() || b.empty()) return 0;
    LcsRows rows(b);
    std::vector<uint64_t> s(rows.words());
    rows.first(s.data());
    for (int32_t token : a) rows.next(s.data(), token);
    return LcsRows::value(s.data(), b.size());
}

// rouge_scorer._score_lcs(target, prediction).
RougeScore score_lcs(const TokenIds& prediction, const TokenIds& target) {
    if (prediction.empty() || target.empty()) return {};
    const auto lcs = static_cast<double>(lcs_length(target, prediction));
    return make_score(lcs / static_cast<double>(prediction.size()), lcs / static_cast<double>(target.size()));
}

// Indices into `ref` of one LCS of ref and can: rouge_scorer.lcs_ind, whose backtracking through the table
// (a match goes diagonally; otherwise left in `can` only when that keeps a strictly longer LCS, else up)
// fixes which LCS it is; the union in rougeLsum depends on that choice. The same walk here, on rows
// recomputed a block at a time from checkpoints every sqrt(|ref|) rows: O(sqrt(|ref|) |can| / 64) words.
std::vector<size_t> lcs_indices(const TokenIds& ref, LcsRows& can_rows, const TokenIds& can) {
    const size_t n = ref.size(), m = can.size(), w = can_rows.words();
    if (n == 0 || m == 0) return {};
    const auto block = std::max<size_t>(1, static_cast<size_t>(std::sqrt(static_cast<double>(n))));
    std::vector<uint64_t> checkpoints((n / block + 1) * w), rows((block + 1) * w);
    std::vector<uint64_t> s(w);
    can_rows.first(s.data());
    for (size_t i = 0;; ++i) {  // s is row i here
        if (i % block == 0) std::copy(s.begin(), s.end(), checkpoints.begin() + static_cast<ptrdiff_t>(i / block * w));
        if (i == n) break;
        can_rows.next(s.data(), ref[i]);
    }
    std::vector<size_t> out;
    size_t i = n, j = m;
    while (i > 0 && j > 0) {
        // Rows b0..i of this block, from its checkpoint: row r at rows[(r - b0) * w].
        const size_t b0 = (i - 1) / block * block;
        std::copy_n(checkpoints.begin() + static_cast<ptrdiff_t>(b0 / block * w), w, rows.begin());
        for (size_t r = b0 + 1; r <= i; ++r) {
            std::copy_n(rows.begin() + static_cast<ptrdiff_t>((r - 1 - b0) * w), w, rows.begin() + static_cast<ptrdiff_t>((r - b0) * w));
            can_rows.next(rows.data() + (r - b0) * w, ref[r - 1]);
        }
        auto t = [&](size_t r, size_t col) { return LcsRows::value(rows.data() + (r - b0) * w, col); };
        while (i > b0 && j > 0) {
            if (ref[i - 1] == can[j - 1]) {
                out.push_back(i - 1);
                --i;
                --j;
            } else if (t(i, j - 1) > t(i - 1, j)) {
                --j;
            } else {
                --i;
            }
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

// rouge_scorer._summary_level_lcs(target sentences, prediction sentences).
RougeScore score_summary_lcs(const std::vector<TokenIds>& prediction, const std::vector<TokenIds>& target,
                             size_t vocab_size) {
    if (prediction.empty() || target.empty()) return {};
    // Every target sentence meets every prediction sentence: refuse counts no summary has, which would
    // take hours here and in rouge-score alike.
    if (prediction.size() > kMaxRougeSentencePairs / target.size()) {
        throw Error("rougeLsum: " + std::to_string(prediction.size()) + " x " + std::to_string(target.size()) +
                    " sentences make more than the " + std::to_string(kMaxRougeSentencePairs) +
                    " sentence pairs Lamina scores (texts are split into sentences at newlines)");
    }
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
    std::vector<LcsRows> prediction_rows;
    prediction_rows.reserve(prediction.size());
    for (const TokenIds& can : prediction) prediction_rows.emplace_back(can);
    int64_t hits = 0;
    for (const TokenIds& ref : target) {
        // Union over prediction sentences of the LCS positions in `ref`, in increasing order.
        std::vector<bool> in_union(ref.size(), false);
        for (size_t k = 0; k < prediction.size(); ++k)
            for (size_t i : lcs_indices(ref, prediction_rows[k], prediction[k])) in_union[i] = true;
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

size_t rouge_lcs_length(const std::vector<int32_t>& a, const std::vector<int32_t>& b) { return lcs_length(a, b); }

std::vector<size_t> rouge_lcs_indices(const std::vector<int32_t>& ref, const std::vector<int32_t>& can) {
    LcsRows can_rows(can);
    return lcs_indices(ref, can_rows, can);
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
    if (n_samples <= 0 || n_samples > kMaxBootstrapSamples) {
        throw Error("ROUGE bootstrap: n_samples must be in [1, " + std::to_string(kMaxBootstrapSamples) + "], got " +
                    std::to_string(n_samples));
    }
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
