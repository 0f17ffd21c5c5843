#include "runtime/prefill_packer.h"

#include <algorithm>

#include "core/error.h"

namespace lamina {

PrefillPacker::PrefillPacker(int64_t max_tokens) : max_tokens_(max_tokens) { LAMINA_CHECK(max_tokens_ > 0); }

void PrefillPacker::clear() {
    ids.clear();
    positions.clear();
    slots.clear();
    logit_rows.clear();
}

size_t PrefillPacker::add(std::span<const int32_t> pending, int32_t first_position, int32_t slot) {
    const size_t take = std::min(pending.size(), room());
    for (size_t j = 0; j < take; ++j) {
        ids.push_back(pending[j]);
        positions.push_back(first_position + static_cast<int32_t>(j));
        slots.push_back(slot);
    }
    if (take > 0 && take == pending.size()) logit_rows.push_back(static_cast<int32_t>(ids.size() - 1));
    return take;
}

}  // namespace lamina
