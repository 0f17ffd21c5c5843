// The BPE merge step shared by byte-level BPE (GPT-2 family) and by SentencePiece vocabs that come
// from a HF tokenizer.json (which lists merges instead of scores).
//
// Symbols are token ids. A merge "left right" (rank r = its index in the merges list) turns adjacent
// symbols (left, right) into the token left+right. `apply` repeatedly merges the pair with the lowest
// rank, leftmost first among equal ranks, until no pair has a merge: exactly HF `tokenizers` BPE.
// Cost: O(n log n) per word with a heap of candidate pairs over a linked list of symbols.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lamina {

// Hash that lets an unordered_map<std::string, …> be searched with a string_view (no copy).
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Token text -> id, for the tokens that text may turn into.
using TextIndex = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeMerges {
public:
    // Throws lamina::Error when a merge names a token, or makes a token, that `ids` does not have.
    BpeMerges(const std::vector<std::string>& merges, const TextIndex& ids);

    // Merges `symbols` in place (see the file comment).
    void apply(std::vector<int32_t>& symbols) const;

private:
    struct Merge {
        int32_t rank;
        int32_t result;
    };
    static uint64_t key(int32_t left, int32_t right) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
    }
    std::unordered_map<uint64_t, Merge> table_;
};

}  // namespace lamina
