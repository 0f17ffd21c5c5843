#include "runtime/prefill_packer.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace lamina {

PrefillPacker::PrefillPacker(std::vector<std::span<const int32_t>> prompts, std::vector<int32_t> slot_of,
                             int64_t max_tokens)
    : prompts_(std::move(prompts)), slot_of_(std::move(slot_of)), max_tokens_(max_tokens) {
    LAMINA_CHECK(prompts_.size() == slot_of_.size() && max_tokens_ > 0);
}

bool PrefillPacker::next() {
    ids.clear();
    positions.clear();
    slots.clear();
    logit_rows.clear();
    finishing.clear();
    const auto room = static_cast<size_t>(max_tokens_);
    while (seq_ < prompts_.size() && ids.size() < room) {
        const std::span<const int32_t> p = prompts_[seq_];
        const size_t take = std::min(p.size() - offset_, room - ids.size());
        for (size_t j = 0; j < take; ++j) {
            ids.push_back(p[offset_ + j]);
            positions.push_back(static_cast<int32_t>(offset_ + j));
            slots.push_back(slot_of_[seq_]);
        }
        offset_ += take;
        if (offset_ == p.size()) {
            logit_rows.push_back(static_cast<int32_t>(ids.size() - 1));
            finishing.push_back(seq_);
            ++seq_;
            offset_ = 0;
        }
    }
    return !ids.empty();
}

}  // namespace lamina
