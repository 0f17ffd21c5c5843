// Tokenizer construction and encode (see tokenizer.h for the pipeline).
#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace lamina {

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // "▁" U+2581, SentencePiece's visible space

bool is_utf8_continuation(char c) { return (static_cast<uint8_t>(c) & 0xC0) == 0x80; }

}  // namespace

SpecialMatcher::SpecialMatcher(const Vocab& v) {
    for (int32_t id = 0; id < v.n_vocab(); ++id) {
        const TokenType type = v.type(id);
        if (type != TokenType::Control && type != TokenType::Unknown && type != TokenType::UserDefined) continue;
        const std::string& text = v.tokens[static_cast<size_t>(id)];
        if (text.empty() || is_utf8_continuation(text[0])) continue;
        by_first_byte_[static_cast<uint8_t>(text[0])].push_back({text, id, type != TokenType::UserDefined});
    }
    for (auto& list : by_first_byte_) {
        std::stable_sort(list.begin(), list.end(),
                         [](const Candidate& a, const Candidate& b) { return a.text.size() > b.text.size(); });
    }
}

std::vector<SpecialMatcher::Fragment> SpecialMatcher::split(std::string_view text, bool parse_special) const {
    std::vector<Fragment> fragments;
    size_t start = 0;  // start of the text fragment being collected
    size_t i = 0;
    while (i < text.size()) {
        const Candidate* hit = nullptr;
        for (const Candidate& c : by_first_byte_[static_cast<uint8_t>(text[i])]) {
            if ((parse_special || !c.needs_parse_special) && text.substr(i).starts_with(c.text)) {
                hit = &c;
                break;
            }
        }
        if (hit == nullptr) {
            ++i;
            continue;
        }
        if (i > start) fragments.push_back({text.substr(start, i - start), -1});
        fragments.push_back({{}, hit->id});
        i += hit->text.size();
        start = i;
    }
    if (start < text.size()) fragments.push_back({text.substr(start), -1});
    return fragments;
}

Tokenizer::Impl::Impl(Vocab v) : vocab(std::move(v)) {
    validate_vocab(vocab, "tokenizer vocab");
    const bool spm = vocab.kind == TokenizerKind::Spm;
    byte_ids.fill(-1);
    for (int32_t id = 0; id < vocab.n_vocab(); ++id) {
        const TokenType type = vocab.type(id);
        const std::string& text = vocab.tokens[static_cast<size_t>(id)];
        if (spm && type == TokenType::Byte) {
            const int byte = parse_byte_token(text);
            if (byte >= 0 && byte_ids[static_cast<size_t>(byte)] < 0) byte_ids[static_cast<size_t>(byte)] = id;
            continue;
        }
        // Control, unknown and unused tokens never come out of plain text (SentencePiece and HF agree).
        const bool from_text =
            type == TokenType::Normal || type == TokenType::UserDefined || (!spm && type == TokenType::Byte);
        if (from_text) text_ids.emplace(text, id);  // the first id wins for a duplicated text
    }
    if (!spm) {
        const ByteLevelAlphabet& alphabet = byte_level_alphabet();
        for (size_t b = 0; b < 256; ++b) {
            const auto it = text_ids.find(alphabet.byte_to_utf8[b]);
            if (it != text_ids.end()) byte_ids[b] = it->second;
        }
        try {
            pre.emplace(pre_tokenizer_patterns(vocab));
        } catch (const Error& e) {
            throw Error(std::string("tokenizer vocab: ") + e.what());
        }
    }
    if (!vocab.merges.empty()) {
        // Merges may name any token (HF resolves them against the whole vocab), not only text_ids.
        TextIndex all_ids;
        for (int32_t id = 0; id < vocab.n_vocab(); ++id) all_ids.emplace(vocab.tokens[static_cast<size_t>(id)], id);
        try {
            merges = std::make_unique<BpeMerges>(vocab.merges, all_ids);
        } catch (const Error& e) {
            throw Error(std::string("tokenizer vocab: ") + e.what());
        }
    }
    specials = SpecialMatcher(vocab);
    stop.assign(vocab.tokens.size(), false);
    for (int32_t id : vocab.stop_ids) stop[static_cast<size_t>(id)] = true;
}

void Tokenizer::Impl::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
    if (vocab.kind == TokenizerKind::Spm) {
        encode_spm(text, out);
        return;
    }
    std::string prefixed;
    if (vocab.add_space_prefix && text.front() != ' ') {
        prefixed = " ";
        prefixed += text;
        text = prefixed;
    }
    for (std::string_view piece : pre->split(text)) encode_bpe_piece(piece, out);
}

