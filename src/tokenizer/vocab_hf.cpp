// Vocab from a Hugging Face model directory (tokenizer.json and friends).
//
// Two tokenizer.json shapes are understood, everything else is refused with the part that differs:
//   byte-level BPE  model.type "BPE", no normalizer, pre_tokenizer = ByteLevel, optionally after
//                   Digits and/or Split(regex, "Isolated") steps (GPT-2, StarCoder2, SmolLM, Llama 3);
//   SentencePiece   model.type "BPE" with byte_fallback, the space -> "▁" rule in the normalizer
//                   (Prepend + Replace, Llama 1/2 "legacy") or a Metaspace pre_tokenizer.
// The SentencePiece shape keeps its merges, and the Tokenizer merges by rank exactly like HF.
//
// Every file is read as hostile (core/json_fields.h bounds its size, nesting and memory): a value of the
// wrong type is refused naming the file and the key, where Hugging Face's loader would refuse it too or
// Lamina would otherwise read something other than what transformers reads.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_fields.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pre_tokenize.h"
#include "tokenizer/vocab.h"

namespace lamina {

namespace {

using nlohmann::json;

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // "▁"

// The pattern of Meta-Llama-3's tokenizer.json Split step (same language as kLlama3Pattern).
constexpr std::string_view kLlama3HfPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// One of the directory's JSON files, which must hold an object.
json read_json(const std::filesystem::path& file) {
    json j = read_json_file(file, file.filename().string(), kMaxTokenizerFileBytes);
    if (!j.is_object()) throw Error(file.string() + ": expected a JSON object at the top level, got " + json_excerpt(j));
    return j;
}

// obj[key] when present and not null.
const json* field(const json& obj, const char* key) {
    if (!obj.is_object()) return nullptr;
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool is_text(const json* x, std::string_view text) {
    return x && x->is_string() && x->get_ref<const std::string&>() == text;
}

std::string type_of(const json* step) {
    const json* t = step ? field(*step, "type") : nullptr;
    return t && t->is_string() ? t->get<std::string>() : "";
}

// Reads tokenizer.json and reports problems as "<file>: <what>".
class HfTokenizerJson {
public:
    HfTokenizerJson(std::filesystem::path file) : file_(std::move(file)), j_(read_json(file_)) {}

    [[noreturn]] void unsupported(const std::string& what) const {
        throw Error(file_.string() + ": unsupported tokenizer: " + what);
    }
    [[noreturn]] void malformed(const std::string& what) const { throw Error(file_.string() + ": " + what); }

    Vocab read() {
        const json* model = field(j_, "model");
        if (!model || !model->is_object()) malformed("missing 'model'");
        const std::string model_type = type_of(model);
        if (model_type != "BPE") {
            unsupported("model.type '" + model_type + "' (Lamina supports BPE: byte-level or SentencePiece-style)");
        }
        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
            const json* x = field(*model, key);
            if (x && !(x->is_string() && x->get<std::string>().empty())) unsupported(std::string("model.") + key);
        }
        if (const json* dropout = field(*model, "dropout")) {
            if (!dropout->is_number()) wrong_type("model", "dropout", *dropout, "a number or null");
            if (dropout->get<double>() > 0) unsupported("model.dropout (BPE dropout is random at encode time)");
        }
        Vocab v;
        const bool has_byte_fallback = flag(*model, "byte_fallback", false, "model");
        if (uses_byte_level()) {
            v.kind = TokenizerKind::Bpe;
            read_byte_level_pipeline(v);
        } else if (has_byte_fallback || spm_replacement_in_normalizer() || type_of(field(j_, "pre_tokenizer")) == "Metaspace") {
            v.kind = TokenizerKind::Spm;
            if (!has_byte_fallback) unsupported("SentencePiece-style BPE without model.byte_fallback");
            read_spm_pipeline(v);
        } else {
            unsupported("pre_tokenizer '" + type_of(field(j_, "pre_tokenizer")) +
                        "' with normalizer '" + type_of(field(j_, "normalizer")) +
                        "' (neither byte-level BPE nor SentencePiece-style BPE)");
        }
        v.ignore_merges = flag(*model, "ignore_merges", false, "model");
        v.fuse_unk = flag(*model, "fuse_unk", false, "model");
        read_tokens(*model, v);
        read_merges(*model, v);
        return v;
    }

    // The id of `text` in the vocab or added tokens.
    std::optional<int32_t> find_id(const std::string& text) const {
        const auto it = ids_.find(text);
        return it == ids_.end() ? std::nullopt : std::optional<int32_t>(it->second);
    }
    const json& root() const { return j_; }
    const std::unordered_map<std::string, int32_t>& ids() const { return ids_; }

private:
    std::vector<const json*> pre_steps() const {
        const json* pre = field(j_, "pre_tokenizer");
        if (!pre) return {};
        if (type_of(pre) != "Sequence") return {pre};
        const json* list = field(*pre, "pretokenizers");
        if (!list || !list->is_array()) malformed("pre_tokenizer Sequence without 'pretokenizers'");
        std::vector<const json*> steps;
        for (const json& s : *list) steps.push_back(&s);
        return steps;
    }

    // A pre_tokenizer step in errors: "pre_tokenizer" alone, or "pre_tokenizer.pretokenizers[i]" in a Sequence.
    std::string step_name(size_t i) const {
        return type_of(field(j_, "pre_tokenizer")) == "Sequence" ? "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]"
                                                                 : "pre_tokenizer";
    }

    bool uses_byte_level() const {
        const auto steps = pre_steps();
        return std::any_of(steps.begin(), steps.end(), [](const json* s) { return type_of(s) == "ByteLevel"; });
    }

    [[noreturn]] void wrong_type(const std::string& where, const char* key, const json& value, const char* expected) const {
        malformed(where + "." + key + " = " + json_excerpt(value) + ": expected " + expected);
    }

    // A boolean option of `step` (named `where` in errors): `fallback` when absent or null; any other type is
    // refused, as Hugging Face's loader refuses it.
    bool flag(const json& step, const char* key, bool fallback, const std::string& where) const {
        const json* x = field(step, key);
        if (!x) return fallback;
        if (!x->is_boolean()) wrong_type(where, key, *x, "true or false");
        return x->get<bool>();
    }

    // Turns the pre_tokenizer steps into split patterns, then names a known family when they match one.
    void read_byte_level_pipeline(Vocab& v) {
        if (!normalizer_steps().empty()) {
            unsupported("normalizer '" + type_of(normalizer_steps().front()) + "' with byte-level BPE");
        }
        std::vector<std::string> patterns;
        const auto steps = pre_steps();
        for (size_t i = 0; i < steps.size(); ++i) {
            const json& step = *steps[i];
            const std::string type = type_of(&step);
            if (type == "ByteLevel") {
                if (i + 1 != steps.size()) unsupported("pre_tokenizer steps after ByteLevel");
                if (flag(step, "use_regex", true, step_name(i))) patterns.push_back(kGpt2Pattern);
                v.add_space_prefix = flag(step, "add_prefix_space", false, step_name(i));
            } else if (type == "Digits") {
                patterns.push_back(flag(step, "individual_digits", false, step_name(i)) ? kIndividualDigitsPattern
                                                                                       : kDigitRunPattern);
            } else if (type == "Split") {
                const json* pattern = field(step, "pattern");
                const json* regex = pattern ? field(*pattern, "Regex") : nullptr;
                if (!regex || !regex->is_string()) unsupported("pre_tokenizer Split without a 'Regex' pattern");
                const json* behavior = field(step, "behavior");
                if (!is_text(behavior, "Isolated")) unsupported("pre_tokenizer Split behavior other than 'Isolated'");
                if (flag(step, "invert", false, step_name(i))) unsupported("pre_tokenizer Split with invert = true");
                patterns.push_back(regex->get<std::string>());
            } else {
                unsupported("pre_tokenizer step '" + type + "' in a byte-level pipeline");
            }
        }
        if (patterns == std::vector<std::string>{kGpt2Pattern}) {
            v.pre = "gpt-2";
        } else if (patterns == std::vector<std::string>{kIndividualDigitsPattern, kGpt2Pattern}) {
            v.pre = "smollm";  // StarCoder2 and SmolLM share this pipeline
        } else if (patterns == std::vector<std::string>{std::string(kLlama3HfPattern)}) {
            v.pre = "llama-bpe";
        } else {
            v.pre = "custom";
            v.pre_regexes = patterns;
        }
    }

    // Normalizer Replace(" " -> "▁"), alone or in a Sequence.
    bool spm_replacement_in_normalizer() const {
        for (const json* step : normalizer_steps()) {
            if (type_of(step) == "Replace" && is_text(field(*step, "content"), kSpmSpace)) return true;
        }
        return false;
    }

    std::vector<const json*> normalizer_steps() const {
        const json* norm = field(j_, "normalizer");
        if (!norm) return {};
        if (type_of(norm) != "Sequence") return {norm};
        const json* list = field(*norm, "normalizers");
        if (!list || !list->is_array()) malformed("normalizer Sequence without 'normalizers'");
        std::vector<const json*> steps;
        for (const json& s : *list) steps.push_back(&s);
        return steps;
    }

    void read_spm_pipeline(Vocab& v) {
        bool replaces_space = false, prepends = false;
        for (const json* step : normalizer_steps()) {
            const std::string type = type_of(step);
            const json* content = field(*step, "content");
            const json* prepend = field(*step, "prepend");
            const json* pattern = field(*step, "pattern");
            const json* from = pattern ? field(*pattern, "String") : nullptr;
            if (type == "Replace" && is_text(from, " ") && is_text(content, kSpmSpace)) {
                replaces_space = true;
            } else if (type == "Prepend" && is_text(prepend, kSpmSpace)) {
                prepends = true;
            } else {
                unsupported("normalizer step '" + type + "' in a SentencePiece-style pipeline");
            }
        }
        const json* pre = field(j_, "pre_tokenizer");
        if (pre) {
            if (type_of(pre) != "Metaspace") unsupported("pre_tokenizer '" + type_of(pre) + "' with SentencePiece-style BPE");
            if (replaces_space) unsupported("both a Replace normalizer and a Metaspace pre_tokenizer");
            if (flag(*pre, "split", true, "pre_tokenizer")) unsupported("Metaspace with split = true");
            const json* scheme = field(*pre, "prepend_scheme");
            if (scheme && !scheme->is_string()) wrong_type("pre_tokenizer", "prepend_scheme", *scheme, "a string");
            const std::string prepend_scheme = scheme ? scheme->get<std::string>()
                                               : flag(*pre, "add_prefix_space", true, "pre_tokenizer") ? "always"
                                                                                                       : "never";
            // "first" prefixes only the text before the first special token; Lamina prefixes every
            // text fragment (as "always" and the legacy Prepend normalizer do), so it is refused.
            if (prepend_scheme == "first") unsupported("Metaspace prepend_scheme 'first'");
            replaces_space = true;
            prepends = prepend_scheme == "always";
        }
        if (!replaces_space) unsupported("SentencePiece-style BPE without the ' ' -> '▁' rule");
        v.add_space_prefix = prepends;
        v.pre = "default";
    }

    struct AddedToken {
        int64_t id;
        std::string content;
        bool special;
    };

    // tokenizer.json's "added_tokens", each checked against the id Hugging Face tokenizers gives it: the
    // library ignores the "id" written in the file and reuses the id of a token with the same text (an
    // earlier added token, else the model vocab), or else takes the next id after the model vocab's entry
    // count and the added ids so far (AddedVocabulary::add_tokens, tokenizers 0.13 to 0.23). A file written
    // by HF always agrees; one that does not would tokenize differently there, so it is refused.
    std::vector<AddedToken> read_added_tokens(const std::unordered_map<std::string, int64_t>& vocab_ids) const {
        std::vector<AddedToken> added;
        const json* list = field(j_, "added_tokens");
        if (!list) return added;
        if (!list->is_array()) malformed("added_tokens = " + json_excerpt(*list) + ": expected a list");
        const auto n_entries = static_cast<int64_t>(vocab_ids.size());
        std::unordered_map<std::string, int64_t> added_ids;
        int64_t max_added = -1;
        for (size_t k = 0; k < list->size(); ++k) {
            const json& t = (*list)[k];
            const std::string where = "added_tokens[" + std::to_string(k) + "]";
            if (!t.is_object()) malformed(where + " = " + json_excerpt(t) + ": expected an object with 'id' and 'content'");
            const json* content = field(t, "content");
            if (!content || !content->is_string()) malformed(where + ".content: expected a string");
            const std::string text = content->get<std::string>();
            if (text.empty()) malformed(where + ".content is empty (Hugging Face skips such a token)");
            const json* id = field(t, "id");
            if (!id || !json_integer(*id, 0, INT64_MAX)) {
                malformed(where + ".id = " + (id ? json_excerpt(*id) : "absent") + ": expected a token id (an integer from 0)");
            }
            for (const char* key : {"lstrip", "rstrip", "single_word"}) {
                if (flag(t, key, false, where)) unsupported("added token '" + printable(text) + "' with " + key + " = true");
            }
            int64_t expected = 0;
            if (const auto it = added_ids.find(text); it != added_ids.end()) {
                expected = it->second;
            } else if (const auto in_vocab = vocab_ids.find(text); in_vocab != vocab_ids.end()) {
                expected = in_vocab->second;
            } else {
                expected = max_added < 0 || (max_added < n_entries && n_entries > 0) ? n_entries : max_added + 1;
            }
            if (id->get<int64_t>() != expected) {
                malformed(where + " ('" + printable(text) + "') has id " + std::to_string(id->get<int64_t>()) +
                          ", but Hugging Face tokenizers gives it id " + std::to_string(expected) +
                          " (it ignores the written id: a token's text keeps its vocab id, a new one takes the next id)");
            }
            added_ids[text] = expected;
            max_added = std::max(max_added, expected);
            added.push_back({expected, text, flag(t, "special", false, where)});
        }
        return added;
    }

    // model.vocab and the added tokens as one table indexed by id. Ids may leave holes (HF accepts a sparse
    // vocab; Lamina fills a hole with an unused "[PAD<id>]" token) but no more of them than named ids plus
    // 1024, and never past kMaxVocabSize: the tables then stay within a small multiple of the file's size, and
    // one id of 100000000 is an error instead of gigabytes of holes.
    void read_tokens(const json& model, Vocab& v) {
        const json* vocab = field(model, "vocab");
        if (!vocab || !vocab->is_object()) malformed("model.vocab must be an object of token -> id");
        std::vector<std::pair<std::string, int64_t>> entries;  // in the file's (sorted) order, for stable errors
        entries.reserve(vocab->size());
        for (const auto& [text, id] : vocab->items()) {
            const auto i = json_integer(id, 0, INT64_MAX);
            if (!i) malformed("model.vocab['" + printable(text) + "'] = " + json_excerpt(id) + ": expected a token id (an integer from 0)");
            entries.emplace_back(text, *i);
        }
        const std::unordered_map<std::string, int64_t> vocab_ids(entries.begin(), entries.end());
        const std::vector<AddedToken> added = read_added_tokens(vocab_ids);
        const auto n_named = static_cast<int64_t>(vocab_ids.size() + added.size());
        const int64_t max_ids = std::min<int64_t>(kMaxVocabSize, 2 * n_named + 1024);
        auto check_bound = [&](int64_t id, const std::string& name) {
            if (id >= max_ids) {
                malformed(name + " has id " + std::to_string(id) + ", beyond the " + std::to_string(max_ids) + " ids a vocab of " +
                          std::to_string(n_named) + " named tokens may span (as many unused ids as named ones plus 1024, at most 2^24)");
            }
        };
        int64_t max_id = -1;
        for (const auto& [text, id] : entries) {
            check_bound(id, "model.vocab token '" + printable(text) + "'");
            max_id = std::max(max_id, id);
        }
        for (const AddedToken& a : added) max_id = std::max(max_id, a.id);  // bounded by the vocab ids and their count
        if (max_id < 0) malformed("model.vocab is empty");

        const auto n = static_cast<size_t>(max_id + 1);
        v.tokens.assign(n, {});
        v.types.assign(n, static_cast<int32_t>(TokenType::Unused));
        // Which entry named each id, for the error when two texts claim one id ("" = none yet).
        std::vector<std::string> named_by(n);
        auto claim = [&](int64_t id, const std::string& text, const std::string& name) {
            const auto i = static_cast<size_t>(id);
            if (!named_by[i].empty() && v.tokens[i] != text) {
                malformed("id " + std::to_string(id) + " names two tokens: '" + printable(v.tokens[i]) + "' (" + named_by[i] +
                          ") and '" + printable(text) + "' (" + name + ")");
            }
            v.tokens[i] = text;
            named_by[i] = name;
        };
        for (const auto& [text, id] : entries) {
            claim(id, text, "model.vocab");
            const bool byte_token = v.kind == TokenizerKind::Spm && text.size() == 6 && text.starts_with("<0x") && text.back() == '>';
            v.types[static_cast<size_t>(id)] = static_cast<int32_t>(byte_token ? TokenType::Byte : TokenType::Normal);
        }
        for (const AddedToken& a : added) {
            claim(a.id, a.content, "added_tokens");
            v.types[static_cast<size_t>(a.id)] = static_cast<int32_t>(a.special ? TokenType::Control : TokenType::UserDefined);
        }
        for (size_t i = 0; i < n; ++i) {
            if (named_by[i].empty()) {
                v.tokens[i] = "[PAD" + std::to_string(i) + "]";  // ids no entry names
            } else {
                ids_.emplace(v.tokens[i], static_cast<int32_t>(i));
            }
        }
        if (const json* unk = field(model, "unk_token")) {
            if (!unk->is_string()) wrong_type("model", "unk_token", *unk, "a string or null");
            const auto id = find_id(unk->get<std::string>());
            if (!id) malformed("model.unk_token '" + printable(unk->get<std::string>()) + "' is not in the vocab");
            v.unk_id = *id;
            v.types[static_cast<size_t>(*id)] = static_cast<int32_t>(TokenType::Unknown);
        }
    }

    void read_merges(const json& model, Vocab& v) const {
        const json* merges = field(model, "merges");
        if (!merges) return;
        if (!merges->is_array()) malformed("model.merges must be an array");
        v.merges.reserve(merges->size());
        for (const json& m : *merges) {
            if (m.is_string()) {
                v.merges.push_back(m.get<std::string>());
            } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                // Newer files write ["left", "right"]; a part containing a space cannot be stored as "left right".
                const auto left = m[0].get<std::string>(), right = m[1].get<std::string>();
                if (left.find(' ') != std::string::npos || right.find(' ') != std::string::npos) {
                    unsupported("a merge of tokens that contain spaces ('" + left + "', '" + right + "')");
                }
                v.merges.push_back(left + " " + right);
            } else {
                malformed("model.merges entries must be \"left right\" or [left, right]");
            }
        }
    }

