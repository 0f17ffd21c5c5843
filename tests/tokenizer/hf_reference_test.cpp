// SmolLM2 ids against Hugging Face `tokenizers` itself, on the 500 CNN/DailyMail articles and on
// short stress texts. The fixture and the command that made it: tests/data/tokenizer/
// make_smollm2_reference.py -> smollm2_hf_reference.json (ids per article kept as count + FNV-1a hash).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

// The fixture's hash: FNV-1a 64 over the ids written as decimal numbers joined by single spaces.
std::string fnv1a64_of_ids(const std::vector<int32_t>& ids) {
    constexpr uint64_t kOffsetBasis = 0xCBF29CE484222325ull, kPrime = 0x100000001B3ull;
    uint64_t h = kOffsetBasis;
    auto mix = [&](char c) { h = (h ^ static_cast<uint8_t>(c)) * kPrime; };
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) mix(' ');
        for (char c : std::to_string(ids[i])) mix(c);
    }
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    return hex;
}

const nlohmann::json& reference() {
    static const nlohmann::json j =
        nlohmann::json::parse(test::read_file(test::tokenizer_data_dir() / "smollm2_hf_reference.json"));
    return j;
}

const std::vector<std::string>& articles() {
    static const std::vector<std::string> list = [] {
        std::vector<std::string> out;
        std::istringstream lines(test::read_file(test::cnn_dailymail_jsonl()));
        std::string line;
        while (std::getline(lines, line)) out.push_back(nlohmann::json::parse(line).at("article").get<std::string>());
        return out;
    }();
    return list;
}

// Compares `tok` with one pipeline of the fixture; HF always splits special tokens, hence parse_special.
void expect_matches_pipeline(const Tokenizer& tok, const std::string& pipeline) {
    const auto& p = reference().at("pipelines").at(pipeline);
    const auto& expected_articles = p.at("articles");
    ASSERT_EQ(expected_articles.size(), articles().size());
    size_t mismatches = 0;
    for (size_t i = 0; i < articles().size(); ++i) {
        const auto ids = tok.encode(articles()[i], false, true);
        const bool same = ids.size() == expected_articles[i].at("n").get<size_t>() &&
                          fnv1a64_of_ids(ids) == expected_articles[i].at("fnv1a64").get<std::string>();
        EXPECT_TRUE(same) << pipeline << ": article " << i << " differs from HF (" << ids.size() << " ids, HF "
                          << expected_articles[i].at("n") << ")";
        mismatches += !same;
    }
    EXPECT_EQ(mismatches, 0u);
    for (const auto& t : p.at("texts")) {
        const std::string text = t.at("text").get<std::string>();
        EXPECT_EQ(tok.encode(text, false, true), t.at("ids").get<std::vector<int32_t>>()) << pipeline << ": \"" << text << "\"";
        EXPECT_EQ(tok.decode(tok.encode(text, false, true)), text);
    }
}

TEST(TokenizerHfReference, HfDirectoryMatchesTokenizersLibrary) {
    if (!std::filesystem::exists(test::smollm2_hf_dir() / "tokenizer.json")) GTEST_SKIP() << "no HF tokenizer files";
    const Tokenizer tok(vocab_from_hf_dir(test::smollm2_hf_dir()));
    EXPECT_EQ(tok.vocab().pre, "gpt-2");  // transformers' GGUF conversion writes a plain ByteLevel step
    expect_matches_pipeline(tok, "as_converted");
}

TEST(TokenizerHfReference, GgufMatchesTokenizersLibrary) {
    if (!std::filesystem::exists(test::smollm2_gguf())) GTEST_SKIP() << test::smollm2_gguf() << " is missing";
    const Tokenizer tok(vocab_from_gguf(GgufFile(test::smollm2_gguf())));
    EXPECT_EQ(tok.vocab().pre, "smollm");
    expect_matches_pipeline(tok, "smollm");
}

}  // namespace
}  // namespace lamina
