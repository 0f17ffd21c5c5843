// Regex pre-tokenization for byte-level BPE: split text into pieces ("words") that BPE merges never
// cross. A pre-tokenizer is a list of patterns applied in order; each pattern splits every current
// piece into its matches and the (non-empty) gaps between them, like HF `Split(behavior="Isolated")`.
//
// Patterns are PCRE2 with UTF + UCP, so \p{L}, \p{N} and \s are Unicode-aware, JIT-compiled once.
// Input must already be valid UTF-8 (the Tokenizer checks), so matching skips PCRE2's UTF check.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lamina {

struct Vocab;

// The patterns of Vocab::pre (for Vocab::kind == Bpe); throws lamina::Error for an unknown family.
std::vector<std::string> pre_tokenizer_patterns(const Vocab& vocab);

// The GPT-2 / HF ByteLevel pattern, and the Llama 3 one.
extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
// HF Digits(individual_digits = true): each numeric character alone; = false: runs of them.
extern const char* const kIndividualDigitsPattern;
extern const char* const kDigitRunPattern;

class PreTokenizer {
public:
    // Throws lamina::Error naming the pattern and position when a pattern does not compile.
    explicit PreTokenizer(const std::vector<std::string>& patterns);
    ~PreTokenizer();
    PreTokenizer(PreTokenizer&&) noexcept;
    PreTokenizer& operator=(PreTokenizer&&) noexcept;

    // Pieces in order; their concatenation is `text`. Views point into `text`. Thread-safe.
    std::vector<std::string_view> split(std::string_view text) const;

private:
    struct Compiled;
    std::vector<std::unique_ptr<Compiled>> patterns_;
};

}  // namespace lamina
