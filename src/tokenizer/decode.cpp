// Token ids -> text: Tokenizer::decode and StreamDecoder share token_bytes, so a stream and a whole
// decode agree byte for byte.
#include "core/error.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace lamina {

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // "▁"

std::string spm_unescape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        if (text.substr(i).starts_with(kSpmSpace)) {
            out += ' ';
            i += kSpmSpace.size();
        } else {
            out += text[i++];
        }
    }
    return out;
}

// GPT-2 alphabet characters back to the bytes they stand for; any other character is kept as is.
std::string byte_level_unmap(std::string_view text) {
    const ByteLevelAlphabet& alphabet = byte_level_alphabet();
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        const size_t n = utf8_sequence_length(text, i);
        if (n == 0) {  // a token that is not valid UTF-8 itself: pass its byte through
            out += text[i++];
            continue;
        }
        const uint32_t cp = decode_utf8(text, i, n);
        const int byte = cp < ByteLevelAlphabet::kMaxCodePoint ? alphabet.cp_to_byte[cp] : -1;
        if (byte >= 0) {
            out += static_cast<char>(byte);
        } else {
            out.append(text.substr(i, n));
        }
        i += n;
    }
    return out;
}

}  // namespace

std::string Tokenizer::Impl::token_bytes(int32_t id, bool skip_special, bool& at_start) const {
    if (id < 0 || id >= vocab.n_vocab()) {
        throw Error("token id " + std::to_string(id) + " is outside the vocab (0.." + std::to_string(vocab.n_vocab() - 1) +
                    ")");
    }
    const std::string& text = vocab.tokens[static_cast<size_t>(id)];
    const bool spm = vocab.kind == TokenizerKind::Spm;
    std::string piece;
    switch (vocab.type(id)) {
        case TokenType::Control:
        case TokenType::Unknown:
            if (skip_special) return {};
            piece = text;
            break;
        case TokenType::UserDefined:
        case TokenType::Unused:
            piece = text;  // added tokens are written as they are, never through the byte alphabet
            break;
        case TokenType::Byte:
            if (spm) {
                const int byte = parse_byte_token(text);
                piece = byte >= 0 ? std::string(1, static_cast<char>(byte)) : text;
            } else {
                piece = byte_level_unmap(text);
            }
            break;
        case TokenType::Normal:
            piece = spm ? spm_unescape(text) : byte_level_unmap(text);
            break;
    }
    if (at_start && !piece.empty()) {
        // SentencePiece's dummy prefix: the space encode put in front of the text is taken off again
        // (HF's Strip decoder on Llama; the first character of the whole output only).
        if (spm && vocab.add_space_prefix && piece.front() == ' ') piece.erase(0, 1);
        at_start = false;
    }
    return piece;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
    std::string out;
    bool at_start = true;
    for (int32_t id : ids) out += impl_->token_bytes(id, skip_special, at_start);
    return utf8_repair(out);
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
    pending_ += tokenizer_.impl_->token_bytes(id, skip_special_, at_start_);
    const size_t ready = utf8_emittable_length(pending_);
    std::string out = utf8_repair(std::string_view(pending_).substr(0, ready));
    pending_.erase(0, ready);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out = utf8_repair(pending_);
    pending_.clear();
    at_start_ = true;
    return out;
}

}  // namespace lamina