    std::filesystem::path file_;
    json j_;
    std::unordered_map<std::string, int32_t> ids_;
};

// A special token in tokenizer_config.json: "text", {"content": "text", …} or null (nullopt).
std::optional<std::string> config_token(const JsonFields& config, const char* key) {
    const json* t = config.find(key);
    if (!t) return std::nullopt;
    if (t->is_string()) return t->get<std::string>();
    if (const json* content = field(*t, "content"); content && content->is_string()) return content->get<std::string>();
    config.fail(key, "expected a token: a string or an object with a string \"content\"");
}

// tokenizer_config.json's added_tokens_decoder: {"<id>": {"content": "<text>", "special": …}, …}.
// transformers adds each entry the tokenizer does not already have as an added token, so every key must be
// a token id written in decimal ("1e9", "-1", "07" and "abc" are refused), and tokenizer.json must hold the
// same text at that id; a token it holds as an ordinary one becomes an added token, as transformers makes
// it (special entries then match only with parse_special).
void read_added_tokens_decoder(const JsonFields& config, const std::unordered_map<std::string, int32_t>& ids, Vocab& v) {
    const json* decoder = config.find("added_tokens_decoder");
    if (!decoder) return;
    if (!decoder->is_object()) config.fail("added_tokens_decoder", "expected an object of id -> token");
    for (const auto& [key, entry] : decoder->items()) {
        const std::string name = "added_tokens_decoder[\"" + printable(key) + "\"]";
        auto fail = [&](const std::string& what) { throw Error(config.file() + ": " + name + ": " + what); };
        const bool decimal = !key.empty() && key.size() <= 9 && std::all_of(key.begin(), key.end(), [](char c) {
            return c >= '0' && c <= '9';
        }) && (key == "0" || key[0] != '0');
        if (!decimal) fail("the key is not a token id (a decimal integer below 10^9 without sign or leading zeros)");
        const int64_t id = std::stoll(key);
        const json* content = field(entry, "content");
        if (!content || !content->is_string()) fail("expected an object with a string \"content\", got " + json_excerpt(entry));
        const std::string& text = content->get_ref<const std::string&>();
        const json* special = field(entry, "special");
        if (special && !special->is_boolean()) fail("\"special\" = " + json_excerpt(*special) + ": expected true or false");
        if (id >= v.n_vocab() || v.tokens[static_cast<size_t>(id)] != text) {
            const auto it = ids.find(text);
            fail("'" + printable(text) + "' at id " + key + ", but tokenizer.json has " +
                 (it == ids.end() ? std::string("no such token") : "it at id " + std::to_string(it->second)) +
                 " (files from different tokenizers?)");
        }
        auto& type = v.types[static_cast<size_t>(id)];
        if (type == static_cast<int32_t>(TokenType::Normal)) {
            type = static_cast<int32_t>(special && special->get<bool>() ? TokenType::Control : TokenType::UserDefined);
        }
    }
}

// True when the post_processor's single-sequence template starts (at_end: ends) with token `id`. The ids of
// the special token it names must be token ids (HF's loader refuses others too); `file` names it in errors.
bool template_adds(const json& root, int32_t id, bool at_end, const std::string& file, int32_t n_vocab) {
    const json* post = field(root, "post_processor");
    if (!post || id < 0) return false;
    std::vector<const json*> processors{post};
    if (type_of(post) == "Sequence") {
        processors.clear();
        if (const json* list = field(*post, "processors"); list && list->is_array()) {
            for (const json& p : *list) processors.push_back(&p);
        }
    }
    for (const json* p : processors) {
        if (type_of(p) != "TemplateProcessing") continue;
        const json* single = field(*p, "single");
        if (!single || !single->is_array() || single->empty()) continue;
        const json& piece = at_end ? single->back() : single->front();
        const json* special = field(piece, "SpecialToken");
        if (!special) continue;
        const json* name = field(*special, "id");
        const json* tokens = field(*p, "special_tokens");
        const json* entry = name && name->is_string() && tokens ? field(*tokens, name->get<std::string>().c_str()) : nullptr;
        const json* ids = entry ? field(*entry, "ids") : nullptr;
        if (!ids) continue;
        if (!ids->is_array() || !std::all_of(ids->begin(), ids->end(), [&](const json& x) { return json_integer(x, 0, n_vocab - 1); })) {
            throw Error(file + ": post_processor special_tokens['" + printable(name->get<std::string>()) + "'].ids = " +
                        json_excerpt(*ids) + ": expected a list of token ids (0 to " + std::to_string(n_vocab - 1) + ")");
        }
        if (ids->size() == 1 && (*ids)[0] == id) return true;
    }
    return false;
}

}  // namespace

