// Text <-> token ids for LLaMA-family models: SentencePiece BPE (Llama 1/2) and byte-level BPE
// (GPT-2, StarCoder, SmolLM, Llama 3), matching Hugging Face `tokenizers` id for id.
//
// encode(text):
//   1. text must be valid UTF-8 (else lamina::Error "input text is not valid UTF-8 at byte N");
//   2. special tokens are cut out first (leftmost-longest): user-defined tokens always, control
//      tokens (<|im_start|>, <s>, …) only with parse_special; the rest are "text fragments";
//   3. each text fragment is tokenized on its own:
//      Spm: "▁" prefix (if add_space_prefix), ' ' -> "▁", then merges by score (spm.h) or by rank
//           (bpe.h, vocabs from tokenizer.json), with <0xXX> byte fallback;
//      Bpe: regex pre-tokenization (pre_tokenize.h), each piece's bytes mapped to the GPT-2
//           alphabet (unicode.h), then merges by rank (bpe.h); results cached per piece;
//   4. with add_special, BOS / EOS are added where the vocab says (add_bos / add_eos).
// decode(ids) concatenates token texts (Spm: "▁" -> ' ', byte tokens -> bytes, and the dummy-prefix
// space at the very start is removed; Bpe: GPT-2 alphabet -> bytes), then repairs invalid UTF-8 with
// U+FFFD. For every valid text x: decode(encode(x, false, false)) == x, for both kinds.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

namespace lamina {

class Tokenizer {
public:
    // Validates the vocab and builds the lookup tables; throws lamina::Error on a malformed vocab.
    explicit Tokenizer(Vocab v);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    // Thread-safe (the per-piece cache is locked).
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
    std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
    // The raw vocab string (e.g. "▁Hello", "Ġworld", "<0x0A>"), for `lamina tokenize` without --ids.
    std::string token_piece(int32_t id) const;

    const Vocab& vocab() const;
    int32_t n_vocab() const;
    bool is_stop(int32_t id) const;

    struct Impl;  // defined in tokenizer_impl.h, shared by the tokenizer's .cpp files

private:
    std::unique_ptr<Impl> impl_;
    friend class StreamDecoder;
};

// Incremental decode for streaming generated tokens to a terminal: push() returns the text that is
// final so far, holding back an incomplete UTF-8 sequence until the bytes that complete it arrive.
// The concatenation of all push() results and flush() equals tokenizer.decode(all ids, skip_special).
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
    std::string push(int32_t id);
    // Returns what is still held back (an unfinished sequence comes out as U+FFFD) and starts over.
    std::string flush();

private:
    const Tokenizer& tokenizer_;
    bool skip_special_;
    bool at_start_ = true;  // nothing emitted yet: the SPM dummy-prefix space is still to be removed
    std::string pending_;
};

}  // namespace lamina
