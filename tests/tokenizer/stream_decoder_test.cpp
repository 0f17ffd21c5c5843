// StreamDecoder: token-by-token output is always valid UTF-8 and adds up to decode().
#include <gtest/gtest.h>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

// Emoji (4-byte, ZWJ sequence, flag), CJK (3-byte), Latin-1 (2-byte), and spaces at the start.
const std::string kText =
    "  Hello 🌍 世界! 👩\u200d💻 ok 😀😀 🇫🇷 naïve Привет 日本語 ✅ end";

std::vector<std::filesystem::path> vocab_files() {
    std::vector<std::filesystem::path> files;
    for (const char* name : {"llama-spm", "gpt-2", "starcoder"}) {
        files.push_back(test::tokenizer_data_dir() / (std::string("ggml-vocab-") + name + ".gguf"));
    }
    if (std::filesystem::exists(test::smollm2_gguf())) files.push_back(test::smollm2_gguf());
    return files;
}

TEST(TokenizerStreamDecoder, NeverEmitsBrokenCharactersAndMatchesDecode) {
    for (const auto& file : vocab_files()) {
        SCOPED_TRACE(file.filename().string());
        const Tokenizer tok(vocab_from_gguf(GgufFile(file)));
        const auto ids = tok.encode(kText, false, false);
        StreamDecoder stream(tok);
        std::string streamed;
        size_t held_back = 0;  // pushes that returned nothing because a character was unfinished
        for (int32_t id : ids) {
            const std::string out = stream.push(id);
            EXPECT_EQ(utf8_first_invalid(out), kUtf8Valid) << "token " << id;
            held_back += out.empty();
            streamed += out;
        }
        streamed += stream.flush();
        EXPECT_EQ(streamed, tok.decode(ids));
        EXPECT_EQ(streamed, kText);
        EXPECT_GT(held_back, 0u) << "the text should split some character across tokens";
    }
}

// A generation that stops inside a character: flush() writes U+FFFD, exactly as decode() does.
TEST(TokenizerStreamDecoder, UnfinishedCharacterFlushesAsReplacement) {
    const Tokenizer tok(vocab_from_gguf(GgufFile(test::tokenizer_data_dir() / "ggml-vocab-gpt-2.gguf")));
    auto ids = tok.encode("ok 😀", false, false);
    const std::string full = tok.decode(ids);
    ASSERT_EQ(full, "ok 😀");
    ids.pop_back();  // GPT-2 spells the emoji with several byte tokens: drop the last one
    StreamDecoder stream(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    EXPECT_EQ(streamed, "ok ");
    streamed += stream.flush();
    EXPECT_EQ(streamed, tok.decode(ids));
    EXPECT_EQ(streamed, "ok \xEF\xBF\xBD");
}

TEST(TokenizerStreamDecoder, SkipsSpecialTokensWhenAsked) {
    const Tokenizer tok(vocab_from_gguf(GgufFile(test::tokenizer_data_dir() / "ggml-vocab-llama-spm.gguf")));
    const auto ids = tok.encode("Hello world", /*add_special=*/true, false);  // <s> ▁Hello ▁world
    ASSERT_EQ(ids.front(), 1);
    EXPECT_EQ(tok.decode(ids), "<s> Hello world");
    EXPECT_EQ(tok.decode(ids, true), "Hello world");
    StreamDecoder stream(tok, /*skip_special=*/true);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    EXPECT_EQ(streamed + stream.flush(), "Hello world");
}

}  // namespace
}  // namespace lamina
