// Prompt tokens of several sequences packed into forward steps of at most `max_tokens` tokens, in
// order; a long prompt spans several steps. Shared by the generator and beam search.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace lamina {

class PrefillPacker {
public:
    // Prompt i is written to KV slot slot_of[i].
    PrefillPacker(std::vector<std::span<const int32_t>> prompts, std::vector<int32_t> slot_of, int64_t max_tokens);

    // Fills the members below with the next step; false once every prompt has been packed.
    bool next();

    std::vector<int32_t> ids, positions, slots;
    std::vector<int32_t> logit_rows;  // the last prompt token of each sequence finishing in this step
    std::vector<size_t> finishing;    // those sequences (indices into the prompts), in logit_rows order

private:
    std::vector<std::span<const int32_t>> prompts_;
    std::vector<int32_t> slot_of_;
    int64_t max_tokens_;
    size_t seq_ = 0, offset_ = 0;
};

}  // namespace lamina
