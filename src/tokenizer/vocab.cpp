// Vocab from GGUF, Lamina's JSON format (save/load), and the shared validation.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <unordered_set>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_fields.h"
#include "io/gguf.h"
#include "tokenizer/pre_tokenize.h"
#include "tokenizer/unicode.h"

namespace lamina {

namespace {

// Bump when the JSON layout changes; load_vocab refuses other versions.
constexpr int kVocabFormatVersion = 1;

// Texts of end-of-turn tokens used by common chat formats (ChatML, Llama 3, Phi-3, Gemma, GPT-2 …).
constexpr const char* kEndOfTurnTexts[] = {
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
};

const char* kind_name(TokenizerKind kind) { return kind == TokenizerKind::Spm ? "spm" : "bpe"; }

std::string describe(const std::string& source) { return source.empty() ? "vocab" : source; }

}  // namespace

void add_default_stop_ids(Vocab& v) {
    auto add = [&](int32_t id) {
        if (id >= 0 && std::find(v.stop_ids.begin(), v.stop_ids.end(), id) == v.stop_ids.end()) v.stop_ids.push_back(id);
    };
    add(v.eos_id);
    for (int32_t id = 0; id < v.n_vocab(); ++id) {
        const auto type = v.type(id);
        if (type != TokenType::Control && type != TokenType::UserDefined) continue;
        for (const char* text : kEndOfTurnTexts) {
            if (v.tokens[static_cast<size_t>(id)] == text) add(id);
        }
    }
}

void validate_vocab(const Vocab& v, const std::string& source) {
    const std::string where = describe(source);
    const size_t n = v.tokens.size();
    if (n == 0) throw Error(where + ": field 'tokens' is empty");
    if (n > static_cast<size_t>(kMaxVocabSize)) {
        throw Error(where + ": field 'tokens' has " + std::to_string(n) + " tokens, more than the 2^24 = " +
                    std::to_string(kMaxVocabSize) + " lamina accepts");
    }
    if (v.types.size() != n) {
        throw Error(where + ": field 'types' has " + std::to_string(v.types.size()) + " entries, expected one per token (" +
                    std::to_string(n) + ")");
    }
    for (size_t i = 0; i < n; ++i) {
        if (v.types[i] < static_cast<int32_t>(TokenType::Normal) || v.types[i] > static_cast<int32_t>(TokenType::Byte)) {
            throw Error(where + ": field 'types' has unknown token type " + std::to_string(v.types[i]) + " for token " +
                        std::to_string(i));
        }
    }
    if (!v.scores.empty() && v.scores.size() != n) {
        throw Error(where + ": field 'scores' has " + std::to_string(v.scores.size()) + " entries, expected 0 or " +
                    std::to_string(n));
    }
    for (size_t i = 0; i < v.scores.size(); ++i) {
        if (!std::isfinite(v.scores[i])) {
            throw Error(where + ": field 'scores' has " + std::to_string(v.scores[i]) + " for token " + std::to_string(i) +
                        ", expected a finite number");
        }
    }
    if (v.kind == TokenizerKind::Spm && v.merges.empty() && v.scores.size() != n) {
        throw Error(where + ": an SPM vocab needs either 'scores' (one per token) or 'merges'");
    }
    // Every merge must name two tokens whose concatenation is a token (HF refuses such files too).
    const std::unordered_set<std::string_view> texts(v.tokens.begin(), v.tokens.end());
    std::string merged;
    for (size_t i = 0; i < v.merges.size(); ++i) {
        const std::string_view m = v.merges[i];
        const size_t space = m.find(' ', 1);
        if (space == std::string::npos || space + 1 >= m.size()) {
            throw Error(where + ": field 'merges' entry " + std::to_string(i) + " ('" + v.merges[i] +
                        "') is not of the form \"left right\"");
        }
        merged.assign(m.substr(0, space));
        merged.append(m.substr(space + 1));
        if (!texts.contains(m.substr(0, space)) || !texts.contains(m.substr(space + 1)) || !texts.contains(merged)) {
            throw Error(where + ": field 'merges' entry " + std::to_string(i) + " ('" + v.merges[i] +
                        "') names or makes a token that is not in the vocab");
        }
    }
    auto check_id = [&](int32_t id, const char* field) {
        if (id < -1 || id >= static_cast<int32_t>(n)) {
            throw Error(where + ": field '" + field + "' = " + std::to_string(id) + " is outside the vocab (0.." +
                        std::to_string(n - 1) + ", or -1 for none)");
        }
    };
    check_id(v.bos_id, "bos_id");
    check_id(v.eos_id, "eos_id");
    check_id(v.unk_id, "unk_id");
    check_id(v.pad_id, "pad_id");
    for (int32_t id : v.stop_ids) {
        check_id(id, "stop_ids");
        if (id < 0) throw Error(where + ": field 'stop_ids' contains -1");
    }
    if (v.add_bos && v.bos_id < 0) throw Error(where + ": 'add_bos' is set but there is no bos_id");
    if (v.add_eos && v.eos_id < 0) throw Error(where + ": 'add_eos' is set but there is no eos_id");
    if (v.kind == TokenizerKind::Bpe) {
        try {
            const PreTokenizer compiles(pre_tokenizer_patterns(v));
        } catch (const Error& e) {
            throw Error(where + ": field 'pre': " + e.what());
        }
    }
}

Vocab vocab_from_gguf(const GgufFile& gguf) {
    const std::string where = gguf.path().string();
    Vocab v;
    const std::string model = gguf.get_string("tokenizer.ggml.model");
    if (model == "llama") {
        v.kind = TokenizerKind::Spm;
    } else if (model == "gpt2") {
        v.kind = TokenizerKind::Bpe;
    } else {
        throw Error(where + ": unsupported tokenizer.ggml.model '" + model +
                    "' (Lamina supports 'llama' = SentencePiece BPE and 'gpt2' = byte-level BPE)");
    }
    v.pre = gguf.get_string_opt("tokenizer.ggml.pre").value_or("default");
    // The counts before any array is decoded, so a hostile file is refused before it costs memory; ids and
    // types are int32 in a Vocab, and every value is range-checked in int64 before it is narrowed.
    const uint64_t n_tokens = gguf.get_array_size("tokenizer.ggml.tokens");
    if (n_tokens == 0 || n_tokens > static_cast<uint64_t>(kMaxVocabSize))
        throw Error(where + ": tokenizer.ggml.tokens has " + std::to_string(n_tokens) + " tokens (expected 1 to 2^24)");
    const auto n = static_cast<int64_t>(n_tokens);
    for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"})
        if (gguf.find(key) && gguf.get_array_size(key) != n_tokens)
            throw Error(where + ": " + key + " has " + std::to_string(gguf.get_array_size(key)) +
                        " entries, expected one per token (" + std::to_string(n) + ")");
    v.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
    if (gguf.find("tokenizer.ggml.scores")) {
        const std::vector<double> scores = gguf.get_float_array("tokenizer.ggml.scores");  // each fits a float
        v.scores.assign(scores.begin(), scores.end());
    }
    if (gguf.find("tokenizer.ggml.token_type")) {
        const std::vector<int64_t> types = gguf.get_int_array("tokenizer.ggml.token_type");
        for (size_t i = 0; i < types.size(); ++i)
            if (types[i] < static_cast<int64_t>(TokenType::Normal) || types[i] > static_cast<int64_t>(TokenType::Byte))
                throw Error(where + ": tokenizer.ggml.token_type element " + std::to_string(i) + " = " +
                            std::to_string(types[i]) + " is not a token type (1 to 6)");
        v.types.assign(types.begin(), types.end());
    } else {
        v.types.assign(static_cast<size_t>(n), static_cast<int32_t>(TokenType::Normal));
    }
    if (gguf.find("tokenizer.ggml.merges")) v.merges = gguf.get_string_array("tokenizer.ggml.merges");

    // A special token id: -1 when absent, or stored as -1 or as its u32 image 0xFFFFFFFF (llama.cpp reads ids as
    // u32 into an int32, where that is -1, "none"); anything else outside the vocab names the key.
    auto id_opt = [&](const char* key) -> int32_t {
        const int64_t id = gguf.get_int_opt(key).value_or(-1);
        if (id == -1 || id == 0xFFFFFFFF) return -1;
        if (id < 0 || id >= n)
            throw Error(where + ": " + key + " = " + std::to_string(id) + " is outside the vocab (0.." +
                        std::to_string(n - 1) + ")");
        return static_cast<int32_t>(id);
    };
    v.bos_id = id_opt("tokenizer.ggml.bos_token_id");
    v.eos_id = id_opt("tokenizer.ggml.eos_token_id");
    v.unk_id = id_opt("tokenizer.ggml.unknown_token_id");
    v.pad_id = id_opt("tokenizer.ggml.padding_token_id");
    // Defaults when the keys are absent follow the conventions of the two families: SentencePiece
    // models add BOS and the dummy prefix; GPT-2-style models add neither, except Llama 3 (adds BOS).
    const bool is_llama3 = v.pre == "llama-bpe" || v.pre == "llama3";
    v.add_bos = gguf.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(v.kind == TokenizerKind::Spm || is_llama3);
    v.add_eos = gguf.get_bool_opt("tokenizer.ggml.add_eos_token").value_or(false);
    // The key describes SentencePiece's dummy prefix; llama.cpp reads it only for SPM and so does
    // Lamina (a byte-level GGUF has no way to carry HF ByteLevel's add_prefix_space).
    v.add_space_prefix = v.kind == TokenizerKind::Spm &&
                         gguf.get_bool_opt("tokenizer.ggml.add_space_prefix").value_or(true);
    v.ignore_merges = is_llama3;  // the Llama 3 tokenizer.json sets ignore_merges; GGUF has no key for it
    v.chat_template = gguf.get_string_opt("tokenizer.chat_template").value_or("");

    // End-of-turn ids outside the vocab are ignored, as before; compared in int64, never truncated into one.
    for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
        const int64_t id = gguf.get_int_opt(key).value_or(-1);
        if (id >= 0 && id < n) v.stop_ids.push_back(static_cast<int32_t>(id));
    }
    if (v.types.size() == v.tokens.size()) add_default_stop_ids(v);
    validate_vocab(v, where);
    v.source = where;
    return v;
}

