// Vocab from a Hugging Face model directory (tokenizer.json and friends).
//
// Two tokenizer.json shapes are understood, everything else is refused with the part that differs:
//   byte-level BPE  model.type "BPE", no normalizer, pre_tokenizer = ByteLevel, optionally after
//                   Digits and/or Split(regex, "Isolated") steps (GPT-2, StarCoder2, SmolLM, Llama 3);
//   SentencePiece   model.type "BPE" with byte_fallback, the space -> "▁" rule in the normalizer
//                   (Prepend + Replace, Llama 1/2 "legacy") or a Metaspace pre_tokenizer.
// The SentencePiece shape keeps its merges, and the Tokenizer merges by rank exactly like HF.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/file_util.h"
#include "tokenizer/pre_tokenize.h"
#include "tokenizer/vocab.h"

namespace lamina {

namespace {

using nlohmann::json;

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // "▁"

// The pattern of Meta-Llama-3's tokenizer.json Split step (same language as kLlama3Pattern).
constexpr std::string_view kLlama3HfPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json read_json(const std::filesystem::path& file) {
    const std::string text = read_regular_file(file, file.filename().string());
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw Error(file.string() + ": not valid JSON (" + e.what() + ")");
    }
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
        if (const json* dropout = field(*model, "dropout"); dropout && dropout->is_number() && dropout->get<double>() > 0) {
            unsupported("model.dropout (BPE dropout is random at encode time)");
        }
        Vocab v;
        const json* byte_fallback = field(*model, "byte_fallback");
        const bool has_byte_fallback = byte_fallback && byte_fallback->is_boolean() && byte_fallback->get<bool>();
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
        const json* ignore_merges = field(*model, "ignore_merges");
        v.ignore_merges = ignore_merges && ignore_merges->is_boolean() && ignore_merges->get<bool>();
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

    bool uses_byte_level() const {
        const auto steps = pre_steps();
        return std::any_of(steps.begin(), steps.end(), [](const json* s) { return type_of(s) == "ByteLevel"; });
    }

