// Conformance with Hugging Face `tokenizers` on llama.cpp's vectors (tests/data/tokenizer/PROVENANCE.md):
// every id must match, through both loaders (GGUF, and a tokenizer.json rebuilt from the same vocab).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

using test::tokenizer_data_dir;

struct Case {
    std::string name;  // ggml-vocab-<name>.gguf
    TokenizerKind kind;
};

std::string show(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) {
        s += ' ';
        s += std::to_string(id);
    }
    return s;
}

Vocab load_gguf_vocab(const std::string& name) {
    return vocab_from_gguf(GgufFile(tokenizer_data_dir() / ("ggml-vocab-" + name + ".gguf")));
}

// Checks every .inp text against its .out ids; returns the number of texts checked.
size_t expect_conformance(const Tokenizer& tok, const std::string& name) {
    const auto base = tokenizer_data_dir() / ("ggml-vocab-" + name + ".gguf");
    const auto texts = test::read_inp(base.string() + ".inp");
    const auto expected = test::read_out(base.string() + ".out");
    EXPECT_EQ(texts.size(), 46u) << "PROVENANCE.md says there are 46 texts";
    EXPECT_EQ(texts.size(), expected.size());
    for (size_t i = 0; i < std::min(texts.size(), expected.size()); ++i) {
        const auto ids = tok.encode(texts[i], /*add_special=*/false, /*parse_special=*/false);
        EXPECT_EQ(ids, expected[i]) << name << " text #" << i << " \"" << texts[i] << "\"\n got:     " << show(ids)
                                    << "\n expected:" << show(expected[i]);
    }
    return texts.size();
}

class TokenizerConformance : public ::testing::TestWithParam<Case> {};

TEST_P(TokenizerConformance, GgufIdsMatchHuggingFace) {
    const Tokenizer tok(load_gguf_vocab(GetParam().name));
    EXPECT_EQ(tok.vocab().kind, GetParam().kind);
    expect_conformance(tok, GetParam().name);
}

// decode(encode(x)) == x exactly. For SPM this holds because decode removes the one dummy-prefix
// space that encode adds at the start (HF's Strip decoder), so even texts starting with spaces survive.
TEST_P(TokenizerConformance, DecodeInvertsEncode) {
    const Tokenizer tok(load_gguf_vocab(GetParam().name));
    const auto texts = test::read_inp((tokenizer_data_dir() / ("ggml-vocab-" + GetParam().name + ".gguf")).string() + ".inp");
    for (size_t i = 0; i < texts.size(); ++i) {
        EXPECT_EQ(tok.decode(tok.encode(texts[i], false, false)), texts[i]) << "text #" << i;
    }
}