void save_vocab(const Vocab& v, const std::filesystem::path& file) {
    validate_vocab(v, file.string());
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        const size_t bad = utf8_first_invalid(v.tokens[i]);
        if (bad != kUtf8Valid) {
            throw Error(file.string() + ": token " + std::to_string(i) + " is not valid UTF-8 at byte " +
                        std::to_string(bad) + "; it cannot be stored in JSON");
        }
    }
    nlohmann::ordered_json j;
    j["format_version"] = kVocabFormatVersion;
    j["kind"] = kind_name(v.kind);
    j["pre"] = v.pre;
    j["pre_regexes"] = v.pre_regexes;
    j["bos_id"] = v.bos_id;
    j["eos_id"] = v.eos_id;
    j["unk_id"] = v.unk_id;
    j["pad_id"] = v.pad_id;
    j["add_bos"] = v.add_bos;
    j["add_eos"] = v.add_eos;
    j["add_space_prefix"] = v.add_space_prefix;
    j["ignore_merges"] = v.ignore_merges;
    j["fuse_unk"] = v.fuse_unk;
    j["stop_ids"] = v.stop_ids;
    j["chat_template"] = v.chat_template;
    j["tokens"] = v.tokens;
    j["scores"] = v.scores;
    j["types"] = v.types;
    j["merges"] = v.merges;

    // Write a temporary file and rename it, so a crash never leaves a half-written vocab behind.
    std::filesystem::path tmp = file;
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary);
        if (!out) throw Error(file.string() + ": cannot open for writing");
        out << j.dump(1) << '\n';
        if (!out) throw Error(file.string() + ": write failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) throw Error(file.string() + ": cannot move the written vocab into place: " + ec.message());
}

