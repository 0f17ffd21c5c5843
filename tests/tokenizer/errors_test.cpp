// Bad input gives one lamina::Error that names what is wrong (file, field, byte, id).
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

// Runs `f`, which must throw lamina::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
        f();
        ADD_FAILURE() << "expected lamina::Error mentioning '" << parts.front() << "'";
    } catch (const Error& e) {
        for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
}

// A 260-token byte-level vocab: the 256 alphabet characters, "he", "Ġt", "Ġthe" and a control token.
Vocab tiny_bpe_vocab() {
    Vocab v;
    v.kind = TokenizerKind::Bpe;
    v.pre = "gpt-2";
    v.add_space_prefix = false;
    for (const auto& text : byte_level_alphabet().byte_to_utf8) v.tokens.push_back(text);
    for (const char* text : {"he", "\xC4\xA0t", "\xC4\xA0the", "<|end|>"}) v.tokens.push_back(text);
    v.types.assign(v.tokens.size(), static_cast<int32_t>(TokenType::Normal));
    v.types.back() = static_cast<int32_t>(TokenType::Control);
    v.merges = {"h e", "\xC4\xA0 t", "\xC4\xA0t he"};
    v.eos_id = v.n_vocab() - 1;
    v.stop_ids = {v.eos_id};
    return v;
}

TEST(TokenizerErrors, TinyVocabWorks) {
    const Tokenizer tok(tiny_bpe_vocab());
    EXPECT_EQ(tok.encode(" the", false, false), (std::vector<int32_t>{258}));
    EXPECT_EQ(tok.encode("the<|end|>", false, true), (std::vector<int32_t>{'t', 256, 259}));
    EXPECT_TRUE(tok.is_stop(259));
}

TEST(TokenizerErrors, InvalidUtf8InputNamesTheByte) {
    const Tokenizer tok(tiny_bpe_vocab());
    expect_error([&] { tok.encode("ab\xC3(", false, false); }, {"input text is not valid UTF-8 at byte 2"});
    expect_error([&] { tok.encode("\xED\xA0\x80", false, false); }, {"at byte 0"});
}

TEST(TokenizerErrors, BadIdsInDecode) {
    const Tokenizer tok(tiny_bpe_vocab());
    const std::vector<int32_t> ids{1, 100000};
    expect_error([&] { tok.decode(ids); }, {"token id 100000", "outside the vocab"});
    expect_error([&] { tok.token_piece(-1); }, {"token id -1"});
}

TEST(TokenizerErrors, MalformedVocabInCode) {
    Vocab v = tiny_bpe_vocab();
    v.pre = "qwen2";
    expect_error([&] { Tokenizer t(v); }, {"qwen2"});
    v = tiny_bpe_vocab();
    v.merges.push_back("x nothere");
    expect_error([&] { Tokenizer t(v); }, {"x nothere", "not in the vocab"});
    v = tiny_bpe_vocab();
    v.types.pop_back();
    expect_error([&] { Tokenizer t(v); }, {"'types'"});
}

TEST(TokenizerErrors, CorruptLaminaVocabFileNamesFileAndField) {
    test::TempDir dir("corrupt_vocab");
    const auto file = dir.path() / "tokenizer.lamina.json";
    save_vocab(tiny_bpe_vocab(), file);
    const nlohmann::json good = nlohmann::json::parse(test::read_file(file));
    EXPECT_NO_THROW(load_vocab(file));

    auto load_modified = [&](const std::function<void(nlohmann::json&)>& modify) {
        nlohmann::json j = good;
        modify(j);
        test::write_file(file, j.dump());
        return [&] { load_vocab(file); };
    };
    const std::string name = file.string();
    expect_error(load_modified([](auto& j) { j.erase("tokens"); }), {name, "missing field 'tokens'"});
    expect_error(load_modified([](auto& j) { j["format_version"] = 99; }), {name, "'format_version'"});
    expect_error(load_modified([](auto& j) { j["kind"] = "wordpiece"; }), {name, "'kind'"});
    expect_error(load_modified([](auto& j) { j["types"][3] = 9; }), {name, "'types'"});
    expect_error(load_modified([](auto& j) { j["types"].erase(0); }), {name, "'types'"});
    expect_error(load_modified([](auto& j) { j["bos_id"] = 5000; }), {name, "'bos_id'"});
    expect_error(load_modified([](auto& j) { j["stop_ids"] = {1, "x"}; }), {name, "'stop_ids'"});
    expect_error(load_modified([](auto& j) { j["merges"][0] = "nospace"; }), {name, "'merges'"});
    expect_error(load_modified([](auto& j) { j["merges"][0] = "h zz"; }), {name, "'merges'", "not in the vocab"});
    expect_error(load_modified([](auto& j) { j["pre"] = "unknown-family"; }), {name, "'pre'", "unknown-family"});
    expect_error(load_modified([](auto& j) { j["add_bos"] = "yes"; }), {name, "'add_bos'"});

    test::write_file(file, "{\"format_version\": 1, \"tokens\": [");  // cut off mid-file
    expect_error([&] { load_vocab(file); }, {name, "not valid JSON"});
    expect_error([&] { load_vocab(dir.path() / "missing.json"); }, {"missing.json", "cannot open"});
}

// tokenizer.json shapes Lamina does not implement are refused, naming the file and the part.
TEST(TokenizerErrors, UnsupportedTokenizerJson) {
    test::TempDir dir("hf_unsupported");
    const auto file = dir.path() / "tokenizer.json";
    const nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"ab", 2}};
    auto expect_refused = [&](const nlohmann::json& j, const std::string& part) {
        test::write_file(file, j.dump());
        expect_error([&] { vocab_from_hf_dir(dir.path()); }, {file.string(), part});
    };
    expect_refused({{"model", {{"type", "Unigram"}, {"vocab", nlohmann::json::array()}}}}, "model.type 'Unigram'");
    expect_refused({{"model", {{"type", "WordPiece"}, {"vocab", vocab}}}}, "model.type 'WordPiece'");
    const nlohmann::json bpe = {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}};
    expect_refused({{"model", bpe}, {"pre_tokenizer", {{"type", "Whitespace"}}}}, "Whitespace");
    expect_refused({{"model", bpe},
                    {"normalizer", {{"type", "NFC"}}},
                    {"pre_tokenizer", {{"type", "ByteLevel"}, {"use_regex", true}}}},
                   "normalizer 'NFC'");
    nlohmann::json metaspace_first = {{"model", bpe}, {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}}}};
    metaspace_first["model"]["byte_fallback"] = true;
    expect_refused(metaspace_first, "prepend_scheme 'first'");
    test::write_file(file, "not json");
    expect_error([&] { vocab_from_hf_dir(dir.path()); }, {file.string(), "not valid JSON"});
    std::filesystem::remove(file);
    expect_error([&] { vocab_from_hf_dir(dir.path()); }, {"tokenizer.json", "not found"});
}

TEST(TokenizerErrors, TokenizerConfigNamesUnknownSpecialToken) {
    test::TempDir dir("hf_config");
    const nlohmann::json tokenizer = {
        {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"use_regex", true}}}};
    test::write_file(dir.path() / "tokenizer.json", tokenizer.dump());
    test::write_file(dir.path() / "tokenizer_config.json", R"({"bos_token": "<s>"})");
    expect_error([&] { vocab_from_hf_dir(dir.path()); }, {"tokenizer_config.json", "bos_token '<s>'"});
}

}  // namespace
}  // namespace lamina
