#include "core/json_fields.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/file_util.h"

namespace lamina {

namespace {

using json = nlohmann::json;

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string without_tag(const char* what) {
    std::string_view s(what);
    if (s.starts_with("[json.exception.")) {
        if (const size_t end = s.find("] "); end != std::string_view::npos) s.remove_prefix(end + 2);
    }
    return std::string(s);
}

// Builds the document as nlohmann's own parser does (a stack of the open containers, each value added to the
// innermost), refusing what parse_json refuses before the memory is spent. Only the innermost open container
// grows, so the pointers to the outer ones stay valid.
class BoundedBuilder {
public:
    explicit BoundedBuilder(size_t max_memory) : max_memory_(max_memory) {}
    bool null() { return add(nullptr); }
    bool boolean(bool v) { return add(v); }
    bool number_integer(json::number_integer_t v) { return add(v); }
    bool number_unsigned(json::number_unsigned_t v) { return add(v); }
    bool number_float(json::number_float_t v, const json::string_t&) { return add(v); }
    bool string(json::string_t& v) {
        const size_t bytes = v.size();
        return add(std::move(v), bytes);
    }
    bool binary(json::binary_t&) { return refuse("holds a binary value"); }  // only the binary formats have them
    bool start_object(size_t) { return open(json::object()); }
    bool start_array(size_t) { return open(json::array()); }
    bool end_object() { return close(); }
    bool end_array() { return close(); }
    bool key(json::string_t& k) {
        if (open_.back()->contains(k)) return refuse("repeats the key \"" + printable(k) + "\" in one object");
        if (!charge(k.size())) return false;
        key_ = std::move(k);
        return true;
    }
    bool parse_error(size_t, const std::string&, const json::exception& e) {
        error_ = "not valid JSON: " + without_tag(e.what());
        return false;
    }