namespace {

// Typed field access for load_vocab: every failure names the file and the field.
class VocabFields {
public:
    VocabFields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}

    const nlohmann::json& at(const char* field) const {
        const auto it = j_.find(field);
        if (it == j_.end()) throw Error(where_ + ": missing field '" + field + "'");
        return *it;
    }
    [[noreturn]] void wrong(const char* field, const char* expected) const {
        throw Error(where_ + ": field '" + field + "' must be " + expected);
    }
    std::string string(const char* field) const {
        const auto& x = at(field);
        if (!x.is_string()) wrong(field, "a string");
        return x.get<std::string>();
    }
    bool has(const char* field) const { return j_.contains(field); }
    bool boolean(const char* field) const {
        const auto& x = at(field);
        if (!x.is_boolean()) wrong(field, "true or false");
        return x.get<bool>();
    }
    int64_t integer(const char* field) const {
        const auto& x = at(field);
        if (!x.is_number_integer()) wrong(field, "an integer");
        return x.get<int64_t>();
    }
    int32_t id(const char* field) const {
        const int64_t x = integer(field);
        if (x < -1 || x > INT32_MAX) wrong(field, "a token id or -1");
        return static_cast<int32_t>(x);
    }
    std::vector<std::string> strings(const char* field) const {
        const auto& x = at(field);
        if (!x.is_array()) wrong(field, "an array of strings");
        std::vector<std::string> out;
        out.reserve(x.size());
        for (const auto& e : x) {
            if (!e.is_string()) wrong(field, "an array of strings");
            out.push_back(e.get<std::string>());
        }
        return out;
    }
    std::vector<int32_t> ints(const char* field) const {
        const auto& x = at(field);
        if (!x.is_array()) wrong(field, "an array of integers");
        std::vector<int32_t> out;
        out.reserve(x.size());
        for (const auto& e : x) {
            if (!e.is_number_integer() || e.get<int64_t>() < INT32_MIN || e.get<int64_t>() > INT32_MAX) {
                wrong(field, "an array of 32-bit integers");
            }
            out.push_back(e.get<int32_t>());
        }
        return out;
    }
    std::vector<float> floats(const char* field) const {
        const auto& x = at(field);
        if (!x.is_array()) wrong(field, "an array of numbers");
        std::vector<float> out;
        out.reserve(x.size());
        for (const auto& e : x) {
            // A double past float's range would become inf (or be undefined behaviour) when narrowed.
            if (!e.is_number() || !(std::fabs(e.get<double>()) <= std::numeric_limits<float>::max())) {
                wrong(field, "an array of numbers within a float's range");
            }
            out.push_back(e.get<float>());
        }
        return out;
    }

private:
    const nlohmann::json& j_;
    std::string where_;
};

}  // namespace

