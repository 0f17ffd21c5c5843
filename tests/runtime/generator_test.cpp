// Generator and sampler behaviour: limits, stop ids, batching equivalence, seeded sampling.
#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "core/error.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"

namespace lamina {
namespace {

using test::TempDir;

class TinyGenerator : public test::TinyEngineTest {};

TEST_F(TinyGenerator, RejectsBadPromptsAndBudgets) {
    Generator gen(*engine, *backend, 1);
    GenerationParams p;
    p.max_new_tokens = 4;
    EXPECT_THROW(gen.generate({{}}, p), Error);                              // empty prompt
    EXPECT_THROW(gen.generate({std::vector<int32_t>(25, 5)}, p), Error);     // > max_input_len 24
    EXPECT_THROW(gen.generate({{1, 999}}, p), Error);                        // id outside the vocabulary
    p.max_new_tokens = 21;                                                   // > max_output_len 20
    EXPECT_THROW(gen.generate({{1, 2}}, p), Error);
    EXPECT_THROW(Generator(*engine, *backend, 5), Error);                    // > max_batch_size 4
}

TEST_F(TinyGenerator, BatchedEqualsOneAtATime) {
    // Prompts of different lengths (and a long one that spans prefill chunks of other sequences):
    // every sequence's tokens must not depend on what it was batched with.
    const std::vector<std::vector<int32_t>> prompts = {
        {1, 40, 41, 42}, {1, 7}, {1, 100, 200, 300, 50, 60, 70, 80, 90, 10, 11, 12, 13, 14, 15, 16, 17}, {1, 300}, {9}};
    GenerationParams p;
    p.max_new_tokens = 12;
    p.sampling.temperature = 0.8f;
    p.sampling.top_k = 20;
    p.sampling.seed = 7;
    Generator one(*engine, *backend, 1), four(*engine, *backend, 4);
    const auto batched = four.generate(prompts, p);
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(one.generate({prompts[i]}, p)[0], batched[i]) << "prompt " << i;
}

TEST_F(TinyGenerator, StopsAtStopIdAndIncludesIt) {
    Generator gen(*engine, *backend, 1);
    GenerationParams p;
    p.max_new_tokens = 16;
    p.sampling.temperature = 0.0f;
    const auto free_run = gen.generate({{1, 40, 41}}, p)[0];
    p.stop_ids = {free_run[3]};
    const auto stopped = gen.generate({{1, 40, 41}}, p)[0];
    const auto first = std::find(free_run.begin(), free_run.end(), free_run[3]) - free_run.begin();
    EXPECT_EQ(stopped.size(), static_cast<size_t>(first + 1));
    EXPECT_EQ(stopped.back(), free_run[3]);
}

TEST(Sampler, ArgmaxTakesFirstOfTies) {
    std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
    EXPECT_EQ(argmax(l), 1);
}

TEST(Sampler, RepetitionPenaltyFollowsHuggingFace) {
    std::vector<float> l = {2.0f, -2.0f, 1.0f};
    const std::vector<int32_t> history = {0, 1, 0};
    apply_repetition_penalty(l, history, 2.0f);
    EXPECT_FLOAT_EQ(l[0], 1.0f);   // positive: divided
    EXPECT_FLOAT_EQ(l[1], -4.0f);  // negative: multiplied
    EXPECT_FLOAT_EQ(l[2], 1.0f);   // unseen: unchanged
}

TEST(Sampler, SeededDrawsRepeatAndRespectTopK) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 3;
    p.seed = 99;
    std::vector<float> base(50);
    for (size_t i = 0; i < base.size(); ++i) base[i] = static_cast<float>(i % 7) * 0.3f;
    Sampler a(p), b(p);
    std::vector<int32_t> seen;
    for (int i = 0; i < 200; ++i) {
        auto la = base, lb = base;
        const int32_t x = a.sample(la, {}), y = b.sample(lb, {});
        EXPECT_EQ(x, y);
        seen.push_back(x);
    }
    // Top-3 by logit are the ids with i % 7 == 6 (value 1.8): 6, 13, 20 (ties broken by lower id).
    for (int32_t id : seen) EXPECT_TRUE(id == 6 || id == 13 || id == 20) << id;
    EXPECT_GT(std::count(seen.begin(), seen.end(), 13), 20);
}

// Probabilities 0.4 (id 2), 0.3 (id 0), 0.2 (id 3), 0.1 (id 1): top_p 0.6 keeps ids 2 and 0 (0.4 < 0.6 <= 0.7)
// and draws them 4 : 3. Without the cut ids 3 and 1 take 30% of the draws, so a sampler that ignores top_p
// shows one in 2000 draws but with probability 0.7^2000 (1e-310).
TEST(Sampler, TopPKeepsTheSmallestNucleus) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 0.6f;
    p.seed = 5;
    const std::vector<float> base = {std::log(0.3f), std::log(0.1f), std::log(0.4f), std::log(0.2f)};
    Sampler s(p);
    std::vector<int> count(base.size(), 0);
    constexpr int kDraws = 2000;
    for (int i = 0; i < kDraws; ++i) {
        auto l = base;
        ++count[static_cast<size_t>(s.sample(l, {}))];
    }
    EXPECT_EQ(count[1], 0) << "id 1 is outside the nucleus";
    EXPECT_EQ(count[3], 0) << "id 3 is outside the nucleus";
    // id 2's count is Binomial(2000, 4/7): mean 1143, sd 22; 5 sd either way.
    EXPECT_NEAR(count[2], kDraws * 4 / 7, 110);

    // Fixed uniforms: the draw walks the kept mass 0.7, so u * 0.7 up to 0.4 is id 2 and above it id 0. Without
    // the cut it walks the whole mass: u 0.56 would give id 0, u 0.8 id 3 and u 0.99 id 1.
    const SampleRowParams row = p.row({});
    std::vector<std::pair<float, int32_t>> scratch;
    for (const auto& [u, id] : std::vector<std::pair<double, int32_t>>{{0.0, 2}, {0.5, 2}, {0.56, 2}, {0.6, 0}, {0.8, 0}, {0.99, 0}}) {
        auto l = base;
        EXPECT_EQ(sample_row(l, row, u, scratch), id) << "u " << u;
    }
}

TEST(Sampler, InvalidParamsAreErrors) {
    SamplingParams p;
    p.temperature = -1.0f;
    EXPECT_THROW(p.validate(), Error);
    p = {};
    p.top_p = 1.5f;
    EXPECT_THROW(p.validate(), Error);
    p = {};
    p.repetition_penalty = 0.0f;
    EXPECT_THROW(p.validate(), Error);
    p = {};
    p.top_k = -2;
    EXPECT_THROW(p.validate(), Error);
}

}  // namespace
}  // namespace lamina
