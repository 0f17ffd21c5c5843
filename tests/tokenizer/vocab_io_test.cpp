// save_vocab / load_vocab: a round trip keeps every field and every encoding.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

class TokenizerVocabFile : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerVocabFile, SaveLoadRoundTripKeepsEncodings) {
    const Vocab v = vocab_from_gguf(GgufFile(test::tokenizer_data_dir() / ("ggml-vocab-" + GetParam() + ".gguf")));
    test::TempDir dir("vocab_" + GetParam());
    const auto file = dir.path() / "tokenizer.lamina.json";
    save_vocab(v, file);
    const Vocab loaded = load_vocab(file);
    EXPECT_EQ(loaded.kind, v.kind);
    EXPECT_EQ(loaded.pre, v.pre);
    EXPECT_EQ(loaded.tokens, v.tokens);
    EXPECT_EQ(loaded.scores, v.scores);  // floats survive JSON exactly
    EXPECT_EQ(loaded.types, v.types);
    EXPECT_EQ(loaded.merges, v.merges);
    EXPECT_EQ(loaded.bos_id, v.bos_id);
    EXPECT_EQ(loaded.eos_id, v.eos_id);
    EXPECT_EQ(loaded.unk_id, v.unk_id);
    EXPECT_EQ(loaded.pad_id, v.pad_id);
    EXPECT_EQ(loaded.add_bos, v.add_bos);
    EXPECT_EQ(loaded.add_eos, v.add_eos);
    EXPECT_EQ(loaded.add_space_prefix, v.add_space_prefix);
    EXPECT_EQ(loaded.stop_ids, v.stop_ids);

    const Tokenizer a(v), b(loaded);
    const auto texts = test::read_inp(test::tokenizer_data_dir() / ("ggml-vocab-" + GetParam() + ".gguf.inp"));
    for (const auto& text : texts) {
        EXPECT_EQ(b.encode(text, true, true), a.encode(text, true, true)) << text;
    }
}

// fuse_unk (HF BPE, SmolLM2 sets it) survives the round trip; an engine file written before the key existed
// reads as false, the behaviour it was built with.
TEST(TokenizerVocabFileKeys, FuseUnkRoundTripsAndDefaultsToFalse) {
    const Vocab v = vocab_from_hf_dir(test::smollm2_hf_dir());
    ASSERT_TRUE(v.fuse_unk);
    test::TempDir dir("vocab_fuse_unk");
    const auto file = dir.path() / "tokenizer.lamina.json";
    save_vocab(v, file);
    EXPECT_TRUE(load_vocab(file).fuse_unk);
    auto j = nlohmann::json::parse(test::read_file(file));
    j.erase("fuse_unk");
    test::write_file(file, j.dump());
    EXPECT_FALSE(load_vocab(file).fuse_unk);
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerVocabFile, ::testing::Values("llama-spm", "gpt-2", "starcoder"),
                         [](const auto& info) {
                             std::string n = info.param;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

}  // namespace
}  // namespace lamina