void pad_vocab(Vocab& v, int32_t n_vocab) {
    const bool has_scores = !v.scores.empty();
    for (int32_t id = v.n_vocab(); id < n_vocab; ++id) {
        v.tokens.push_back("[PAD" + std::to_string(id) + "]");
        v.types.push_back(static_cast<int32_t>(TokenType::Control));
        if (has_scores) v.scores.push_back(0.0f);
    }
}

Vocab load_vocab(const std::filesystem::path& file) {
    const std::string where = file.string();
    const nlohmann::json j = read_json_file(file, "tokenizer file", kMaxTokenizerFileBytes);
    if (!j.is_object()) throw Error(where + ": expected a JSON object at the top level");
    const VocabFields f(j, where);

    const int64_t version = f.integer("format_version");
    if (version != kVocabFormatVersion) {
        throw Error(where + ": field 'format_version' is " + std::to_string(version) + ", this build reads version " +
                    std::to_string(kVocabFormatVersion) + " (rebuild the engine)");
    }
    Vocab v;
    const std::string kind = f.string("kind");
    if (kind == "spm") {
        v.kind = TokenizerKind::Spm;
    } else if (kind == "bpe") {
        v.kind = TokenizerKind::Bpe;
    } else {
        throw Error(where + ": field 'kind' is '" + kind + "', expected 'spm' or 'bpe'");
    }
    v.pre = f.string("pre");
    v.pre_regexes = f.strings("pre_regexes");
    v.bos_id = f.id("bos_id");
    v.eos_id = f.id("eos_id");
    v.unk_id = f.id("unk_id");
    v.pad_id = f.id("pad_id");
    v.add_bos = f.boolean("add_bos");
    v.add_eos = f.boolean("add_eos");
    v.add_space_prefix = f.boolean("add_space_prefix");
    v.ignore_merges = f.boolean("ignore_merges");
    v.fuse_unk = f.has("fuse_unk") && f.boolean("fuse_unk");  // absent in engines built before the key was written
    v.stop_ids = f.ints("stop_ids");
    v.chat_template = f.string("chat_template");
    v.tokens = f.strings("tokens");
    v.scores = f.floats("scores");
    v.types = f.ints("types");
    v.merges = f.strings("merges");
    validate_vocab(v, where);
    v.source = where;
    return v;
}

}  // namespace lamina
