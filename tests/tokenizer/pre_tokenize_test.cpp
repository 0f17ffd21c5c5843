// Regex pre-tokenizers: the pieces each family produces, and that pieces always tile the text.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tokenizer/pre_tokenize.h"
#include "tokenizer/vocab.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(const std::string& pre, const std::string& text) {
    Vocab v;
    v.kind = TokenizerKind::Bpe;
    v.pre = pre;
    const PreTokenizer p(pre_tokenizer_patterns(v));
    Pieces out;
    for (auto piece : p.split(text)) out.emplace_back(piece);
    return out;
}

TEST(TokenizerPreTokenize, Gpt2KeepsOneLeadingSpaceWithEachWord) {
    EXPECT_EQ(split("gpt-2", "Hello world's  2024!!\n"),
              (Pieces{"Hello", " world", "'s", " ", " 2024", "!!", "\n"}));
    EXPECT_EQ(split("gpt-2", ""), Pieces{});
}

TEST(TokenizerPreTokenize, SmolLMSplitsEveryDigit) {
    EXPECT_EQ(split("smollm", "abc 123"), (Pieces{"abc", " ", "1", "2", "3"}));
    EXPECT_EQ(split("starcoder", "x1"), (Pieces{"x", "1"}));
}

TEST(TokenizerPreTokenize, Llama3GroupsDigitsInThreesAndNewlines) {
    EXPECT_EQ(split("llama-bpe", "I'M 1234567 ok\n\n x"),
              (Pieces{"I", "'M", " ", "123", "456", "7", " ok", "\n\n", " x"}));
}

TEST(TokenizerPreTokenize, PiecesTileEveryConformanceText) {
    const auto texts = test::read_inp(test::tokenizer_data_dir() / "ggml-vocab-gpt-2.gguf.inp");
    for (const std::string pre : {"gpt-2", "smollm", "llama-bpe"}) {
        for (const auto& text : texts) {
            std::string joined;
            for (const auto& piece : split(pre, text)) {
                EXPECT_FALSE(piece.empty());
                joined += piece;
            }
            EXPECT_EQ(joined, text) << pre;
        }
    }
}

TEST(TokenizerPreTokenize, UnknownFamilyAndBadPatternAreErrors) {
    try {
        split("qwen2", "x");
        FAIL() << "expected lamina::Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("qwen2"), std::string::npos) << e.what();
    }
    try {
        PreTokenizer p({"(unclosed"});
        FAIL() << "expected lamina::Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("does not compile"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace lamina
