// SentencePiece BPE over scores (what llama.cpp runs for tokenizer.ggml.model = "llama").
//
// The text (already prefixed and with ' ' escaped to "▁") starts as one symbol per UTF-8 character.
// Repeatedly, the adjacent pair whose concatenation is a token with the highest score is merged
// (leftmost first among equal scores). Each final symbol is its token, or — when the character is not
// in the vocab — one <0xXX> byte token per byte (unk when the vocab has no byte tokens).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"

namespace lamina {

struct SpmTables {
    const TextIndex* ids;                // tokens that text may become
    const std::vector<float>* scores;    // one per token
    std::array<int32_t, 256> byte_ids;   // id of <0xXX>, or -1
    int32_t unk_id;
};

// The byte of a byte-fallback token "<0xAB>", or -1 when `text` is not one.
int parse_byte_token(std::string_view text);

// Appends the ids of `text` (valid UTF-8, already escaped) to `out`.
void spm_tokenize(std::string_view text, const SpmTables& tables, std::vector<int32_t>& out);

}  // namespace lamina
