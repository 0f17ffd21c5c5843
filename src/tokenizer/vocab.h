// The tokenizer's data: tokens, scores/merges, special ids and the rules that go with them.
//
// A Vocab comes from a GGUF file (tokenizer.ggml.* keys), a Hugging Face directory (tokenizer.json +
// tokenizer_config.json + generation_config.json) or Lamina's own JSON file written next to an engine
// ("tokenizer.lamina.json"). All three give the same struct, so the Tokenizer never knows the source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lamina {

class GgufFile;

// Bounds on a tokenizer read from a stranger's files. The largest real vocabularies hold about 262k tokens
// (Gemma 3) in a tokenizer.json of 33 MB.
constexpr int32_t kMaxVocabSize = int32_t{1} << 24;           // tokens; the bound on a config's vocab_size too
constexpr size_t kMaxTokenizerFileBytes = size_t{256} << 20;  // tokenizer.json and the other JSON files

// GGUF tokenizer.ggml.model: "llama" -> Spm (SentencePiece BPE), "gpt2" -> Bpe (byte-level BPE).
enum class TokenizerKind { Spm, Bpe };

// GGUF token types (llama.cpp numbering), stored in Vocab::types.
enum class TokenType : int32_t {
    Normal = 1,
    Unknown = 2,
    Control = 3,      // <s>, </s>, <|im_start|>: matched in text only with parse_special
    UserDefined = 4,  // added tokens matched in text always
    Unused = 5,
    Byte = 6,         // SPM byte fallback <0xXX>
};

struct Vocab {
    TokenizerKind kind = TokenizerKind::Spm;
    // Pre-tokenizer family for Bpe (GGUF tokenizer.ggml.pre): "gpt-2", "starcoder", "smollm",
    // "llama-bpe"/"llama3", "default" (= gpt-2), or "custom" with the patterns in pre_regexes.
    std::string pre = "default";
    std::vector<std::string> pre_regexes;  // only for pre == "custom": applied in order, see pre_tokenize.h

    std::vector<std::string> tokens;
    std::vector<float> scores;   // SPM merge priority (higher merges first); may be empty for Bpe
    std::vector<int32_t> types;  // TokenType values, one per token
    // "left right" pairs, highest priority first (GGUF/HF order). Bpe always has them; an Spm vocab
    // built from a HF tokenizer.json has them too and then merges by rank instead of by score.
    std::vector<std::string> merges;

    // unk_id is what encode gives text the vocab cannot spell (-1: such text is dropped): tokenizer.json's
    // model.unk_token, as Hugging Face tokenizers reads it, or GGUF tokenizer.ggml.unknown_token_id.
    int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
    // HF BPE `fuse_unk`: a run of characters the vocab cannot spell becomes one unk_id, not one per character.
    bool fuse_unk = false;
    bool add_bos = false, add_eos = false;
    // Spm: prepend "▁" to each text fragment (SentencePiece dummy prefix). Bpe: prepend " " to a
    // fragment that does not start with one (HF ByteLevel add_prefix_space).
    bool add_space_prefix = true;
    // HF BPE `ignore_merges` (Llama 3): a pre-token that is itself a token is emitted whole.
    bool ignore_merges = false;

    std::vector<int32_t> stop_ids;  // every id that ends generation (eos, <|im_end|>, <|eot_id|>, …)
    std::string chat_template;      // the checkpoint's Jinja chat template, rendered by chat_template.h
    // Where the vocab was read from (GGUF file, HF directory, engine tokenizer file), for error messages;
    // not saved.
    std::string source;

    int32_t n_vocab() const { return static_cast<int32_t>(tokens.size()); }
    TokenType type(int32_t id) const { return static_cast<TokenType>(types[static_cast<size_t>(id)]); }
};

Vocab vocab_from_gguf(const GgufFile& gguf);
// `dir` holds tokenizer.json, and optionally tokenizer_config.json (bos/eos tokens, add_bos_token,
// add_eos_token, added_tokens_decoder, chat_template), chat_template.jinja and generation_config.json
// (eos_token_id, one id or a list). An unsupported tokenizer.json structure, and any malformed value
// (a wrong type, an id that is not a token's, files that disagree), throws lamina::Error naming the file
// and the key.
Vocab vocab_from_hf_dir(const std::filesystem::path& dir);

// Lamina's own JSON format, written into an engine directory. Carries "format_version".
void save_vocab(const Vocab& vocab, const std::filesystem::path& file);
// Validates everything; throws lamina::Error naming the file and field on anything malformed.
Vocab load_vocab(const std::filesystem::path& file);

// Extends `v` to `n_vocab` ids with placeholder tokens "[PAD<id>]" typed Control, for a model whose
// embedding has more rows than its tokenizer has tokens (padded to a multiple of 64 or 128, as many HF
// checkpoints are): an id the model may generate then decodes, to nothing when special tokens are
// skipped, as Hugging Face decodes an id it has no token for. Nothing when v already has n_vocab tokens.
void pad_vocab(Vocab& v, int32_t n_vocab);

// Checks the invariants the Tokenizer relies on (at most kMaxVocabSize tokens, sizes agree, ids in range,
// finite scores, known types and pre);
// throws lamina::Error that starts with `source` (a file name) and names the field.
void validate_vocab(const Vocab& vocab, const std::string& source);

// Fills stop_ids with eos plus every end-of-turn token the vocab has (<|im_end|>, <|eot_id|>, …),
// keeping ids already present. Loaders call it; exposed for tests and tools.
void add_default_stop_ids(Vocab& vocab);

}  // namespace lamina
