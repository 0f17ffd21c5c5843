// UTF-8 validation/repair/streaming helpers and the GPT-2 byte alphabet.
#include <gtest/gtest.h>

#include "tokenizer/unicode.h"

namespace lamina {
namespace {

TEST(TokenizerUnicode, FirstInvalidByteFollowsRfc3629) {
    EXPECT_EQ(utf8_first_invalid(""), kUtf8Valid);
    EXPECT_EQ(utf8_first_invalid("plain ascii"), kUtf8Valid);
    EXPECT_EQ(utf8_first_invalid("caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80"), kUtf8Valid);  // é 中 😀
    EXPECT_EQ(utf8_first_invalid("\x80"), 0u);                  // lone continuation byte
    EXPECT_EQ(utf8_first_invalid("ab\xC3"), 2u);                // truncated at the end
    EXPECT_EQ(utf8_first_invalid("ab\xC3("), 2u);               // bad continuation
    EXPECT_EQ(utf8_first_invalid("\xC0\xAF"), 0u);              // overlong '/'
    EXPECT_EQ(utf8_first_invalid("\xE0\x80\xAF"), 0u);          // overlong 3-byte form
    EXPECT_EQ(utf8_first_invalid("x\xED\xA0\x80"), 1u);         // surrogate U+D800
    EXPECT_EQ(utf8_first_invalid("\xF4\x90\x80\x80"), 0u);      // above U+10FFFF
    EXPECT_EQ(utf8_first_invalid("\xFF"), 0u);
}

TEST(TokenizerUnicode, RepairReplacesMaximalInvalidSubsequences) {
    EXPECT_EQ(utf8_repair("a\xE4\xB8"), "a\xEF\xBF\xBD");               // one U+FFFD for the cut-off 中
    EXPECT_EQ(utf8_repair("\xE4\xB8" "a"), "\xEF\xBF\xBD" "a");
    EXPECT_EQ(utf8_repair("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");       // one per bad byte
    EXPECT_EQ(utf8_repair("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");       // valid text is untouched
}

TEST(TokenizerUnicode, EmittableLengthHoldsBackOnlyAnUnfinishedTail) {
    EXPECT_EQ(utf8_emittable_length("ab\xE4\xB8"), 2u);
    EXPECT_EQ(utf8_emittable_length("ab\xE4\xB8\xAD"), 5u);
    EXPECT_EQ(utf8_emittable_length("x\xF0\x9F\x98"), 1u);
    EXPECT_EQ(utf8_emittable_length("\xE4\xB8\xADx\xE4"), 4u);
    EXPECT_EQ(utf8_emittable_length("ab\xFF"), 3u);      // invalid, not unfinished: emitted (as U+FFFD)
    EXPECT_EQ(utf8_emittable_length("ab\xE4" "c"), 4u);  // already broken by 'c'
    EXPECT_EQ(utf8_emittable_length(""), 0u);
}

TEST(TokenizerUnicode, ByteLevelAlphabetIsTheGpt2Mapping) {
    const ByteLevelAlphabet& a = byte_level_alphabet();
    EXPECT_EQ(a.byte_to_utf8[' '], "\xC4\xA0");   // Ġ U+0120
    EXPECT_EQ(a.byte_to_utf8['\n'], "\xC4\x8A");  // Ċ U+010A
    EXPECT_EQ(a.byte_to_utf8['a'], "a");
    EXPECT_EQ(a.byte_to_cp[0xAD], 0x143u);        // the last shifted byte (soft hyphen)
    for (uint32_t b = 0; b < 256; ++b) {
        ASSERT_LT(a.byte_to_cp[b], ByteLevelAlphabet::kMaxCodePoint);
        EXPECT_EQ(a.cp_to_byte[a.byte_to_cp[b]], static_cast<int16_t>(b));
    }
}

}  // namespace
}  // namespace lamina
