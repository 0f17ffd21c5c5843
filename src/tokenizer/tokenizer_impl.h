// Internal: the lookup tables a Tokenizer builds from its Vocab. Shared by tokenizer.cpp (encode)
// and decode.cpp (decode, StreamDecoder); not part of the public API.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace lamina {

// Finds special tokens in text: leftmost occurrence, longest token at that position.
class SpecialMatcher {
public:
    SpecialMatcher() = default;
    explicit SpecialMatcher(const Vocab& vocab);

    struct Fragment {
        std::string_view text;  // a text fragment when id < 0
        int32_t id = -1;        // else the special token
    };
    // User-defined tokens always match; control and unknown tokens only when parse_special.
    std::vector<Fragment> split(std::string_view text, bool parse_special) const;

private:
    struct Candidate {
        std::string_view text;  // points into the Vocab, which the Impl owns
        int32_t id;
        bool needs_parse_special;
    };
    std::array<std::vector<Candidate>, 256> by_first_byte_;  // each list longest first
};

struct Tokenizer::Impl {
    explicit Impl(Vocab v);

    Vocab vocab;
    TextIndex text_ids;                  // tokens that plain text can become
    std::array<int32_t, 256> byte_ids;   // Bpe: token of each byte's alphabet char; Spm: <0xXX>; -1 = none
    std::unique_ptr<BpeMerges> merges;   // Bpe, and Spm vocabs from tokenizer.json
    std::optional<PreTokenizer> pre;     // Bpe
    SpecialMatcher specials;
    std::vector<bool> stop;

    // Bpe: ids of each distinct pre-token piece seen so far. Bounded: cleared when it reaches
    // kMaxCachedPieces (a few MB), which a long document needs only rarely.
    static constexpr size_t kMaxCachedPieces = size_t{1} << 17;
    mutable std::mutex cache_mutex;
    mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;

    void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;
    void encode_bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;
    void encode_spm(std::string_view text, std::vector<int32_t>& out) const;

    // The bytes token `id` contributes to decoded text. `at_start` is true until the first non-empty
    // piece has been produced; the SPM dummy-prefix space is removed there (and at_start cleared).
    std::string token_bytes(int32_t id, bool skip_special, bool& at_start) const;
};

}  // namespace lamina
