#include "tokenizer/unicode.h"

namespace lamina {

namespace {

bool is_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Allowed range of the second byte for a given lead byte (RFC 3629 table 3-7). This one table rules
// out overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points > U+10FFFF (F4 90..).
struct LeadRule {
    size_t length;       // total sequence length, 0 = byte can never start a sequence
    uint8_t second_lo;
    uint8_t second_hi;
};

LeadRule lead_rule(uint8_t b) {
    if (b < 0x80) return {1, 0, 0};
    if (b < 0xC2) return {0, 0, 0};  // continuation bytes and overlong 2-byte leads C0, C1
    if (b < 0xE0) return {2, 0x80, 0xBF};
    if (b == 0xE0) return {3, 0xA0, 0xBF};
    if (b == 0xED) return {3, 0x80, 0x9F};
    if (b < 0xF0) return {3, 0x80, 0xBF};
    if (b == 0xF0) return {4, 0x90, 0xBF};
    if (b < 0xF4) return {4, 0x80, 0xBF};
    if (b == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};
}

// How many bytes of s[i..] agree with a valid sequence (at most the sequence length).
// Returns {matched, needed}; the sequence is complete when matched == needed > 0.
struct PrefixMatch {
    size_t matched;
    size_t needed;
};

PrefixMatch match_prefix(std::string_view s, size_t i) {
    const LeadRule rule = lead_rule(static_cast<uint8_t>(s[i]));
    if (rule.length == 0) return {0, 0};
    if (rule.length == 1) return {1, 1};
    size_t matched = 1;
    if (i + 1 < s.size()) {
        const auto b = static_cast<uint8_t>(s[i + 1]);
        if (b >= rule.second_lo && b <= rule.second_hi) {
            matched = 2;
            while (matched < rule.length && i + matched < s.size() &&
                   is_continuation(static_cast<uint8_t>(s[i + matched]))) {
                ++matched;
            }
        }
    }
    return {matched, rule.length};
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
    const PrefixMatch m = match_prefix(s, i);
    return m.needed > 0 && m.matched == m.needed ? m.needed : 0;
}

size_t utf8_truncated_prefix_length(std::string_view s, size_t i) {
    const PrefixMatch m = match_prefix(s, i);
    // Truncated only when the match ran into the end of the string, not into a bad byte.
    const bool at_end = i + m.matched == s.size();
    return m.needed > 1 && m.matched < m.needed && at_end ? m.matched : 0;
}

size_t utf8_first_invalid(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        if (static_cast<uint8_t>(s[i]) < 0x80) {  // ASCII fast path
            ++i;
            continue;
        }
        const size_t n = utf8_sequence_length(s, i);
        if (n == 0) return i;
        i += n;
    }
    return kUtf8Valid;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

uint32_t decode_utf8(std::string_view s, size_t i, size_t n) {
    static constexpr uint8_t kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};  // payload bits of the lead byte
    uint32_t cp = static_cast<uint8_t>(s[i]) & kLeadMask[n];
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    return cp;
}

std::string utf8_repair(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const PrefixMatch m = match_prefix(s, i);
        if (m.needed > 0 && m.matched == m.needed) {
            out.append(s.substr(i, m.needed));
            i += m.needed;
        } else {
            // A lone bad byte, or the longest valid-so-far prefix, becomes one replacement character.
            append_utf8(out, kReplacementChar);
            i += m.matched > 0 ? m.matched : 1;
        }
    }
    return out;
}

size_t utf8_emittable_length(std::string_view s) {
    // A sequence is at most 4 bytes, so only the last 3 bytes can be an incomplete tail.
    constexpr size_t kMaxTail = 3;
    const size_t first = s.size() > kMaxTail ? s.size() - kMaxTail : 0;
    for (size_t i = first; i < s.size(); ++i) {
        if (utf8_truncated_prefix_length(s, i) > 0) return i;
    }
    return s.size();
}

const ByteLevelAlphabet& byte_level_alphabet() {
    static const ByteLevelAlphabet alphabet = [] {
        ByteLevelAlphabet a{};
        a.cp_to_byte.fill(-1);
        // Bytes that are printable on their own keep their value; the rest are numbered from U+0100.
        constexpr uint32_t kFirstShifted = 0x100;
        uint32_t next = kFirstShifted;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const uint32_t cp = printable ? b : next++;
            a.byte_to_cp[b] = cp;
            append_utf8(a.byte_to_utf8[b], cp);
            a.cp_to_byte[cp] = static_cast<int16_t>(b);
        }
        return a;
    }();
    return alphabet;
}

}  // namespace lamina
