// The tokens of one forward step: the pending tokens of several sequences packed in order into at most
// `max_tokens`. A sequence's pending tokens are a prompt chunk while it prefills (a long prompt spans
// several steps) or the one token picked last while it decodes. Used by the step loop (runtime/step_loop.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace lamina {

class PrefillPacker {
public:
    explicit PrefillPacker(int64_t max_tokens);

    void clear();
    // Packs as many of `pending` as fit, at positions first_position, first_position + 1, … of KV slot
    // `slot`, and returns how many. When all of them fit, the last one gets a logits row.
    size_t add(std::span<const int32_t> pending, int32_t first_position, int32_t slot);
    size_t room() const { return static_cast<size_t>(max_tokens_) - ids.size(); }

    std::vector<int32_t> ids, positions, slots;
    std::vector<int32_t> logit_rows;  // indices into ids: the last token of each sequence packed whole

private:
    int64_t max_tokens_;
};

}  // namespace lamina
