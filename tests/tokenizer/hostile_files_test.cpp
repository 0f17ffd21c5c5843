// Issue 24, hardening: a tokenizer's files come from strangers. Each test is the reproducer of one defect of
// the tokenizer.json / tokenizer_config.json / generation_config.json / engine tokenizer loaders, written here:
// ids that would size a table by themselves, values of the wrong type, files that disagree, JSON nested to
// exhaust memory. Every refusal is one lamina::Error line naming the file and the key, never nlohmann's text.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>

#include "../refusal_util.h"
#include "../test_util.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace lamina {
namespace {

using test::expect_refusal;
using test::peak_rss;

using json = nlohmann::json;
using test::TempDir;

// A byte-level BPE tokenizer.json: "a", "b", "ab" and the merge "a b", as HF writes one.
json byte_level(json vocab = {{"a", 0}, {"b", 1}, {"ab", 2}}) {
    return {{"added_tokens", json::array()},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"model", {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", {"a b"}}}}};
}

json added(int64_t id, const std::string& content, bool special = true) {
    return {{"id", id},       {"content", content}, {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", false}, {"special", special}};
}

// A directory holding `tokenizer` as tokenizer.json, and `config` as tokenizer_config.json unless null.
struct HfDir {
    TempDir dir;
    HfDir(const json& tokenizer, const json& config = nullptr) {
        test::write_file(dir / "tokenizer.json", tokenizer.dump());
        if (!config.is_null()) test::write_file(dir / "tokenizer_config.json", config.dump());
    }
    std::string file(const char* name) const { return (dir / name).string(); }
    Vocab load() const { return vocab_from_hf_dir(dir.path()); }
};

TEST(TokenizerJsonIds, AFarIdIsRefusedBeforeATableIsSized) {
    // Reproducer: one id of 100000000 made `lamina tokenize` allocate a 6 GB table of "[PAD<id>]" tokens.
    const size_t before = peak_rss();
    const HfDir hf(byte_level({{"a", 0}, {"b", 1}, {"ab", 100000000}}));
    expect_refusal([&] { hf.load(); }, {hf.file("tokenizer.json"), "model.vocab token 'ab' has id 100000000",
                                        "beyond the 1030 ids a vocab of 3 named tokens may span"});
    EXPECT_LT(peak_rss() - before, size_t{64} << 20);
}

TEST(TokenizerJsonIds, HolesWithinTheSlackAreUnusedTokens) {
    // Hugging Face accepts a sparse vocab; the unnamed ids become unused tokens that text never produces.
    const HfDir hf(byte_level({{"a", 0}, {"b", 1}, {"ab", 5}}));
    const Tokenizer tok(hf.load());
    EXPECT_EQ(tok.n_vocab(), 6);
    EXPECT_EQ(tok.encode("ab", false, false), (std::vector<int32_t>{5}));
    EXPECT_EQ(tok.token_piece(3), "[PAD3]");
    EXPECT_EQ(tok.vocab().type(3), TokenType::Unused);
}

TEST(TokenizerJsonIds, WrongTypedIdsNameTheToken) {
    for (const json& id : {json(2.5), json("2"), json(-1), json(4294967296.0), json(true), json(nullptr)}) {
        SCOPED_TRACE(id.dump());
        const HfDir hf(byte_level({{"a", 0}, {"b", 1}, {"ab", id}}));
        expect_refusal([&] { hf.load(); }, {hf.file("tokenizer.json"), "model.vocab['ab'] = " + id.dump(), "expected a token id"});
    }
    // 2^32 as an integer is a valid u32 for nothing: beyond any vocab Lamina accepts.
    const HfDir big(byte_level({{"a", 0}, {"b", 1}, {"ab", int64_t{1} << 32}}));
    expect_refusal([&] { big.load(); }, {"model.vocab token 'ab' has id 4294967296"});
}

TEST(TokenizerJsonIds, AnIdNamingTwoTokensIsRefused) {
    // HF accepts it and then encodes both texts to one id, which decodes to either.
    const HfDir hf(byte_level({{"a", 0}, {"b", 1}, {"ab", 1}}));
    expect_refusal([&] { hf.load(); }, {"id 1 names two tokens"});
}

TEST(TokenizerJsonIds, AddedTokensMustHaveTheIdsHuggingFaceGivesThem) {
    // tokenizers ignores an added token's written id: a new text takes the next id after the vocab, a text
    // of the vocab keeps its id (checked against tokenizers 0.23.3, tools/README.md).
    json t = byte_level();
    t["added_tokens"] = {added(3, "<x>"), added(0, "a", false)};
    const Vocab ok = HfDir(t).load();
    EXPECT_EQ(ok.tokens[3], "<x>");
    EXPECT_EQ(ok.type(3), TokenType::Control);
    EXPECT_EQ(ok.type(0), TokenType::UserDefined);

    t["added_tokens"] = {added(1000, "<x>")};
    const HfDir far(t);
    expect_refusal([&] { far.load(); }, {far.file("tokenizer.json"), "added_tokens[0] ('<x>') has id 1000",
                                         "Hugging Face tokenizers gives it id 3"});
    t["added_tokens"] = {added(2, "<x>")};  // the id of "ab": HF gives <x> id 3 and keeps "ab"
    const HfDir taken(t);
    expect_refusal([&] { taken.load(); }, {"added_tokens[0] ('<x>') has id 2", "gives it id 3"});
    for (const json& id : {json("3"), json(3.0), json(-3)}) {
        t["added_tokens"] = {added(3, "<x>")};
        t["added_tokens"][0]["id"] = id;
        const HfDir bad(t);
        expect_refusal([&] { bad.load(); }, {"added_tokens[0].id = " + id.dump()});
    }
    t["added_tokens"] = {added(3, "")};
    expect_refusal([&] { HfDir(t).load(); }, {"added_tokens[0].content is empty"});
    t["added_tokens"] = {{"x", 1}};
    expect_refusal([&] { HfDir(t).load(); }, {"added_tokens = ", "expected a list"});
    t["added_tokens"] = {added(3, "<x>")};
    t["added_tokens"][0]["special"] = "yes";
    expect_refusal([&] { HfDir(t).load(); }, {"added_tokens[0].special = \"yes\"", "expected true or false"});
}

TEST(TokenizerJsonIds, MergesOfMissingTokensAreRefused) {
    json t = byte_level();
    t["model"]["merges"] = {"a b", "a c"};
    const HfDir hf(t);
    expect_refusal([&] { hf.load(); }, {hf.file("tokenizer.json"), "'merges' entry 1 ('a c')", "not in the vocab"});
}

TEST(TokenizerJsonTypes, OptionsOfTheWrongTypeNameTheKey) {
    json t = byte_level();
    t["model"]["byte_fallback"] = "yes";
    expect_refusal([&] { HfDir(t).load(); }, {"model.byte_fallback = \"yes\"", "expected true or false"});
    t = byte_level();
    t["pre_tokenizer"]["add_prefix_space"] = 1;
    expect_refusal([&] { HfDir(t).load(); }, {"pre_tokenizer.add_prefix_space = 1", "expected true or false"});
    t = byte_level();
    t["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", "no"}}, {{"type", "ByteLevel"}}}}};
    expect_refusal([&] { HfDir(t).load(); }, {"pre_tokenizer.pretokenizers[0].individual_digits = \"no\""});
    t = byte_level();
    t["model"]["unk_token"] = 7;
    expect_refusal([&] { HfDir(t).load(); }, {"model.unk_token = 7"});
    t = byte_level();
    t["model"]["dropout"] = "0.1";
    expect_refusal([&] { HfDir(t).load(); }, {"model.dropout = \"0.1\""});
    expect_refusal([&] { HfDir(json::array({1, 2})).load(); }, {"tokenizer.json: expected a JSON object at the top level"});
    // The post_processor's special token ids decide add_bos; 1.5 used to read as "not this token".
    t = byte_level();
    t["post_processor"] = {{"type", "TemplateProcessing"},
                           {"single", {{{"SpecialToken", {{"id", "a"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                           {"special_tokens", {{"a", {{"id", "a"}, {"ids", {1.5}}, {"tokens", {"a"}}}}}}};
    const HfDir post(t, {{"bos_token", "a"}});
    expect_refusal([&] { post.load(); }, {"post_processor special_tokens['a'].ids = [1.5]", "expected a list of token ids"});
    t["post_processor"]["special_tokens"]["a"]["ids"] = {0};
    EXPECT_TRUE(HfDir(t, {{"bos_token", "a"}}).load().add_bos);
}

TEST(TokenizerJsonBounds, DeepNestingIsRefusedBeforeItCostsMemory) {
    // Reproducer: 50M '[' took gigabytes in nlohmann's parser before any check could run.
    const size_t before = peak_rss();
    TempDir dir;
    test::write_file(dir / "tokenizer.json", std::string(size_t{50} << 20, '['));
    expect_refusal([&] { vocab_from_hf_dir(dir.path()); }, {"tokenizer.json", "nests deeper than 64 levels"});
    test::write_file(dir / "tokenizer.json", byte_level().dump());
    test::write_file(dir / "tokenizer_config.json", "{\"bos_token\": " + std::string(size_t{1} << 20, '['));
    expect_refusal([&] { vocab_from_hf_dir(dir.path()); }, {"tokenizer_config.json", "nests deeper than 64 levels"});
    EXPECT_LT(peak_rss() - before, size_t{200} << 20);
}

TEST(TokenizerConfig, WrongTypesNameTheKey) {
    const json t = byte_level();
    auto refused = [&](const json& config, std::initializer_list<std::string> needles) {
        const HfDir hf(t, config);
        expect_refusal([&] { hf.load(); }, needles);
    };
    refused({{"bos_token", 5}}, {"tokenizer_config.json: bos_token = 5", "expected a token"});
    refused({{"eos_token", {{"content", 1}}}}, {"eos_token = {\"content\":1}"});
    refused({{"add_bos_token", "yes"}}, {"add_bos_token = \"yes\"", "expected true or false"});
    refused({{"chat_template", 7}}, {"chat_template = 7"});
    refused({{"chat_template", {{{"name", "default"}}}}}, {"chat_template", "element 0"});
    refused(json::array(), {"tokenizer_config.json: expected a JSON object"});
    // The accepted shapes still read.
    const HfDir ok(t, {{"bos_token", {{"content", "a"}, {"special", true}}}, {"eos_token", nullptr}, {"add_bos_token", true},
                       {"chat_template", {{{"name", "tool_use"}, {"template", "T"}}, {{"name", "default"}, {"template", "D"}}}}});
    const Vocab v = ok.load();
    EXPECT_EQ(v.bos_id, 0);
    EXPECT_TRUE(v.add_bos);
    EXPECT_EQ(v.chat_template, "D");
}

TEST(TokenizerConfig, AddedTokensDecoderKeysAreTokenIds) {
    json t = byte_level();
    t["added_tokens"] = {added(3, "<x>")};
    auto with_decoder = [&](const json& decoder) { return HfDir(t, {{"added_tokens_decoder", decoder}}); };
    for (const char* key : {"1e9", "-1", "abc", "03", "", " 3", "99999999999"}) {
        SCOPED_TRACE(key);
        const HfDir hf = with_decoder({{key, {{"content", "<x>"}, {"special", true}}}});
        expect_refusal([&] { hf.load(); }, {"tokenizer_config.json: added_tokens_decoder[\"", "is not a token id"});
    }
    const HfDir wrong_text = with_decoder({{"3", {{"content", "<y>"}}}});
    expect_refusal([&] { wrong_text.load(); }, {"added_tokens_decoder[\"3\"]: '<y>' at id 3", "tokenizer.json has no such token"});
    const HfDir wrong_id = with_decoder({{"2", {{"content", "<x>"}}}});
    expect_refusal([&] { wrong_id.load(); }, {"'<x>' at id 2", "tokenizer.json has it at id 3"});
    const HfDir far = with_decoder({{"100000000", {{"content", "<x>"}}}});
    expect_refusal([&] { far.load(); }, {"'<x>' at id 100000000"});
    const HfDir no_content = with_decoder({{"3", "<x>"}});
    expect_refusal([&] { no_content.load(); }, {"added_tokens_decoder[\"3\"]", "expected an object with a string \"content\""});

    // An entry for an ordinary token makes it an added token, as transformers does: "ab" is then matched
    // whole in text, as a special token only with parse_special.
    const Vocab v = with_decoder({{"3", {{"content", "<x>"}, {"special", true}}}, {"2", {{"content", "ab"}, {"special", true}}}}).load();
    EXPECT_EQ(v.type(2), TokenType::Control);
    EXPECT_EQ(v.type(3), TokenType::Control);
}

TEST(GenerationConfig, EosIdsMustBeTokenIds) {
    for (const json& eos : {json(2.5), json("2"), json(3), json(json::array({1, -1})), json(18446744073709551615ull)}) {
        SCOPED_TRACE(eos.dump());
        const HfDir hf(byte_level());
        test::write_file(hf.dir / "generation_config.json", json{{"eos_token_id", eos}}.dump());
        expect_refusal([&] { hf.load(); }, {"generation_config.json: eos_token_id", "is not a token id"});
    }
}

// The mutation run's wrong-model #1348 (2026-12-07): tiny_llama's tokenizer.json with the byte token "â" (byte
// 0xE2) deleted. Its model.unk_token is null, so Hugging Face drops the byte; lamina took tokenizer_config.json's
// unk_token "<unk>" and encoded the byte as id 0. The config's unk_token is still checked, never used to spell.
TEST(TokenizerUnknown, AByteTheVocabLacksIsDroppedWhenTheModelHasNoUnk) {
    const json source = test::read_json(test::data_dir() / "tiny_llama" / "tokenizer.json");
    const json config = test::read_json(test::data_dir() / "tiny_llama" / "tokenizer_config.json");
    ASSERT_EQ(config.at("unk_token"), "<unk>");
    ASSERT_TRUE(source.at("model").at("unk_token").is_null());
    json mutant = source;
    const int32_t byte_id = mutant["model"]["vocab"].at("\xC3\xA2").get<int32_t>();
    mutant["model"]["vocab"].erase("\xC3\xA2");

    const std::string text = "x \xE2\x80\x94 y";  // "x — y": the dash's first byte is 0xE2
    std::vector<int32_t> expected = Tokenizer(HfDir(source, config).load()).encode(text, false, false);
    ASSERT_NE(std::find(expected.begin(), expected.end(), byte_id), expected.end());
    expected.erase(std::find(expected.begin(), expected.end(), byte_id));  // no merge uses "â": the rest is unchanged

    const Vocab v = HfDir(mutant, config).load();
    EXPECT_EQ(v.unk_id, -1);
    EXPECT_EQ(Tokenizer(v).encode(text, false, false), expected);
    json bad_config = config;
    bad_config["unk_token"] = "<nope>";
    expect_refusal([&] { HfDir(source, bad_config).load(); }, {"tokenizer_config.json", "unk_token '<nope>' is not in the vocab"});
}

// SmolLM2's tokenizer.json lacks the byte tokens of 0x04, 0x06, 0x13 … and sets model.unk_token and fuse_unk: HF
// gives one unk for a run of such bytes. The ids are tokenizers 0.23.2's:
//   Tokenizer.from_file("tests/data/smollm2_hf_tokenizer/tokenizer.json").encode(text, add_special_tokens=False).ids
// (with "fuse_unk": false written into the file for the second list).
TEST(TokenizerUnknown, FuseUnkMakesOneUnkOfARunOfUnknownBytes) {
    json tokenizer = test::read_json(test::data_dir() / "smollm2_hf_tokenizer" / "tokenizer.json");
    const json config = test::read_json(test::data_dir() / "smollm2_hf_tokenizer" / "tokenizer_config.json");
    ASSERT_TRUE(tokenizer.at("model").at("fuse_unk").get<bool>());
    const std::vector<std::pair<std::string, std::vector<int32_t>>> fused = {
        {"\x04\x04", {0}}, {"a\x04\x04" "b", {81, 0, 82}}, {"\x04 \x06", {0, 216, 0}}, {"\x04\x06\x13", {0}}};
    const std::vector<std::pair<std::string, std::vector<int32_t>>> unfused = {
        {"\x04\x04", {0, 0}}, {"a\x04\x04" "b", {81, 0, 0, 82}}, {"\x04 \x06", {0, 216, 0}}, {"\x04\x06\x13", {0, 0, 0}}};
    for (const auto& cases : {fused, unfused}) {
        const Tokenizer tok(HfDir(tokenizer, config).load());
        for (const auto& [text, ids] : cases) EXPECT_EQ(tok.encode(text, false, false), ids) << json(text).dump();
        tokenizer["model"]["fuse_unk"] = false;
    }
}

TEST(EngineTokenizerFile, ScoresBeyondFloatAndDeepNestingAreRefused) {
    TempDir dir;
    const auto file = dir / "tokenizer.lamina.json";
    Vocab v;
    v.kind = TokenizerKind::Spm;
    v.tokens = {"<unk>", "a"};
    v.types = {2, 1};
    v.scores = {0.0f, -1.0f};
    save_vocab(v, file);
    json j = json::parse(test::read_file(file));
    j["scores"][1] = 1e300;  // narrowing it to float is undefined behaviour
    test::write_file(file, j.dump());
    expect_refusal([&] { load_vocab(file); }, {file.string(), "'scores'", "within a float's range"});
    test::write_file(file, std::string(size_t{10} << 20, '['));
    expect_refusal([&] { load_vocab(file); }, {file.string(), "nests deeper than 64 levels"});
}

}  // namespace
}  // namespace lamina