// A tokenizer.json equivalent to the GGUF vocab, shaped like the files `tokenizers` writes for that
// model family, so vocab_from_hf_dir is checked against the same HF ids.
nlohmann::json hf_tokenizer_json(const Vocab& v, const std::string& name) {
    nlohmann::json vocab = nlohmann::json::object();
    nlohmann::json added = nlohmann::json::array();
    for (int32_t id = 0; id < v.n_vocab(); ++id) {
        const auto& text = v.tokens[static_cast<size_t>(id)];
        const auto type = v.type(id);
        if (type == TokenType::Control || type == TokenType::Unknown) {
            added.push_back({{"id", id}, {"content", text}, {"special", true}, {"lstrip", false}, {"rstrip", false},
                             {"single_word", false}, {"normalized", false}});
        }
        if (!vocab.contains(text)) vocab[text] = id;
    }
    nlohmann::json j;
    j["version"] = "1.0";
    j["added_tokens"] = added;
    j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}};
    const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    if (name == "gpt-2") {
        j["normalizer"] = nullptr;
        j["pre_tokenizer"] = byte_level;
        j["model"]["merges"] = v.merges;
    } else if (name == "starcoder") {
        j["normalizer"] = nullptr;
        j["pre_tokenizer"] = {{"type", "Sequence"},
                              {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
        j["model"]["merges"] = v.merges;
    } else {
        // Llama 2 (legacy): Prepend + Replace normalizer, byte fallback, merges that transformers'
        // SentencePieceExtractor derives from the scores: every split of a piece into two pieces,
        // ordered by the merged piece's score (descending), ties by (left id, right id).
        j["normalizer"] = {{"type", "Sequence"},
                           {"normalizers",
                            {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                             {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
        j["pre_tokenizer"] = nullptr;
        j["model"]["byte_fallback"] = true;
        j["model"]["unk_token"] = v.tokens[static_cast<size_t>(v.unk_id)];
        std::map<std::string, int32_t> ids;
        for (int32_t id = v.n_vocab() - 1; id >= 0; --id) ids[v.tokens[static_cast<size_t>(id)]] = id;
        struct Merge {
            float score;
            int32_t left, right;
            std::string text;
        };
        std::vector<Merge> merges;
        for (int32_t id = 0; id < v.n_vocab(); ++id) {
            const std::string& piece = v.tokens[static_cast<size_t>(id)];
            std::vector<Merge> local;
            for (size_t k = 1; k < piece.size(); ++k) {
                if ((static_cast<uint8_t>(piece[k]) & 0xC0) == 0x80) continue;  // split between characters only
                const auto l = ids.find(piece.substr(0, k)), r = ids.find(piece.substr(k));
                if (l != ids.end() && r != ids.end()) {
                    local.push_back({v.scores[static_cast<size_t>(id)], l->second, r->second, l->first + " " + r->first});
                }
            }
            std::sort(local.begin(), local.end(),
                      [](const Merge& a, const Merge& b) { return std::pair(a.left, a.right) < std::pair(b.left, b.right); });
            merges.insert(merges.end(), local.begin(), local.end());
        }
        std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });
        nlohmann::json list = nlohmann::json::array();
        for (const auto& m : merges) list.push_back(m.text);
        j["model"]["merges"] = list;
    }
    return j;
}

TEST_P(TokenizerConformance, HfTokenizerJsonIdsMatchHuggingFace) {
    const Vocab gguf_vocab = load_gguf_vocab(GetParam().name);
    test::TempDir dir("hf_" + GetParam().name);
    test::write_file(dir.path() / "tokenizer.json", hf_tokenizer_json(gguf_vocab, GetParam().name).dump());
    const Vocab v = vocab_from_hf_dir(dir.path());
    EXPECT_EQ(v.kind, GetParam().kind);
    EXPECT_FALSE(v.merges.empty());
    const Tokenizer tok(v);
    expect_conformance(tok, GetParam().name);
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerConformance,
                         ::testing::Values(Case{"llama-spm", TokenizerKind::Spm}, Case{"gpt-2", TokenizerKind::Bpe},
                                           Case{"starcoder", TokenizerKind::Bpe}),
                         [](const auto& info) {
                             std::string n = info.param.name;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

TEST(TokenizerConformance, GgufVocabFacts) {
    const Vocab spm = load_gguf_vocab("llama-spm");
    EXPECT_EQ(spm.n_vocab(), 32000);
    EXPECT_EQ(spm.bos_id, 1);
    EXPECT_EQ(spm.eos_id, 2);
    EXPECT_EQ(spm.unk_id, 0);
    EXPECT_TRUE(spm.add_bos);
    EXPECT_TRUE(spm.add_space_prefix);
    const Tokenizer tok(spm);
    EXPECT_EQ(tok.encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));
    EXPECT_TRUE(tok.is_stop(2));

    const Vocab gpt2 = load_gguf_vocab("gpt-2");
    EXPECT_EQ(gpt2.pre, "gpt-2");
    EXPECT_EQ(gpt2.merges.size(), 50000u);
    EXPECT_EQ(load_gguf_vocab("starcoder").pre, "starcoder");
}

}  // namespace
}  // namespace lamina
