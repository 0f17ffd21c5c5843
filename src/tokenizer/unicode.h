// UTF-8 and byte-level helpers shared by the tokenizers.
//
// Validation follows RFC 3629 strictly (no overlong forms, no surrogates, nothing above U+10FFFF), the
// same rules Rust's `str` enforces in Hugging Face `tokenizers`. Lossy repair replaces each maximal
// invalid subsequence with U+FFFD, like Rust's `String::from_utf8_lossy` that HF's decoders call.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lamina {

inline constexpr size_t kUtf8Valid = static_cast<size_t>(-1);
inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Offset of the first byte that does not start a valid UTF-8 sequence, or kUtf8Valid.
size_t utf8_first_invalid(std::string_view s);

// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when it is invalid or truncated.
size_t utf8_sequence_length(std::string_view s, size_t i);

// Bytes of a valid-so-far sequence starting at s[i] that ends early (e.g. "\xE4\xB8" at the end):
// 1..3 when s[i..] is a proper prefix of some valid sequence, else 0.
size_t utf8_truncated_prefix_length(std::string_view s, size_t i);

// Appends the UTF-8 encoding of code point cp (which must be a valid scalar value).
void append_utf8(std::string& out, uint32_t cp);

// Decodes the valid sequence of length n at s[i]; the caller has validated it.
uint32_t decode_utf8(std::string_view s, size_t i, size_t n);

// s with every maximal invalid subsequence replaced by U+FFFD.
std::string utf8_repair(std::string_view s);

// How many leading bytes of s can be shown now: everything except a trailing sequence that is valid so
// far but incomplete (a later byte may complete it). Used to stream decoded text without broken chars.
size_t utf8_emittable_length(std::string_view s);

// GPT-2 byte-level alphabet: every byte 0..255 is mapped to one printable code point so that BPE
// tokens are valid strings. Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves;
// the other 68 bytes map, in byte order, to U+0100, U+0101, …  (so ' ' -> 'Ġ' U+0120, '\n' -> 'Ċ').
struct ByteLevelAlphabet {
    std::array<std::string, 256> byte_to_utf8;  // the UTF-8 text of each byte's code point
    std::array<uint32_t, 256> byte_to_cp;
    // Inverse: code point -> byte, or -1. Code points above the table size are never byte-level chars.
    static constexpr uint32_t kMaxCodePoint = 0x144;  // the last mapped code point is U+0143
    std::array<int16_t, kMaxCodePoint> cp_to_byte;
};
const ByteLevelAlphabet& byte_level_alphabet();

}  // namespace lamina