void Tokenizer::Impl::encode_bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
    {
        const std::lock_guard lock(cache_mutex);
        const auto it = cache.find(piece);
        if (it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    const ByteLevelAlphabet& alphabet = byte_level_alphabet();
    if (vocab.ignore_merges) {
        std::string mapped;
        for (char c : piece) mapped += alphabet.byte_to_utf8[static_cast<uint8_t>(c)];
        const auto it = text_ids.find(mapped);
        if (it != text_ids.end()) ids.push_back(it->second);
    }
    if (ids.empty()) {
        ids.reserve(piece.size());
        bool after_unknown = false;
        for (char c : piece) {
            const int32_t id = byte_ids[static_cast<uint8_t>(c)];
            if (id >= 0) {
                ids.push_back(id);
            } else if (vocab.unk_id >= 0 && !(vocab.fuse_unk && after_unknown)) {
                ids.push_back(vocab.unk_id);
            }  // a byte the vocab cannot spell and no unk: dropped, as HF BPE does
            after_unknown = id < 0;
        }
        if (merges) merges->apply(ids);
    }
    out.insert(out.end(), ids.begin(), ids.end());
    const std::lock_guard lock(cache_mutex);
    if (cache.size() >= kMaxCachedPieces) cache.clear();
    cache.emplace(std::string(piece), std::move(ids));
}

void Tokenizer::Impl::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
    // SentencePiece normalization: dummy prefix, then every ' ' becomes "▁".
    std::string escaped;
    escaped.reserve(text.size() + kSpmSpace.size());
    if (vocab.add_space_prefix) escaped += kSpmSpace;
    for (char c : text) {
        if (c == ' ') {
            escaped += kSpmSpace;
        } else {
            escaped += c;
        }
    }
    if (!merges) {
        spm_tokenize(escaped, SpmTables{&text_ids, &vocab.scores, byte_ids, vocab.unk_id}, out);
        return;
    }
    // HF BPE with byte fallback: one symbol per character (or per byte for characters the vocab
    // lacks), then merges by rank over the whole fragment.
    std::vector<int32_t> symbols;
    symbols.reserve(escaped.size());
    bool after_unknown = false;
    for (size_t i = 0; i < escaped.size();) {
        const size_t n = std::max<size_t>(utf8_sequence_length(escaped, i), 1);
        const auto it = text_ids.find(std::string_view(escaped).substr(i, n));
        if (it != text_ids.end()) {
            symbols.push_back(it->second);
            after_unknown = false;
        } else {
            const bool all_bytes = std::all_of(escaped.begin() + static_cast<ptrdiff_t>(i),
                                               escaped.begin() + static_cast<ptrdiff_t>(i + n),
                                               [&](char c) { return byte_ids[static_cast<uint8_t>(c)] >= 0; });
            if (all_bytes) {
                for (size_t k = i; k < i + n; ++k) symbols.push_back(byte_ids[static_cast<uint8_t>(escaped[k])]);
            } else if (vocab.unk_id >= 0 && !(vocab.fuse_unk && after_unknown)) {
                symbols.push_back(vocab.unk_id);
            }
            after_unknown = !all_bytes;
        }
        i += n;
    }
    merges->apply(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
}

Tokenizer::Tokenizer(Vocab v) : impl_(std::make_unique<Impl>(std::move(v))) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const size_t bad = utf8_first_invalid(text);
    if (bad != kUtf8Valid) throw Error("input text is not valid UTF-8 at byte " + std::to_string(bad));
    const Vocab& v = impl_->vocab;
    std::vector<int32_t> out;
    out.reserve(text.size() / 2 + 2);  // generous: English text averages about 4 bytes per token
    if (add_special && v.add_bos) out.push_back(v.bos_id);
    for (const auto& fragment : impl_->specials.split(text, parse_special)) {
        if (fragment.id >= 0) {
            out.push_back(fragment.id);
        } else {
            impl_->encode_fragment(fragment.text, out);
        }
    }
    if (add_special && v.add_eos) out.push_back(v.eos_id);
    return out;
}

std::string Tokenizer::token_piece(int32_t id) const {
    if (id < 0 || id >= n_vocab()) {
        throw Error("token id " + std::to_string(id) + " is outside the vocab (0.." + std::to_string(n_vocab() - 1) + ")");
    }
    return impl_->vocab.tokens[static_cast<size_t>(id)];
}

const Vocab& Tokenizer::vocab() const { return impl_->vocab; }
int32_t Tokenizer::n_vocab() const { return impl_->vocab.n_vocab(); }
bool Tokenizer::is_stop(int32_t id) const {
    return id >= 0 && id < n_vocab() && impl_->stop[static_cast<size_t>(id)];
}

}  // namespace lamina
