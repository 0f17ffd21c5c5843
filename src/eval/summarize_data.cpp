#include "eval/summarize_data.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_fields.h"
#include "tokenizer/unicode.h"

namespace lamina {

namespace {

// Length in bytes of a Python-whitespace character starting at text[i], or 0.
size_t space_at(std::string_view text, size_t i) {
    const auto b = [&](size_t k) { return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0u; };
    const unsigned c = b(0);
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && (b(1) == 0x85 || b(1) == 0xa0)) return 2;                       // U+0085, U+00A0
    if (c == 0xe1 && b(1) == 0x9a && b(2) == 0x80) return 3;                          // U+1680
    if (c == 0xe2 && b(1) == 0x80 &&
        ((b(2) >= 0x80 && b(2) <= 0x8a) || b(2) == 0xa8 || b(2) == 0xa9 || b(2) == 0xaf))
        return 3;                                                                     // U+2000..200A, 2028, 2029, 202F
    if (c == 0xe2 && b(1) == 0x81 && b(2) == 0x9f) return 3;                          // U+205F
    if (c == 0xe3 && b(1) == 0x80 && b(2) == 0x80) return 3;                          // U+3000
    return 0;
}

// Length of a Python-whitespace character ending at text[end - 1], or 0.
size_t space_before(std::string_view text, size_t end) {
    for (size_t len = 1; len <= 3 && len <= end; ++len)
        if (space_at(text, end - len) == len) return len;
    return 0;
}

std::string where(const std::filesystem::path& path, int64_t line) {
    return path.string() + " line " + std::to_string(line);
}

std::string string_field(const nlohmann::json& obj, const char* key, const std::filesystem::path& path, int64_t line) {
    const auto it = obj.find(key);
    if (it == obj.end())
        throw Error(where(path, line) + ": no \"" + key + "\" key (each line needs \"article\" and \"highlights\")");
    if (!it->is_string()) throw Error(where(path, line) + ": \"" + key + "\" is not a string");
    return it->get<std::string>();
}

}  // namespace

std::string_view python_strip(std::string_view text) {
    size_t begin = 0, end = text.size();
    while (begin < end) {
        const size_t n = space_at(text, begin);
        if (n == 0) break;
        begin += n;
    }
    while (end > begin) {
        const size_t n = space_before(text, end);
        if (n == 0) break;
        end -= n;
    }
    return text.substr(begin, end - begin);
}

std::string summarize_prompt(std::string_view article) {
    const std::string text = std::string(article) + " TL;DR: ";
    const std::string_view stripped = python_strip(text);
    std::string out;
    out.reserve(stripped.size());
    for (size_t i = 0; i < stripped.size(); ++i) {
        if (stripped.compare(i, 4, " n't") == 0) continue;  // drop the space; "n't" follows
        out += stripped[i];
    }
    return out;
}

std::vector<int32_t> keep_last_tokens(const std::vector<int32_t>& ids, int64_t n) {
    if (n < 0 || static_cast<int64_t>(ids.size()) <= n) return ids;
    return std::vector<int32_t>(ids.end() - n, ids.end());
}

std::vector<SummarizeExample> read_summarize_dataset(const std::filesystem::path& path) {
    return parse_summarize_dataset(read_regular_file(path, "dataset"), path);
}

std::vector<SummarizeExample> parse_summarize_dataset(std::string_view file, const std::filesystem::path& path) {
    // JSON Lines with "article" and "highlights"
    std::vector<SummarizeExample> examples;
    int64_t line = 0;
    for (size_t start = 0; start < file.size();) {
        size_t end = file.find('\n', start);
        if (end == std::string::npos) end = file.size();
        std::string_view text = file.substr(start, end - start);
        ++line;
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        if (const size_t bad = utf8_first_invalid(text); bad != kUtf8Valid) {
            throw Error(where(path, line) + ": not valid UTF-8 at byte " + std::to_string(bad) + " of the line (byte " +
                        std::to_string(start + bad) + " of the file)");
        }
        start = end + 1;
        if (python_strip(text).empty())
            throw Error(where(path, line) + ": empty line (one JSON object per line, no blank lines)");
        // Bounded like every JSON file Lamina reads (nesting, memory): a line of a million '[' is refused.
        const nlohmann::json obj = parse_json(text, where(path, line));
        if (!obj.is_object()) throw Error(where(path, line) + ": not a JSON object");
        SummarizeExample ex;
        ex.line = line;
        ex.article = string_field(obj, "article", path, line);
        ex.highlights = string_field(obj, "highlights", path, line);
        if (python_strip(ex.article).empty()) throw Error(where(path, line) + ": \"article\" is empty");
        if (python_strip(ex.highlights).empty()) throw Error(where(path, line) + ": \"highlights\" is empty");
        const auto id = obj.find("id");
        if (id == obj.end()) {
            ex.id = "line " + std::to_string(line);
        } else if (id->is_string()) {
            ex.id = id->get<std::string>();
        } else if (id->is_number_integer()) {
            ex.id = id->dump();  // exact for any JSON integer, unsigned ones past 2^63 included
        } else {
            throw Error(where(path, line) + ": \"id\" is neither a string nor an integer");
        }
        examples.push_back(std::move(ex));
    }
    if (examples.empty()) throw Error(path.string() + ": the dataset holds no examples");
    return examples;
}

}  // namespace lamina
