// Reading JSON from files a stranger may have written (config.json, a safetensors header, an index, an engine's
// config.json): parsing with bounds on size, nesting and memory, then typed access to one object's keys. Every
// error is a lamina::Error of one line naming the file and the key, e.g.
//   config.json: hidden_size = 72.9: expected an integer
// and never nlohmann's own text alone. Integers are read only from JSON integers (72.9, "72", true and 1e3 are
// refused, never truncated or cast), within int64's range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace lamina {

// The deepest nesting accepted: lamina's JSON files need 4 levels at most (an engine's tensor table), and each
// level of a hostile "[[[[..." costs the parser memory before any check of the content could refuse it.
constexpr size_t kMaxJsonDepth = 64;
// The most memory a parsed document may take, as estimated while parsing (kJsonValueCost per value and key, plus
// the bytes of its strings): a hostile file of 100 MB of "[]," would otherwise become about 2 GB of values.
constexpr size_t kMaxJsonMemory = size_t{512} << 20;
constexpr size_t kJsonValueCost = 64;  // bytes: a value's slot, its map node or vector, and the allocator's overhead

// `text` parsed as one JSON document. Throws lamina::Error "<file>: ..." when it is not valid JSON (with the line
// and column), nests deeper than kMaxJsonDepth, repeats a key within an object (readers disagree on which copy
// wins: Python keeps the last), or would take more than `max_memory`.
nlohmann::json parse_json(std::string_view text, const std::string& file, size_t max_memory = kMaxJsonMemory);

// The regular file `path` (core/file_util.h: a FIFO or device is refused at once) parsed by parse_json, when it
// holds at most `max_bytes`; `what` names the file in errors ("config.json 3000000000 bytes: more than ...").
nlohmann::json read_json_file(const std::filesystem::path& path, const std::string& what, size_t max_bytes);

// The keys of one JSON object. Errors read "<file>: <prefix><key> = <value found>: <what is wrong>", the value
// cut to 80 characters; `prefix` names the object ("rope_parameters.", "tensor 'w' ").
class JsonFields {
public:
    // Throws "<file>: <prefix> is not a JSON object: <value>" when `j` is not one.
    JsonFields(const nlohmann::json& j, std::string file, std::string prefix = "");
    JsonFields(nlohmann::json&&, std::string, std::string = "") = delete;  // it would keep a reference to a temporary

    // The value of `key`; nullptr when the key is absent or null (transformers reads null as unset).
    const nlohmann::json* find(std::string_view key) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }
    const nlohmann::json& json() const { return j_; }
    const std::string& file() const { return file_; }
    const std::string& prefix() const { return prefix_; }

    [[noreturn]] void fail(std::string_view key, const std::string& what) const;
    [[noreturn]] void missing(std::string_view key) const;  // "<file>: <prefix><key> is missing"

    // A JSON number of a float's range (a value past it would become inf once stored as float).
    std::optional<double> number_opt(std::string_view key) const;
    double number(std::string_view key) const;
    double number_or(std::string_view key, double fallback) const { return number_opt(key).value_or(fallback); }

    // A JSON integer in [min, max].
    std::optional<int64_t> integer_opt(std::string_view key, int64_t min = INT64_MIN, int64_t max = INT64_MAX) const;
    int64_t integer(std::string_view key, int64_t min = INT64_MIN, int64_t max = INT64_MAX) const;
    int64_t integer_or(std::string_view key, int64_t fallback) const { return integer_opt(key).value_or(fallback); }
    // A JSON array of integers, each in [min, max]; an error names the element ("element 1 is not an integer").
    std::vector<int64_t> integers(std::string_view key, int64_t min = INT64_MIN, int64_t max = INT64_MAX) const;

    bool boolean(std::string_view key) const;
    bool boolean_or(std::string_view key, bool fallback) const;
    // true or false, `fallback` only when the key is absent: null is refused like any other non-boolean. For keys
    // transformers 5 types `bool` (its strict config classes refuse null) or reads with a plain truth test (yarn's
    // `truncate: null` means false there, not the default).
    bool boolean_not_null_or(std::string_view key, bool fallback) const;
    std::optional<std::string> string_opt(std::string_view key) const;
    std::string string(std::string_view key) const;

    // The object at `key`, read with the prefix "<prefix><key>.".
    JsonFields object(std::string_view key) const;
    // The array at `key`.
    const nlohmann::json& array(std::string_view key) const;

private:
    const nlohmann::json& j_;
    std::string file_;
    std::string prefix_;
};

// `v` as an int64 when it is a JSON integer in [min, max], else nullopt (a float, a string, a bool, or a value
// out of range: never converted by a cast).
std::optional<int64_t> json_integer(const nlohmann::json& v, int64_t min = INT64_MIN, int64_t max = INT64_MAX);

// `v` dumped for an error message: ASCII, one line, cut to 80 characters.
std::string json_excerpt(const nlohmann::json& v);

// A name read from a file (a key, a tensor name) fit for a one-line message: control characters and non-ASCII
// bytes escaped as JSON escapes them, cut to 120 characters.
std::string printable(std::string_view name);

}  // namespace lamina
