#include "tokenizer/bpe.h"

#include <queue>

#include "core/error.h"

namespace lamina {

BpeMerges::BpeMerges(const std::vector<std::string>& merges, const TextIndex& ids) {
    table_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& m = merges[rank];
        // Split at the first space after the first character (a left part is never empty).
        const size_t space = m.find(' ', 1);
        if (space == std::string::npos) throw Error("merge " + std::to_string(rank) + " '" + m + "' has no space");
        const std::string_view left = std::string_view(m).substr(0, space);
        const std::string_view right = std::string_view(m).substr(space + 1);
        const auto l = ids.find(left), r = ids.find(right);
        const auto merged = ids.find(std::string(left) + std::string(right));
        if (l == ids.end() || r == ids.end() || merged == ids.end()) {
            throw Error("merge " + std::to_string(rank) + " '" + m + "' refers to a token that is not in the vocab");
        }
        // emplace keeps the first (highest-priority) entry when a pair is listed twice.
        table_.emplace(key(l->second, r->second), Merge{static_cast<int32_t>(rank), merged->second});
    }
}

void BpeMerges::apply(std::vector<int32_t>& symbols) const {
    const int n = static_cast<int>(symbols.size());
    if (n < 2) return;
    // Doubly linked list over symbol positions; a merged-away position gets id -1.
    std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        prev[static_cast<size_t>(i)] = i - 1;
        next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
    }
    struct Candidate {
        int32_t rank;
        int pos;                  // position of the left symbol
        int32_t left, right;      // ids when queued; a candidate is stale once either changed
        int32_t result;
        bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto consider = [&](int pos) {
        if (pos < 0) return;
        const int right_pos = next[static_cast<size_t>(pos)];
        if (right_pos < 0) return;
        const int32_t l = symbols[static_cast<size_t>(pos)], r = symbols[static_cast<size_t>(right_pos)];
        const auto it = table_.find(key(l, r));
        if (it != table_.end()) queue.push({it->second.rank, pos, l, r, it->second.result});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i);

    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        const auto p = static_cast<size_t>(c.pos);
        const int q = next[p];
        if (symbols[p] != c.left || q < 0 || symbols[static_cast<size_t>(q)] != c.right) continue;  // stale
        symbols[p] = c.result;
        symbols[static_cast<size_t>(q)] = -1;
        next[p] = next[static_cast<size_t>(q)];
        if (next[p] >= 0) prev[static_cast<size_t>(next[p])] = c.pos;
        consider(prev[p]);
        consider(c.pos);
    }
    size_t out = 0;
    for (int i = 0; i >= 0; i = next[static_cast<size_t>(i)]) symbols[out++] = symbols[static_cast<size_t>(i)];
    symbols.resize(out);
}

}  // namespace lamina
