// Sampling as one function shared by the Sampler and the backends' sample_rows: the Sampler draws the
// same tokens as before the refactor for the same seed, and CpuBackend::sample_rows given the Sampler's
// uniforms picks the Sampler's tokens, row by row in a batch with different settings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_set>

#include "../test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/sampler.h"

namespace lamina {
namespace {

// The Sampler as it was before sample_rows existed (commit a6d83ca), kept verbatim as the reference
// for "same seed, same tokens".
class LegacySampler {
public:
    explicit LegacySampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
    int32_t sample(std::span<float> logits, std::span<const int32_t> history) {
        std::unordered_set<int32_t> seen(history.begin(), history.end());
        if (p_.repetition_penalty != 1.0f)
            for (int32_t id : seen) {
                if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
                float& l = logits[static_cast<size_t>(id)];
                l = l < 0.0f ? l * p_.repetition_penalty : l / p_.repetition_penalty;
            }
        if (p_.greedy()) return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        const size_t n = logits.size();
        const size_t k = p_.top_k > 0 ? std::min(n, static_cast<size_t>(p_.top_k)) : n;
        candidates_.resize(n);
        for (size_t i = 0; i < n; ++i) candidates_[i] = {logits[i] / p_.temperature, static_cast<int32_t>(i)};
        auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
        std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k), candidates_.end(), by_logit);
        candidates_.resize(k);
        const float max_logit = candidates_[0].first;
        double sum = 0.0;
        for (auto& c : candidates_) {
            c.first = std::exp(c.first - max_logit);
            sum += c.first;
        }
        for (auto& c : candidates_) c.first = static_cast<float>(c.first / sum);
        if (p_.top_p > 0.0f && p_.top_p < 1.0f) {
            double cum = 0.0;
            size_t keep = 0;
            while (keep < candidates_.size()) {
                cum += candidates_[keep++].first;
                if (cum >= p_.top_p) break;
            }
            candidates_.resize(keep);
            sum = cum;
        } else {
            sum = 1.0;
        }
        std::uniform_real_distribution<double> uniform(0.0, sum);
        double r = uniform(rng_);
        for (const auto& c : candidates_) {
            r -= c.first;
            if (r <= 0.0) return c.second;
        }
        return candidates_.back().second;
    }

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> candidates_;
};

// Every combination the sampler distinguishes: greedy by temperature 0 or top_k 1, top_k none / small /
// past the vocabulary, top_p off / cutting, temperature below and above 1, with and without a penalty.
std::vector<SamplingParams> param_grid() {
    std::vector<SamplingParams> grid;
    uint64_t seed = 11;
    for (float temperature : {0.0f, 0.3f, 1.0f, 2.0f})
        for (int32_t top_k : {0, 1, 2, 50, 1000})
            for (float top_p : {0.0f, 0.5f, 0.9f, 1.0f})
                for (float penalty : {1.0f, 1.3f}) {
                    SamplingParams p;
                    p.temperature = temperature;
                    p.top_k = top_k;
                    p.top_p = top_p;
                    p.repetition_penalty = penalty;
                    p.seed = seed++;
                    grid.push_back(p);
                }
    return grid;
}

// Fresh logits for step `step` with a few ties (the top value repeated, a value repeated around rank 2).
std::vector<float> step_logits(size_t n, uint32_t seed, float scale) {
    auto l = test::random_vec(n, seed, scale);
    std::mt19937 rng(seed ^ 0x9e3779b9u);
    std::uniform_int_distribution<size_t> pick(0, n - 1);
    const size_t top = static_cast<size_t>(std::max_element(l.begin(), l.end()) - l.begin());
    l[pick(rng)] = l[top];
    const float v = l[pick(rng)];
    l[pick(rng)] = v;
    return l;
}

TEST(SamplingRefactor, SamplerDrawsTheSameTokensAsBefore) {
    const size_t n = 300;  // below 1000, so top_k 1000 is past the vocabulary
    int64_t draws = 0;
    for (const SamplingParams& p : param_grid()) {
        Sampler now(p);
        LegacySampler before(p);
        std::vector<int32_t> history = {1, 5, 5, 299, -1, 400};  // duplicates and ids outside the vocabulary
        for (int step = 0; step < 40; ++step) {
            auto a = step_logits(n, static_cast<uint32_t>(p.seed * 1000 + step), step % 2 ? 3.0f : 0.5f);
            auto b = a;
            const int32_t x = now.sample(a, history), y = before.sample(b, history);
            ASSERT_EQ(x, y) << "seed " << p.seed << " step " << step;
            ASSERT_EQ(a, b) << "the penalty is applied in place as before";
            history.push_back(x);
            ++draws;
        }
    }
    EXPECT_EQ(draws, static_cast<int64_t>(param_grid().size()) * 40);
}

