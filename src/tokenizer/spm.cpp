#include "tokenizer/spm.h"

#include <queue>

#include "tokenizer/unicode.h"

namespace lamina {

namespace {

struct Symbol {
    size_t start;
    size_t length;  // 0 once merged into its left neighbour
    int prev, next;
};

struct Bigram {
    float score;
    int left, right;
    size_t length;  // of the concatenation when queued; differs once either side has grown
    bool operator<(const Bigram& o) const { return score != o.score ? score < o.score : left > o.left; }
};

}  // namespace

int parse_byte_token(std::string_view text) {
    constexpr size_t kByteTokenLength = 6;  // "<0x" + two hex digits + ">"
    if (text.size() != kByteTokenLength || !text.starts_with("<0x") || text.back() != '>') return -1;
    int value = 0;
    for (char c : text.substr(3, 2)) {
        const int digit = (c >= '0' && c <= '9') ? c - '0'
                          : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                          : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                                   : -1;
        if (digit < 0) return -1;
        value = value * 16 + digit;
    }
    return value;
}

void spm_tokenize(std::string_view text, const SpmTables& t, std::vector<int32_t>& out) {
    std::vector<Symbol> symbols;
    for (size_t i = 0; i < text.size();) {
        size_t n = utf8_sequence_length(text, i);
        if (n == 0) n = 1;  // cannot happen for validated input; keeps the loop total
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({i, n, index - 1, -1});
        if (index > 0) symbols[static_cast<size_t>(index - 1)].next = index;
        i += n;
    }

    std::priority_queue<Bigram> queue;  // max-heap: highest score first
    auto consider = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const Symbol& l = symbols[static_cast<size_t>(left)];
        const Symbol& r = symbols[static_cast<size_t>(right)];
        const auto it = t.ids->find(text.substr(l.start, l.length + r.length));
        if (it == t.ids->end()) return;
        queue.push({(*t.scores)[static_cast<size_t>(it->second)], left, right, l.length + r.length});
    };
    for (size_t i = 1; i < symbols.size(); ++i) consider(static_cast<int>(i) - 1, static_cast<int>(i));

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = symbols[static_cast<size_t>(b.left)];
        Symbol& r = symbols[static_cast<size_t>(b.right)];
        if (l.length == 0 || r.length == 0 || l.length + r.length != b.length) continue;  // stale
        l.length += r.length;
        r.length = 0;
        l.next = r.next;
        if (l.next >= 0) symbols[static_cast<size_t>(l.next)].prev = b.left;
        consider(l.prev, b.left);
        consider(b.left, l.next);
    }

    for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
        const Symbol& s = symbols[static_cast<size_t>(i)];
        const std::string_view piece = text.substr(s.start, s.length);
        const auto it = t.ids->find(piece);
        if (it != t.ids->end()) {
            out.push_back(it->second);
            continue;
        }
        for (char c : piece) {  // byte fallback
            const int32_t id = t.byte_ids[static_cast<uint8_t>(c)];
            if (id >= 0) {
                out.push_back(id);
            } else if (t.unk_id >= 0) {
                out.push_back(t.unk_id);
            }  // a vocab with neither byte tokens nor unk drops the byte, as HF BPE does

        }
    }
}

}  // namespace lamina
