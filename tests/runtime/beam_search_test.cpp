// Beam search against Hugging Face transformers (tests/data/smollm2_beams.json, made by
// tools/hf_reference.py smollm2), plus its limits, flag parsing and batching independence.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "core/error.h"
#include "runtime/beam_search.h"

namespace lamina {
namespace {

using test::TempDir;

// sequences_scores are sums of up to 24 log-probs divided by the length; lamina's fp32 logits differ
// from PyTorch's by ~1e-5 relative (summation order). Measured: max |difference| 1.7e-5 over the
// 30 returned scores.
constexpr float kScoreTol = 1e-4f;

BeamSearchParams params_from(const nlohmann::json& config, const nlohmann::json& ref) {
    BeamSearchParams p;
    p.num_beams = config.at("num_beams");
    p.num_return_sequences = config.at("num_return_sequences");
    p.max_new_tokens = config.at("max_new_tokens");
    p.length_penalty = config.at("length_penalty");
    p.early_stopping = config.at("early_stopping").get<bool>() ? EarlyStopping::True : EarlyStopping::Heuristic;
    p.no_repeat_ngram_size = config.value("no_repeat_ngram_size", 0);
    p.repetition_penalty = config.value("repetition_penalty", 1.0f);
    p.eos_ids = {ref.at("eos_token_id").get<int32_t>()};
    return p;
}

// HF pads a sequence that ended on eos with pad_token_id up to the longest returned one.
std::vector<int32_t> strip_padding(std::vector<int32_t> seq, int32_t eos) {
    const auto it = std::find(seq.begin(), seq.end(), eos);
    if (it != seq.end()) seq.erase(it + 1, seq.end());
    return seq;
}

class BeamSearchSmolLM2 : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!std::filesystem::exists(test::smollm2_gguf())) return;
        dir_ = new TempDir;
        test::build_from(test::smollm2_gguf(), dir_->path(), DType::F32, 32, 24, /*max_batch_size=*/4);
        engine_ = new Engine(dir_->path());
    }
    static void TearDownTestSuite() {
        delete engine_;
        delete dir_;
        engine_ = nullptr;
        dir_ = nullptr;
    }
    static TempDir* dir_;
    static Engine* engine_;
};
TempDir* BeamSearchSmolLM2::dir_ = nullptr;
Engine* BeamSearchSmolLM2::engine_ = nullptr;

TEST_F(BeamSearchSmolLM2, BeamsEqualTransformers) {
    LAMINA_REQUIRE_SMOLLM2();
    const auto ref = test::read_json(test::data_dir() / "smollm2_beams.json");
    const int32_t eos = ref.at("eos_token_id");
    auto backend = make_cpu_backend();
    int n_cases = 0;
    for (const auto& c : ref["cases"]) {
        const BeamSearchParams p = params_from(c["config"], ref);
        const auto ids = c["input_ids"].get<std::vector<int32_t>>();
        ASSERT_EQ(engine_->tokenizer().encode(c["text"].get<std::string>(), true, false), ids);
        BeamSearch search(*engine_, *backend, 1, p.num_beams);
        const auto out = search.generate({ids}, p)[0];
        const auto expected = c["sequences"].get<std::vector<std::vector<int32_t>>>();
        const auto scores = c["sequences_scores"].get<std::vector<float>>();
        ASSERT_EQ(out.size(), expected.size()) << c["config"].dump() << " " << c["text"];
        for (size_t r = 0; r < out.size(); ++r) {
            EXPECT_EQ(out[r].tokens, strip_padding(expected[r], eos))
                << c["config"].dump() << " " << c["text"] << " beam " << r;
            EXPECT_NEAR(out[r].score, scores[r], kScoreTol) << c["config"].dump() << " " << c["text"] << " beam " << r;
        }
        ++n_cases;
    }
    EXPECT_EQ(n_cases, 9);
}

class BeamSearchTiny : public test::TinyEngineTest {};