TEST(CpuSampleRows, EqualsTheSamplerForTheSameSeed) {
    CpuBackend cpu;
    const size_t n = 257;
    for (const SamplingParams& p : param_grid()) {
        Sampler reference(p), uniforms(p);  // the second one only supplies the uniforms
        std::vector<int32_t> history = {3, 3, 250, 7};
        for (int step = 0; step < 20; ++step) {
            const auto logits = step_logits(n, static_cast<uint32_t>(p.seed * 77 + step), 2.0f);
            auto copy = logits;
            const int32_t want = reference.sample(copy, history);
            const SampleRowParams row = p.row(history);
            const double u = uniforms.next_uniform();
            int32_t got = -1;
            cpu.sample_rows(make_view(logits.data(), DType::F32, 1, static_cast<int64_t>(n)), {&row, 1}, {&u, 1}, &got);
            ASSERT_EQ(got, want) << "seed " << p.seed << " step " << step;
            history.push_back(want);
        }
    }
}

TEST(CpuSampleRows, RowsWithDifferentSettingsAreIndependent) {
    // A batch of rows, each with its own settings, history and uniform, equals one call per row; the
    // logits are not modified; f16/bf16 logits sample as their f32 values do.
    CpuBackend cpu;
    const int64_t n = 1001;
    const auto grid = param_grid();
    const int64_t rows = static_cast<int64_t>(grid.size());
    std::vector<float> logits;
    std::vector<std::vector<int32_t>> histories(grid.size());
    std::vector<SampleRowParams> params;
    std::vector<double> us;
    std::mt19937_64 rng(5);
    for (size_t r = 0; r < grid.size(); ++r) {
        const auto row = step_logits(static_cast<size_t>(n), static_cast<uint32_t>(900 + r), r % 3 ? 1.0f : 4.0f);
        logits.insert(logits.end(), row.begin(), row.end());
        histories[r] = {static_cast<int32_t>(r), static_cast<int32_t>(r) + 1, static_cast<int32_t>(r)};
        us.push_back(std::generate_canonical<double, 53>(rng));
    }
    for (size_t r = 0; r < grid.size(); ++r) params.push_back(grid[r].row(histories[r]));
    const auto original = logits;
    std::vector<int32_t> batched(grid.size(), -1);
    cpu.sample_rows(make_view(logits.data(), DType::F32, rows, n), params, us, batched.data());
    EXPECT_EQ(logits, original);
    for (size_t r = 0; r < grid.size(); ++r) {
        int32_t one = -1;
        cpu.sample_rows(make_view(logits.data() + r * n, DType::F32, 1, n), {&params[r], 1}, {&us[r], 1}, &one);
        EXPECT_EQ(batched[r], one) << "row " << r;
    }

    for (DType t : {DType::F16, DType::BF16}) {
        std::vector<uint16_t> half(logits.size());
        std::vector<float> widened(logits.size());
        convert_from_f32(t, logits.data(), half.data(), logits.size());
        convert_to_f32(t, half.data(), widened.data(), logits.size());
        std::vector<int32_t> from_half(grid.size(), -1), from_f32(grid.size(), -2);
        cpu.sample_rows(make_view(half.data(), t, rows, n), params, us, from_half.data());
        cpu.sample_rows(make_view(widened.data(), DType::F32, rows, n), params, us, from_f32.data());
        EXPECT_EQ(from_half, from_f32) << dtype_name(t);
    }
}

TEST(CpuSampleRows, EdgeUniformsAndTinyVocabularies) {
    CpuBackend cpu;
    // u = 0 takes the first candidate; u just below 1 the last kept one (or the one where the mass ends).
    const std::vector<float> logits = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f};
    SampleRowParams p;
    p.top_k = 0;
    const std::vector<double> edges = {0.0, 1.0 - 1e-12};
    std::vector<int32_t> got(1);
    cpu.sample_rows(make_view(logits.data(), DType::F32, 1, 5), {&p, 1}, {&edges[0], 1}, got.data());
    EXPECT_EQ(got[0], 1);  // ties: the lower id first
    cpu.sample_rows(make_view(logits.data(), DType::F32, 1, 5), {&p, 1}, {&edges[1], 1}, got.data());
    EXPECT_EQ(got[0], 3);  // the smallest logit is the last candidate
    p.top_k = 2;
    cpu.sample_rows(make_view(logits.data(), DType::F32, 1, 5), {&p, 1}, {&edges[1], 1}, got.data());
    EXPECT_EQ(got[0], 2);
    const float one = -7.0f;
    for (double u : edges) {
        cpu.sample_rows(make_view(&one, DType::F32, 1, 1), {&p, 1}, {&u, 1}, got.data());
        EXPECT_EQ(got[0], 0);
    }
}

}  // namespace
}  // namespace lamina
