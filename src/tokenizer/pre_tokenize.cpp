#include "tokenizer/pre_tokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace lamina {

// HF ByteLevel(use_regex=true); contractions, letters, numbers, other symbols, each optionally led by
// one space; trailing whitespace stays separate from the next word.
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Meta-Llama-3 tokenizer.json Split pattern: case-insensitive contractions, numbers in groups of up
// to three digits, newlines kept apart from other whitespace.
const char* const kLlama3Pattern =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const char* const kIndividualDigitsPattern = R"(\p{N})";
const char* const kDigitRunPattern = R"(\p{N}+)";

std::vector<std::string> pre_tokenizer_patterns(const Vocab& v) {
    const std::string& pre = v.pre;
    if (pre == "gpt-2" || pre == "default") return {kGpt2Pattern};
    if (pre == "starcoder" || pre == "smollm") return {kIndividualDigitsPattern, kGpt2Pattern};
    if (pre == "llama-bpe" || pre == "llama3") return {kLlama3Pattern};
    if (pre == "custom") {
        if (v.pre_regexes.empty()) throw Error("pre-tokenizer 'custom' needs at least one pattern in pre_regexes");
        return v.pre_regexes;
    }
    throw Error("unsupported pre-tokenizer '" + pre +
                "' (supported: default, gpt-2, starcoder, smollm, llama-bpe, llama3, custom)");
}

struct PreTokenizer::Compiled {
    std::string pattern;
    pcre2_code* code = nullptr;
    ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& patterns) {
    for (const std::string& pattern : patterns) {
        auto c = std::make_unique<Compiled>();
        c->pattern = pattern;
        int error_code = 0;
        PCRE2_SIZE error_offset = 0;
        c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                &error_code, &error_offset, nullptr);
        if (c->code == nullptr) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(error_code, message, sizeof(message));
            throw Error("pre-tokenizer pattern '" + pattern + "' does not compile at offset " +
                        std::to_string(error_offset) + ": " + reinterpret_cast<const char*>(message));
        }
        // JIT makes matching several times faster; where the platform has no JIT, pcre2_match falls
        // back to the interpreter with identical results.
        pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE);
        patterns_.push_back(std::move(c));
    }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;

// Appends to `out` the matches of `code` in `piece` and the gaps between them, in order.
void split_piece(const pcre2_code* code, const std::string& pattern, pcre2_match_data* md, std::string_view piece,
                 std::vector<std::string_view>& out) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    size_t last = 0;  // end of the previous match: piece[last, start) is a gap
    size_t offset = 0;
    while (offset < piece.size()) {
        const int rc = pcre2_match(code, subject, piece.size(), offset, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(rc, message, sizeof(message));
            throw Error("pre-tokenizer pattern '" + pattern + "' failed: " + reinterpret_cast<const char*>(message));
        }
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(md);
        const size_t start = ovector[0], end = ovector[1];
        if (start > last) out.push_back(piece.substr(last, start - last));
        if (end > start) {
            out.push_back(piece.substr(start, end - start));
            last = offset = end;
        } else {
            // An empty match splits nothing; step over one character so the loop ends.
            const size_t n = utf8_sequence_length(piece, start);
            last = start;
            offset = start + (n > 0 ? n : 1);
        }
    }
    if (last < piece.size()) out.push_back(piece.substr(last));
}

}  // namespace

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
    std::vector<std::string_view> pieces;
    if (!text.empty()) pieces.push_back(text);
    std::vector<std::string_view> next;
    for (const auto& c : patterns_) {
        MatchData md(pcre2_match_data_create_from_pattern(c->code, nullptr), &pcre2_match_data_free);
        LAMINA_CHECK(md != nullptr, "pcre2 match data allocation failed");
        next.clear();
        for (std::string_view piece : pieces) split_piece(c->code, c->pattern, md.get(), piece, next);
        pieces.swap(next);
    }
    return pieces;
}

}  // namespace lamina