Vocab vocab_from_hf_dir(const std::filesystem::path& dir) {
    const std::filesystem::path tokenizer_file = dir / "tokenizer.json";
    if (!std::filesystem::exists(tokenizer_file)) throw Error(tokenizer_file.string() + ": not found");
    HfTokenizerJson tj(tokenizer_file);
    Vocab v = tj.read();

    const std::filesystem::path config_file = dir / "tokenizer_config.json";
    const json config_json = std::filesystem::exists(config_file) ? read_json(config_file) : json::object();
    const JsonFields config(config_json, config_file.string());
    auto token_id = [&](const char* key) -> int32_t {
        const auto text = config_token(config, key);
        if (!text) return -1;
        const auto id = tj.find_id(*text);
        if (!id) throw Error(config_file.string() + ": " + key + " '" + printable(*text) + "' is not in the vocab");
        return *id;
    };
    v.bos_id = token_id("bos_token");
    v.eos_id = token_id("eos_token");
    v.pad_id = token_id("pad_token");
    // Checked, but unk_id stays tokenizer.json's model.unk_token: transformers' unk_token attribute never reaches
    // the tokenizers model, which drops what it cannot spell when its own unk_token is null (the mutation run's
    // #1348: a byte token deleted, config "<unk>", model none; lamina gave <unk>, HF nothing).
    token_id("unk_token");
    v.add_bos = config.boolean_or("add_bos_token", template_adds(tj.root(), v.bos_id, false, tokenizer_file.string(), v.n_vocab()));
    v.add_eos = config.boolean_or("add_eos_token", template_adds(tj.root(), v.eos_id, true, tokenizer_file.string(), v.n_vocab()));
    read_added_tokens_decoder(config, tj.ids(), v);

    // The chat template lives in tokenizer_config.json (a string, or a list of named templates) or,
    // in newer checkpoints, in chat_template.jinja.
    if (const json* tmpl = config.find("chat_template")) {
        if (tmpl->is_string()) {
            v.chat_template = tmpl->get<std::string>();
        } else if (tmpl->is_array()) {
            for (size_t i = 0; i < tmpl->size(); ++i) {
                const json& named = (*tmpl)[i];
                const json* name = field(named, "name");
                const json* text = field(named, "template");
                if (!name || !name->is_string() || !text || !text->is_string()) {
                    config.fail("chat_template", "element " + std::to_string(i) +
                                                     " is not an object with string \"name\" and \"template\"");
                }
                if (is_text(name, "default")) v.chat_template = text->get<std::string>();
            }
        } else {
            config.fail("chat_template", "expected a string or a list of {\"name\", \"template\"}");
        }
    } else if (std::filesystem::exists(dir / "chat_template.jinja")) {
        const std::filesystem::path file = dir / "chat_template.jinja";
        if (const RegularFile f(file, "chat_template.jinja"); f.size() > kMaxChatTemplateBytes) {
            throw Error(file.string() + ": " + std::to_string(f.size()) + " bytes, more than the " +
                        std::to_string(kMaxChatTemplateBytes) + " a chat template may have");
        }
        v.chat_template = read_regular_file(file, "chat_template.jinja");
    }

    const std::filesystem::path generation_file = dir / "generation_config.json";
    if (std::filesystem::exists(generation_file)) {
        const json generation = read_json(generation_file);
        if (const json* eos = field(generation, "eos_token_id")) {
            const json list = eos->is_array() ? *eos : json::array({*eos});
            for (const json& id : list) {
                const auto i = json_integer(id, 0, v.n_vocab() - 1);
                if (!i) throw Error(generation_file.string() + ": eos_token_id " + json_excerpt(id) + " is not a token id");
                v.stop_ids.push_back(static_cast<int32_t>(*i));
            }
            if (v.eos_id < 0 && !v.stop_ids.empty()) v.eos_id = v.stop_ids.front();
        }
    }
    add_default_stop_ids(v);
    validate_vocab(v, tokenizer_file.string());
    v.source = dir.string();
    return v;
}

}  // namespace lamina
