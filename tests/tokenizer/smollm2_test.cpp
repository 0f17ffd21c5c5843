// The default model's tokenizer (SmolLM2-135M-Instruct, byte-level BPE with the "smollm"
// pre-tokenizer): vocab facts, special tokens, chat prompt, and round trips over CNN/DailyMail.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

std::vector<std::string> cnn_articles() {
    std::vector<std::string> articles;
    std::istringstream lines(test::read_file(test::cnn_dailymail_jsonl()));
    std::string line;
    while (std::getline(lines, line)) articles.push_back(nlohmann::json::parse(line).at("article").get<std::string>());
    return articles;
}

class TokenizerSmolLM2 : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!std::filesystem::exists(test::smollm2_gguf())) return;
        vocab_ = vocab_from_gguf(GgufFile(test::smollm2_gguf()));
        tokenizer_.emplace(*vocab_);
        articles_ = cnn_articles();
    }
    static void TearDownTestSuite() {
        tokenizer_.reset();
        vocab_.reset();
        articles_.clear();
    }
    void SetUp() override {
        if (!vocab_) GTEST_SKIP() << test::smollm2_gguf() << " is missing (scripts/ fetch it; CI has it)";
    }
    static inline std::optional<Vocab> vocab_;
    static inline std::optional<Tokenizer> tokenizer_;
    static inline std::vector<std::string> articles_;
};

TEST_F(TokenizerSmolLM2, VocabFacts) {
    const Vocab& v = *vocab_;
    EXPECT_EQ(v.kind, TokenizerKind::Bpe);
    EXPECT_EQ(v.pre, "smollm");
    EXPECT_EQ(v.n_vocab(), 49152);
    EXPECT_EQ(v.bos_id, 1);
    EXPECT_EQ(v.eos_id, 2);
    EXPECT_FALSE(v.add_bos);
    EXPECT_FALSE(v.add_space_prefix);
    EXPECT_EQ(v.tokens[2], "<|im_end|>");
    EXPECT_NE(std::find(v.stop_ids.begin(), v.stop_ids.end(), 2), v.stop_ids.end());
    EXPECT_TRUE(tokenizer_->is_stop(2));
    EXPECT_FALSE(tokenizer_->is_stop(1));
    EXPECT_EQ(tokenizer_->token_piece(1), "<|im_start|>");
}

TEST_F(TokenizerSmolLM2, ParseSpecialSplitsControlTokens) {
    const auto ids = tokenizer_->encode("<|im_start|>user", false, /*parse_special=*/true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], 1);
    std::vector<int32_t> expected{1};
    for (int32_t id : tokenizer_->encode("user", false, false)) expected.push_back(id);
    EXPECT_EQ(ids, expected);
    // Without parse_special the same text is ordinary characters, never the control token.
    const auto plain = tokenizer_->encode("<|im_start|>user", false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
    EXPECT_EQ(tokenizer_->decode(plain), "<|im_start|>user");
    // add_special adds nothing for SmolLM2 (add_bos = add_eos = false).
    EXPECT_EQ(tokenizer_->encode("user", true, false), tokenizer_->encode("user", false, false));
}

TEST_F(TokenizerSmolLM2, ChatTemplateMatchesTheCheckpointTemplate) {
    // What the template stored in the GGUF renders for one user message (default system message added).
    const std::string expected =
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n";
    const std::string prompt = apply_chat_template(*vocab_, {{"user", "What is the capital of France?"}}, true);
    EXPECT_EQ(prompt, expected);
    // With a system message first, the template writes no default one; without the generation prompt,
    // the prompt ends after the last message.
    EXPECT_EQ(apply_chat_template(*vocab_, {{"system", "Be brief."}, {"user", "Hi"}}, false),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    const auto ids = tokenizer_->encode(prompt, false, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 3);  // three <|im_start|>
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 2);  // two <|im_end|>
    EXPECT_EQ(tokenizer_->decode(ids), prompt);
    EXPECT_EQ(tokenizer_->decode(ids, /*skip_special=*/true).find("<|im_start|>"), std::string::npos);
}

// Every article survives encode -> decode byte for byte; prints the throughput.
TEST_F(TokenizerSmolLM2, CnnDailyMailRoundTrip) {
    ASSERT_EQ(articles_.size(), 500u);
    const Tokenizer fresh(*vocab_);  // an empty piece cache, so the timing includes all BPE work
    size_t n_bytes = 0, n_tokens = 0;
    double encode_s = 0;
    for (size_t i = 0; i < articles_.size(); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto ids = fresh.encode(articles_[i], false, false);
        encode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        n_bytes += articles_[i].size();
        n_tokens += ids.size();
        ASSERT_EQ(fresh.decode(ids), articles_[i]) << "article " << i;
    }
    std::printf("[ info ] encoded %zu articles, %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", articles_.size(),
                n_bytes, n_tokens, encode_s, n_bytes / encode_s / 1e6);
    // A sanity bound far above the expected ~1 s, so only a pathological slowdown fails.
    constexpr double kMaxEncodeSeconds = 30.0;
    EXPECT_LT(encode_s, kMaxEncodeSeconds);
}

TEST_F(TokenizerSmolLM2, SaveLoadVocabGivesIdenticalEncodings) {
    test::TempDir dir("smollm2_vocab");
    const auto file = dir.path() / "tokenizer.lamina.json";
    save_vocab(*vocab_, file);
    const Vocab loaded = load_vocab(file);
    EXPECT_EQ(loaded.tokens, vocab_->tokens);
    EXPECT_EQ(loaded.types, vocab_->types);
    EXPECT_EQ(loaded.merges, vocab_->merges);
    EXPECT_EQ(loaded.pre, vocab_->pre);
    EXPECT_EQ(loaded.stop_ids, vocab_->stop_ids);
    EXPECT_EQ(loaded.chat_template, vocab_->chat_template);
    const Tokenizer reloaded(loaded);
    for (size_t i = 0; i < articles_.size(); ++i) {
        ASSERT_EQ(reloaded.encode(articles_[i], false, false), tokenizer_->encode(articles_[i], false, false))
            << "article " << i;
    }
}

// tests/data/smollm2_hf_tokenizer holds the tokenizer files transformers writes for this GGUF.
TEST_F(TokenizerSmolLM2, HfDirectoryEncodesLikeTheGguf) {
    if (!std::filesystem::exists(test::smollm2_hf_dir() / "tokenizer.json")) GTEST_SKIP() << "no HF tokenizer files";
    const Vocab hf = vocab_from_hf_dir(test::smollm2_hf_dir());
    EXPECT_EQ(hf.kind, TokenizerKind::Bpe);
    EXPECT_EQ(hf.tokens, vocab_->tokens);
    EXPECT_EQ(hf.merges, vocab_->merges);
    EXPECT_EQ(hf.bos_id, 1);
    EXPECT_FALSE(hf.add_bos);
    EXPECT_EQ(apply_chat_template(hf, {{"user", "Hi"}}, true), apply_chat_template(*vocab_, {{"user", "Hi"}}, true));
    const Tokenizer hf_tokenizer(hf);
    for (size_t i = 0; i < articles_.size(); ++i) {
        ASSERT_EQ(hf_tokenizer.encode(articles_[i], false, false), tokenizer_->encode(articles_[i], false, false))
            << "article " << i;
    }
}

}  // namespace
}  // namespace lamina