    json& root() { return root_; }
    const std::string& error() const { return error_; }

private:
    bool refuse(const std::string& why) {
        error_ = why;
        return false;
    }
    // Counts a value (or key) of `bytes` string bytes against max_memory_.
    bool charge(size_t bytes) {
        used_ += kJsonValueCost + bytes;
        if (used_ <= max_memory_) return true;
        return refuse("would take more than " + std::to_string(max_memory_) + " bytes in memory");
    }
    json* insert(json v) {
        if (open_.empty()) {
            root_ = std::move(v);
            return &root_;
        }
        json& parent = *open_.back();
        if (parent.is_array()) {
            parent.push_back(std::move(v));
            return &parent.back();
        }
        return &(parent[key_] = std::move(v));
    }
    bool add(json v, size_t string_bytes = 0) {
        if (!charge(string_bytes)) return false;
        insert(std::move(v));
        return true;
    }
    bool open(json container) {
        if (open_.size() >= kMaxJsonDepth)
            return refuse("nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        if (!charge(0)) return false;
        open_.push_back(insert(std::move(container)));
        return true;
    }
    bool close() {
        open_.pop_back();
        return true;
    }

    json root_;
    std::vector<json*> open_;
    std::string key_;
    size_t max_memory_;
    size_t used_ = 0;
    std::string error_;
};

std::string range_text(int64_t min, int64_t max) {
    if (min == INT64_MIN && max == INT64_MAX) return "is beyond the range of a 64-bit integer";
    return "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& file, size_t max_memory) {
    BoundedBuilder b(max_memory);
    if (!json::sax_parse(text.data(), text.data() + text.size(), &b)) throw Error(file + ": " + b.error());
    return std::move(b.root());
}

nlohmann::json read_json_file(const std::filesystem::path& path, const std::string& what, size_t max_bytes) {
    const RegularFile file(path, what);
    const std::string p = path.string();
    auto too_large = [&](size_t n) {
        return Error(p + ": " + what + " of " + std::to_string(n) + " bytes is larger than the " +
                     std::to_string(max_bytes) + " bytes lamina reads");
    };
    if (file.size() > max_bytes) throw too_large(file.size());
    std::string text(file.size(), '\0');
    size_t n = 0;
    for (;;) {  // to the end, in case the file grew since it was opened; never past max_bytes + 1
        if (n == text.size()) text.resize(std::min(max_bytes + 1, text.size() + (size_t{1} << 16)));
        if (n == text.size()) throw too_large(n);
        const ssize_t got = ::read(file.fd(), text.data() + n, text.size() - n);
        if (got == 0) break;
        if (got < 0) {
            if (errno == EINTR) continue;
            throw Error(p + ": read failed: " + std::strerror(errno));
        }
        n += static_cast<size_t>(got);
    }
    text.resize(n);
    if (n > max_bytes) throw too_large(n);
    return parse_json(text, p);
}

std::optional<int64_t> json_integer(const nlohmann::json& v, int64_t min, int64_t max) {
    int64_t i;
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
        i = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
        i = v.get<int64_t>();
    } else {
        return std::nullopt;
    }
    if (i < min || i > max) return std::nullopt;
    return i;
}

std::string json_excerpt(const nlohmann::json& v) {
    // ASCII only, with invalid UTF-8 replaced: the message stays one printable line.
    std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
    constexpr size_t kMaxShown = 80;
    if (s.size() > kMaxShown) s = s.substr(0, kMaxShown - 3) + "...";
    return s;
}

std::string printable(std::string_view name) {
    std::string s = json(std::string(name)).dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
    s = s.substr(1, s.size() - 2);  // without the quotes
    constexpr size_t kMaxShown = 120;
    if (s.size() > kMaxShown) s = s.substr(0, kMaxShown - 3) + "...";
    return s;
}

JsonFields::JsonFields(const nlohmann::json& j, std::string file, std::string prefix)
    : j_(j), file_(std::move(file)), prefix_(std::move(prefix)) {
    if (j_.is_object()) return;
    std::string name = prefix_;
    while (!name.empty() && (name.back() == '.' || name.back() == ' ')) name.pop_back();
    throw Error(file_ + ": " + (name.empty() ? "the top level" : name) + " is not a JSON object: " + json_excerpt(j_));
}

const nlohmann::json* JsonFields::find(std::string_view key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
}

void JsonFields::fail(std::string_view key, const std::string& what) const {
    const auto it = j_.find(key);
    throw Error(file_ + ": " + prefix_ + printable(key) + " = " + (it == j_.end() ? "absent" : json_excerpt(*it)) + ": " + what);
}

void JsonFields::missing(std::string_view key) const { throw Error(file_ + ": " + prefix_ + printable(key) + " is missing"); }

std::optional<double> JsonFields::number_opt(std::string_view key) const {
    const nlohmann::json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail(key, "expected a number");
    const double d = v->get<double>();
    if (!(std::fabs(d) <= std::numeric_limits<float>::max())) fail(key, "is beyond the range of a 32-bit float");
    return d;
}

double JsonFields::number(std::string_view key) const {
    if (!has(key)) missing(key);
    return *number_opt(key);
}

std::optional<int64_t> JsonFields::integer_opt(std::string_view key, int64_t min, int64_t max) const {
    const nlohmann::json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) fail(key, "expected an integer");
    const auto i = json_integer(*v, min, max);
    if (!i) fail(key, range_text(min, max));
    return i;
}

int64_t JsonFields::integer(std::string_view key, int64_t min, int64_t max) const {
    if (!has(key)) missing(key);
    return *integer_opt(key, min, max);
}

std::vector<int64_t> JsonFields::integers(std::string_view key, int64_t min, int64_t max) const {
    const nlohmann::json& a = array(key);
    std::vector<int64_t> out;
    out.reserve(a.size());
    for (size_t i = 0; i < a.size(); ++i) {
        const auto v = json_integer(a[i], min, max);
        if (!v) fail(key, "element " + std::to_string(i) + " " + (a[i].is_number_integer() ? range_text(min, max) : "is not an integer"));
        out.push_back(*v);
    }
    return out;
}

bool JsonFields::boolean(std::string_view key) const {
    if (!has(key)) missing(key);
    return boolean_or(key, false);
}

bool JsonFields::boolean_or(std::string_view key, bool fallback) const {
    const nlohmann::json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "expected true or false");
    return v->get<bool>();
}

bool JsonFields::boolean_not_null_or(std::string_view key, bool fallback) const {
    const auto it = j_.find(key);
    if (it != j_.end() && it->is_null()) fail(key, "expected true or false (null is not a boolean)");
    return boolean_or(key, fallback);
}

std::optional<std::string> JsonFields::string_opt(std::string_view key) const {
    const nlohmann::json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, "expected a string");
    return v->get<std::string>();
}

std::string JsonFields::string(std::string_view key) const {
    if (!has(key)) missing(key);
    return *string_opt(key);
}

JsonFields JsonFields::object(std::string_view key) const {
    const nlohmann::json* v = find(key);
    if (!v) missing(key);
    if (!v->is_object()) fail(key, "expected an object");
    return JsonFields(*v, file_, prefix_ + printable(key) + ".");
}

const nlohmann::json& JsonFields::array(std::string_view key) const {
    const nlohmann::json* v = find(key);
    if (!v) missing(key);
    if (!v->is_array()) fail(key, "expected a list");
    return *v;
}

}  // namespace lamina