    static bool flag(const json& step, const char* key, bool fallback) {
        const json* x = field(step, key);
        return x && x->is_boolean() ? x->get<bool>() : fallback;
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
                if (flag(step, "use_regex", true)) patterns.push_back(kGpt2Pattern);
                v.add_space_prefix = flag(step, "add_prefix_space", false);
            } else if (type == "Digits") {
                patterns.push_back(flag(step, "individual_digits", false) ? kIndividualDigitsPattern : kDigitRunPattern);
            } else if (type == "Split") {
                const json* pattern = field(step, "pattern");
                const json* regex = pattern ? field(*pattern, "Regex") : nullptr;
                if (!regex || !regex->is_string()) unsupported("pre_tokenizer Split without a 'Regex' pattern");
                const json* behavior = field(step, "behavior");
                if (!is_text(behavior, "Isolated")) unsupported("pre_tokenizer Split behavior other than 'Isolated'");
                if (flag(step, "invert", false)) unsupported("pre_tokenizer Split with invert = true");
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
            if (flag(*pre, "split", true)) unsupported("Metaspace with split = true");
            const json* scheme = field(*pre, "prepend_scheme");
            const std::string prepend_scheme = scheme && scheme->is_string() ? scheme->get<std::string>()
                                               : flag(*pre, "add_prefix_space", true) ? "always"
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

    void read_tokens(const json& model, Vocab& v) {
        const json* vocab = field(model, "vocab");
        if (!vocab || !vocab->is_object()) malformed("model.vocab must be an object of token -> id");
        int64_t max_id = -1;
        std::vector<std::pair<int64_t, std::string>> entries;
        for (const auto& [text, id] : vocab->items()) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
                malformed("model.vocab entry '" + text + "' has an invalid id");
            }
            entries.emplace_back(id.get<int64_t>(), text);
            max_id = std::max(max_id, id.get<int64_t>());
        }
        struct Added {
            int64_t id;
            std::string content;
            bool special;
        };
        std::vector<Added> added;
        if (const json* list = field(j_, "added_tokens")) {
            for (const json& t : *list) {
                const json* id = field(t, "id");
                const json* content = field(t, "content");
                if (!id || !id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() > INT32_MAX || !content ||
                    !content->is_string()) {
                    malformed("added_tokens entry without a valid 'id' and 'content'");
                }
                for (const char* key : {"lstrip", "rstrip", "single_word"}) {
                    if (flag(t, key, false)) {
                        unsupported("added token '" + content->get<std::string>() + "' with " + key + " = true");
                    }
                }
                added.push_back({id->get<int64_t>(), content->get<std::string>(), flag(t, "special", false)});
                max_id = std::max(max_id, id->get<int64_t>());
            }
        }
        const auto n = static_cast<size_t>(max_id + 1);
        v.tokens.assign(n, {});
        v.types.assign(n, static_cast<int32_t>(TokenType::Unused));
        std::vector<bool> filled(n, false);
        for (const auto& [id, text] : entries) {
            const auto i = static_cast<size_t>(id);
            v.tokens[i] = text;
            filled[i] = true;
            const bool byte_token = v.kind == TokenizerKind::Spm && text.size() == 6 && text.starts_with("<0x") && text.back() == '>';
            v.types[i] = static_cast<int32_t>(byte_token ? TokenType::Byte : TokenType::Normal);
        }
        for (const Added& a : added) {
            const auto i = static_cast<size_t>(a.id);
            v.tokens[i] = a.content;
            filled[i] = true;
            v.types[i] = static_cast<int32_t>(a.special ? TokenType::Control : TokenType::UserDefined);
        }
        for (size_t i = 0; i < n; ++i) {
            if (!filled[i]) v.tokens[i] = "[PAD" + std::to_string(i) + "]";  // ids no entry names
        }
        for (size_t i = 0; i < n; ++i) {
            if (filled[i]) ids_.emplace(v.tokens[i], static_cast<int32_t>(i));
        }
        if (const json* unk = field(model, "unk_token"); unk && unk->is_string()) {
            const auto id = find_id(unk->get<std::string>());
            if (!id) malformed("model.unk_token '" + unk->get<std::string>() + "' is not in the vocab");
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

// A special token in tokenizer_config.json: "text", {"content": "text", …} or null.
std::optional<std::string> config_token(const json& config, const char* key) {
    const json* t = field(config, key);
    if (!t) return std::nullopt;
    if (t->is_string()) return t->get<std::string>();
    if (const json* content = field(*t, "content"); content && content->is_string()) return content->get<std::string>();
    return std::nullopt;
}

// True when the post_processor's single-sequence template starts (at_end: ends) with token `id`.
bool template_adds(const json& root, int32_t id, bool at_end) {
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
        if (ids && ids->is_array() && ids->size() == 1 && (*ids)[0] == id) return true;
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
    const json config = std::filesystem::exists(config_file) ? read_json(config_file) : json::object();
    auto token_id = [&](const char* key) -> int32_t {
        const auto text = config_token(config, key);
        if (!text) return -1;
        const auto id = tj.find_id(*text);
        if (!id) throw Error(config_file.string() + ": " + key + " '" + *text + "' is not in the vocab");
        return *id;
    };
    v.bos_id = token_id("bos_token");
    v.eos_id = token_id("eos_token");
    v.pad_id = token_id("pad_token");
    if (const int32_t unk = token_id("unk_token"); unk >= 0) v.unk_id = unk;
    auto config_flag = [&](const char* key, bool fallback) {
        const json* x = field(config, key);
        return x && x->is_boolean() ? x->get<bool>() : fallback;
    };
    v.add_bos = config_flag("add_bos_token", template_adds(tj.root(), v.bos_id, false));
    v.add_eos = config_flag("add_eos_token", template_adds(tj.root(), v.eos_id, true));

    // The chat template lives in tokenizer_config.json (a string, or a list of named templates) or,
    // in newer checkpoints, in chat_template.jinja.
    if (const json* tmpl = field(config, "chat_template")) {
        if (tmpl->is_string()) {
            v.chat_template = tmpl->get<std::string>();
        } else if (tmpl->is_array()) {
            for (const json& named : *tmpl) {
                const json* name = field(named, "name");
                const json* text = field(named, "template");
                if (is_text(name, "default") && text && text->is_string()) v.chat_template = text->get<std::string>();
            }
        }
    } else if (std::filesystem::exists(dir / "chat_template.jinja")) {
        v.chat_template = read_regular_file(dir / "chat_template.jinja", "chat_template.jinja");
    }

    const std::filesystem::path generation_file = dir / "generation_config.json";
    if (std::filesystem::exists(generation_file)) {
        const json generation = read_json(generation_file);
        if (const json* eos = field(generation, "eos_token_id")) {
            const json list = eos->is_array() ? *eos : json::array({*eos});
            for (const json& id : list) {
                if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= v.n_vocab()) {
                    throw Error(generation_file.string() + ": eos_token_id " + id.dump() + " is not a token id");
                }
                v.stop_ids.push_back(id.get<int32_t>());
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