TEST_F(BeamSearchTiny, SlotLimitErrorSaysWhatToRebuildWith) {
    try {
        BeamSearch search(*engine, *backend, 2, 4);  // 8 slots > max_batch_size 4
        FAIL() << "expected an error";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("max_batch_size is 4"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--max_batch_size 8"), std::string::npos) << msg;
    }
    EXPECT_NO_THROW(BeamSearch(*engine, *backend, 1, 4));
}

TEST_F(BeamSearchTiny, RejectsBadParamsAndPrompts) {
    BeamSearch search(*engine, *backend, 1, 2);
    BeamSearchParams p;
    p.num_beams = 2;
    p.max_new_tokens = 4;
    EXPECT_THROW(search.generate({{}}, p), Error);                           // empty prompt
    EXPECT_THROW(search.generate({std::vector<int32_t>(25, 5)}, p), Error);  // > max_input_len 24
    EXPECT_THROW(search.generate({{1, 999}}, p), Error);                     // id outside the vocabulary
    BeamSearchParams q = p;
    q.max_new_tokens = 21;  // > max_output_len 20
    EXPECT_THROW(search.generate({{1, 2}}, q), Error);
    q = p;
    q.num_return_sequences = 3;  // > num_beams
    EXPECT_THROW(search.generate({{1, 2}}, q), Error);
    q = p;
    q.num_beams = 3;  // not what the search was set up for
    EXPECT_THROW(search.generate({{1, 2}}, q), Error);
    q = p;
    q.repetition_penalty = 0.0f;
    EXPECT_THROW(search.generate({{1, 2}}, q), Error);
    q = p;
    q.eos_ids = {384};
    EXPECT_THROW(search.generate({{1, 2}}, q), Error);
}

TEST_F(BeamSearchTiny, ReturnsSortedHypothesesWithinBudget) {
    BeamSearch search(*engine, *backend, 2, 2);
    BeamSearchParams p;
    p.num_beams = 2;
    p.max_new_tokens = 10;
    p.no_repeat_ngram_size = 1;  // every token at most once, prompt included
    const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41}, {1, 7, 8, 9, 10}};
    const auto out = search.generate(prompts, p);
    ASSERT_EQ(out.size(), 2u);
    for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_EQ(out[i].size(), 2u);
        EXPECT_GE(out[i][0].score, out[i][1].score);
        for (const auto& h : out[i]) {
            EXPECT_EQ(h.tokens.size(), 10u);  // no eos ids: every hypothesis runs to the budget
            std::vector<int32_t> all = prompts[i];
            all.insert(all.end(), h.tokens.begin(), h.tokens.end());
            std::sort(all.begin(), all.end());
            EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a token repeats";
        }
    }
    EXPECT_GT(search.stats().copied_positions, 0);
    EXPECT_EQ(search.stats().first_token_seconds.size(), 2u);
}

TEST_F(BeamSearchTiny, SeveralPromptsAtOnceEqualOneAtATime) {
    // Prompts of different lengths share forward steps; each must get the beams it gets alone.
    // Scores may differ in the last bits (the matmul of a bigger batch sums in another order).
    const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41, 42}, {1, 7}, {1, 100, 200, 300, 50, 60, 70, 80, 90}};
    BeamSearchParams p;
    p.num_beams = 2;
    p.max_new_tokens = 12;
    p.eos_ids = {2};
    p.repetition_penalty = 1.3f;
    BeamSearch one(*engine, *backend, 1, 2), two(*engine, *backend, 2, 2);
    const auto together = two.generate(prompts, p);
    for (size_t i = 0; i < prompts.size(); ++i) {
        const auto alone = one.generate({prompts[i]}, p)[0];
        ASSERT_EQ(alone.size(), together[i].size());
        for (size_t r = 0; r < alone.size(); ++r) {
            EXPECT_EQ(alone[r].tokens, together[i][r].tokens) << "prompt " << i << " beam " << r;
            EXPECT_NEAR(alone[r].score, together[i][r].score, 1e-5f) << "prompt " << i << " beam " << r;
        }
    }
}

TEST(BeamSearchFlags, EarlyStoppingNames) {
    EXPECT_EQ(early_stopping_from_name("true"), EarlyStopping::True);
    EXPECT_EQ(early_stopping_from_name("1"), EarlyStopping::True);
    EXPECT_EQ(early_stopping_from_name("false"), EarlyStopping::Heuristic);
    EXPECT_EQ(early_stopping_from_name("0"), EarlyStopping::Heuristic);
    EXPECT_EQ(early_stopping_from_name("never"), EarlyStopping::Never);
    EXPECT_EQ(early_stopping_from_name("2"), EarlyStopping::Never);  // summarize.py: other integers
    EXPECT_THROW(early_stopping_from_name("maybe"), Error);
    EXPECT_THROW(early_stopping_from_name(""), Error);
    EXPECT_EQ(early_stopping_name(EarlyStopping::Never), "never");
}

}  // namespace
}  // namespace lamina
