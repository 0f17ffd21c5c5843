#include "io/gguf.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/checked.h"
#include "core/error.h"
#include "core/ggml_quants.h"

namespace lamina {

namespace {

// GGUF metadata value type codes (spec order).
enum ValueType : uint32_t {
    kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
    kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

constexpr uint32_t kMaxDims = 4;                  // GGML_MAX_DIMS
constexpr uint64_t kMaxDim = uint64_t{1} << 40;   // per dimension; their product is checked besides
constexpr uint64_t kMaxStringBytes = 1ull << 30;  // no real value (a chat template, a token) is near 1 GiB
constexpr uint64_t kMaxNameBytes = 65535;         // the spec's bound on a key; tensor names are far shorter
constexpr int64_t kMaxAlignment = 1 << 20;        // writers pad to 32; a larger power of two only wastes the file
// The smallest directory records, which bound the counts by the bytes left before anything is reserved:
// a kv is a key length, an empty key, a type and a one-byte value; a tensor info is a name length, an empty
// name, n_dims, one dimension, a type and an offset.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

// Bytes of one value of a fixed-width type; 0 for strings, arrays and unknown codes.
uint64_t fixed_width(uint32_t type) {
    switch (type) {
        case kU8: case kI8: case kBool: return 1;
        case kU16: case kI16: return 2;
        case kU32: case kI32: case kF32: return 4;
        case kU64: case kI64: case kF64: return 8;
        default: return 0;
    }
}

// A key or tensor name from the file as an error message shows it: quoted, control bytes escaped and long
// names cut, so that a hostile name cannot break the one-line message.
std::string shown_name(std::string_view s) {
    constexpr size_t kShown = 80;
    const std::string_view shown = s.substr(0, kShown);
    auto is_control = [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; };
    std::string out = "'";
    if (std::none_of(shown.begin(), shown.end(), is_control)) {
        out += shown;  // the usual name, copied whole (the GGUF reader names every key and tensor this way)
    } else {
        for (const char c : shown) {
            if (is_control(c)) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
                out += buf;
            } else {
                out += c;
            }
        }
    }
    return out + (s.size() > kShown ? "'..." : "'");
}

std::string show(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

template <typename T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Bounds-checked little-endian reader over the mapped file; every failure names the file, the record being
// read (`context`) and the offset.
class Cursor {
public:
    explicit Cursor(const MappedFile& f) : f_(f) {}
    size_t pos() const { return pos_; }
    uint64_t remaining() const { return f_.size() - pos_; }
    const uint8_t* here() const { return f_.data() + pos_; }
    void set_context(std::string context) { context_ = std::move(context); }

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(f_.path().string() + ": malformed GGUF: " + (context_.empty() ? "" : context_ + ": ") + what +
                    " (at byte " + std::to_string(pos_) + ")");
    }
    void skip(uint64_t n, const char* what) {
        if (n > remaining()) fail(std::string("truncated while reading ") + what);
        pos_ += n;
    }
    template <typename T>
    T read(const char* what) {
        const uint8_t* p = here();
        skip(sizeof(T), what);
        return load<T>(p);
    }
    std::string_view read_string(const char* what, uint64_t max_bytes) {
        const auto n = read<uint64_t>(what);
        if (n > max_bytes)
            fail(std::string(what) + " of " + std::to_string(n) + " bytes is longer than " + std::to_string(max_bytes));
        const auto* p = reinterpret_cast<const char*>(here());
        skip(n, what);
        return {p, n};
    }

private:
    const MappedFile& f_;
    size_t pos_ = 0;
    std::string context_;
};

void check_bool(Cursor& c, uint8_t b) {
    if (b > 1) c.fail("bool value " + std::to_string(b) + " (expected 0 or 1)");
}

// A fixed-width value, integers widened to uint64/int64 and floats to double.
using Scalar = std::variant<std::monostate, uint64_t, int64_t, double, bool>;
Scalar decode_scalar(uint32_t type, const uint8_t* p) {
    switch (type) {
        case kU8: return uint64_t{load<uint8_t>(p)};
        case kI8: return int64_t{load<int8_t>(p)};
        case kU16: return uint64_t{load<uint16_t>(p)};
        case kI16: return int64_t{load<int16_t>(p)};
        case kU32: return uint64_t{load<uint32_t>(p)};
        case kI32: return int64_t{load<int32_t>(p)};
        case kU64: return load<uint64_t>(p);
        case kI64: return load<int64_t>(p);
        case kF32: return double{load<float>(p)};
        case kF64: return load<double>(p);
        case kBool: return load<uint8_t>(p) == 1;  // checked to be 0 or 1 at load
        default: return std::monostate{};
    }
}

Scalar scalar_of(const GgufValue& v) {
    return std::visit(
        [](const auto& x) -> Scalar {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string_view> || std::is_same_v<T, GgufArray>)
                return std::monostate{};
            else
                return x;
        },
        v.value);
}

// The conversions every integer and float getter shares. `name()` says what is converted (the key, and the
// element of an array); it is built only for an error, as arrays hold a vocabulary's 10^5 elements.
template <typename Name>
int64_t as_int(const Scalar& s, const Name& name) {
    if (const auto* u = std::get_if<uint64_t>(&s)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            throw Error(name() + " = " + std::to_string(*u) + " does not fit a signed 64-bit integer");
        return static_cast<int64_t>(*u);
    }
    if (const auto* i = std::get_if<int64_t>(&s)) return *i;
    throw Error(name() + " is not an integer");
}

template <typename Name>
double as_float(const Scalar& s, const Name& name) {
    double d;
    if (const auto* f = std::get_if<double>(&s))
        d = *f;
    else if (const auto* u = std::get_if<uint64_t>(&s))
        d = static_cast<double>(*u);
    else if (const auto* i = std::get_if<int64_t>(&s))
        d = static_cast<double>(*i);
    else
        throw Error(name() + " is not a number");
    if (!std::isfinite(d)) throw Error(name() + " = " + show(d) + " is not a finite number");
    if (std::fabs(d) > FLT_MAX) throw Error(name() + " = " + show(d) + " is beyond the range of a 32-bit float");
    if (d != 0 && static_cast<float>(d) == 0) throw Error(name() + " = " + show(d) + " underflows a 32-bit float to 0");
    return d;
}

// One metadata value at the cursor. Arrays are checked (their length against the bytes left, each string's
// length, each bool) and kept as a view.
GgufValue read_value(Cursor& c, uint32_t type) {
    GgufValue v;
    v.type = type;
    if (type == kString) {
        v.value = c.read_string("string", kMaxStringBytes);
    } else if (type == kArray) {
        const auto elem_type = c.read<uint32_t>("array type");
        const auto n = c.read<uint64_t>("array length");
        const uint8_t* begin = c.here();
        if (elem_type == kArray) c.fail("arrays of arrays are not supported (llama.cpp refuses them too)");
        if (elem_type == kString) {
            // Every string takes at least its 8-byte length: bound the count before walking them.
            if (n > c.remaining() / 8)
                c.fail("array of " + std::to_string(n) + " strings is longer than the " +
                       std::to_string(c.remaining()) + " bytes left");
            for (uint64_t i = 0; i < n; ++i) c.read_string("array string", kMaxStringBytes);
        } else {
            const uint64_t width = fixed_width(elem_type);
            if (width == 0) c.fail("array of unknown value type " + std::to_string(elem_type));
            if (n > c.remaining() / width)
                c.fail("array of " + std::to_string(n) + " elements of " + std::to_string(width) +
                       " bytes is longer than the " + std::to_string(c.remaining()) + " bytes left");
            if (elem_type == kBool)
                for (uint64_t i = 0; i < n; ++i) check_bool(c, begin[i]);
            c.skip(n * width, "array elements");
        }
        v.value = GgufArray{elem_type, n, {begin, static_cast<size_t>(c.here() - begin)}};
    } else {
        const uint64_t width = fixed_width(type);
        if (width == 0) c.fail("unknown value type " + std::to_string(type));
        const uint8_t* p = c.here();
        c.skip(width, "value");
        if (type == kBool) check_bool(c, *p);
        std::visit(
            [&](auto x) {
                if constexpr (!std::is_same_v<decltype(x), std::monostate>) v.value = x;
            },
            decode_scalar(type, p));
    }
    return v;
}

std::string key_error(const std::filesystem::path& p, const std::string& key, const char* what) {
    return p.string() + ": GGUF key '" + key + "' " + what;
}

std::string key_name(const std::filesystem::path& p, const std::string& key) {
    return p.string() + ": GGUF key '" + key + "'";
}

// One tensor info at the cursor, its element and byte counts checked.
GgufTensorInfo read_tensor_info(Cursor& c, const std::string& file) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor name", kMaxNameBytes);
    c.set_context("tensor " + shown_name(t.name));
    const auto n_dims = c.read<uint32_t>("tensor n_dims");
    if (n_dims == 0 || n_dims > kMaxDims)
        c.fail(std::to_string(n_dims) + " dimensions (expected 1 to " + std::to_string(kMaxDims) + ")");
    for (uint32_t d = 0; d < n_dims; ++d) {
        const auto dim = c.read<uint64_t>("tensor dim");
        if (dim == 0 || dim > kMaxDim)
            c.fail("dimension " + std::to_string(d) + " of " + std::to_string(dim) + " (expected 1 to 2^40)");
        t.shape.push_back(dim);
    }
    const std::string what = file + ": GGUF tensor " + shown_name(t.name);
    const auto n_elem = static_cast<uint64_t>(checked_product(t.shape, (what + " element count").c_str()));
    t.type = c.read<uint32_t>("tensor type");
    t.offset = c.read<uint64_t>("tensor offset");
    GgmlTypeTraits tr{};
    try {
        tr = ggml_type_traits(t.type);
    } catch (const Error&) {
        c.fail("unknown type " + std::to_string(t.type));
    }
    if (t.shape[0] % tr.block_elems != 0)
        c.fail("row of " + std::to_string(t.shape[0]) + " is not a multiple of the " + ggml_type_name(t.type) +
               " block size " + std::to_string(tr.block_elems));
    t.n_bytes = checked_mul(n_elem / tr.block_elems, tr.block_bytes, (what + " n_bytes").c_str());
    return t;
}

// Throws naming two tensors whose byte ranges (already checked to lie in the file) intersect.
void check_disjoint(const std::vector<GgufTensorInfo>& tensors, const std::string& file) {
    std::vector<size_t> by_offset(tensors.size());
    std::iota(by_offset.begin(), by_offset.end(), size_t{0});
    std::stable_sort(by_offset.begin(), by_offset.end(),
                     [&](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
    // Sorted by start, the ranges are disjoint exactly when each starts at or after the end of the one before.
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const GgufTensorInfo& a = tensors[by_offset[i - 1]];
        const GgufTensorInfo& b = tensors[by_offset[i]];
        if (b.offset < a.offset + a.n_bytes)
            throw Error(file + ": malformed GGUF: tensors " + shown_name(a.name) + " [" + std::to_string(a.offset) +
                        ", +" + std::to_string(a.n_bytes) + ") and " + shown_name(b.name) + " [" +
                        std::to_string(b.offset) + ", +" + std::to_string(b.n_bytes) + ") overlap");
    }
}

}  // namespace

uint64_t GgufTensorInfo::n_elements() const {
    return static_cast<uint64_t>(checked_product(shape, ("GGUF tensor '" + name + "' element count").c_str()));
}

GgufFile::GgufFile(const std::filesystem::path& path) : file_(path) {
    const std::string file = path.string();
    Cursor c(file_);
    if (file_.size() < 4 || std::memcmp(file_.data(), "GGUF", 4) != 0)
        throw Error(file + ": not a GGUF file (bad magic)");
    c.skip(4, "magic");
    version_ = c.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3)
        throw Error(file + ": unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
    const auto n_tensors = c.read<uint64_t>("tensor count");
    const auto n_kv = c.read<uint64_t>("metadata count");
    // Bound both counts by the smallest records before reserving (the first two tests keep the sum from overflowing).
    if (n_kv > c.remaining() / kMinKvBytes || n_tensors > c.remaining() / kMinTensorInfoBytes ||
        n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes > c.remaining())
        c.fail(std::to_string(n_kv) + " metadata entries and " + std::to_string(n_tensors) +
               " tensors cannot fit in the " + std::to_string(c.remaining()) + " bytes left");

    kv_.reserve(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
        c.set_context("metadata entry " + std::to_string(i));
        const std::string_view key = c.read_string("metadata key", kMaxNameBytes);
        c.set_context("key " + shown_name(key));
        const auto type = c.read<uint32_t>("metadata type");
        kv_.push_back({key, read_value(c, type)});
    }
    c.set_context("");
    std::stable_sort(kv_.begin(), kv_.end(), [](const GgufKv& a, const GgufKv& b) { return a.key < b.key; });
    for (size_t i = 1; i < kv_.size(); ++i)
        if (kv_[i].key == kv_[i - 1].key)
            throw Error(file + ": malformed GGUF: metadata key " + shown_name(kv_[i].key) + " appears twice");

    if (auto a = get_int_opt("general.alignment")) {
        if (*a <= 0 || *a > kMaxAlignment || (*a & (*a - 1)) != 0)
            throw Error(file + ": GGUF key 'general.alignment' = " + std::to_string(*a) +
                        " must be a power of two from 1 to 2^20");
        alignment_ = static_cast<uint64_t>(*a);
    }

    tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        c.set_context("tensor info " + std::to_string(i));
        tensors_.push_back(read_tensor_info(c, file));
    }
    c.set_context("");

    tensors_by_name_.resize(tensors_.size());
    std::iota(tensors_by_name_.begin(), tensors_by_name_.end(), size_t{0});
    std::stable_sort(tensors_by_name_.begin(), tensors_by_name_.end(),
                     [&](size_t a, size_t b) { return tensors_[a].name < tensors_[b].name; });
    for (size_t i = 1; i < tensors_by_name_.size(); ++i)
        if (const auto& name = tensors_[tensors_by_name_[i]].name; name == tensors_[tensors_by_name_[i - 1]].name)
            throw Error(file + ": malformed GGUF: tensor " + shown_name(name) + " appears twice");

    // The data section starts at the next multiple of the alignment; every tensor must lie inside the file,
    // aligned, and apart from every other.
    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    for (const auto& t : tensors_) {
        if (t.offset % alignment_ != 0)
            throw Error(file + ": GGUF tensor " + shown_name(t.name) + " offset " + std::to_string(t.offset) +
                        " is not a multiple of the alignment " + std::to_string(alignment_));
        if (data_offset_ > file_.size() || t.offset > file_.size() - data_offset_ ||
            t.n_bytes > file_.size() - data_offset_ - t.offset)
            throw Error(file + ": GGUF tensor " + shown_name(t.name) + " data [" + std::to_string(data_offset_) +
                        " + " + std::to_string(t.offset) + ", +" + std::to_string(t.n_bytes) +
                        ") lies outside the file of " + std::to_string(file_.size()) + " bytes (truncated?)");
    }
    check_disjoint(tensors_, file);
}

const GgufValue* GgufFile::find(const std::string& key) const {
    auto it = std::lower_bound(kv_.begin(), kv_.end(), key,
                               [](const GgufKv& kv, const std::string& k) { return kv.key < std::string_view(k); });
    return it == kv_.end() || it->key != key ? nullptr : &it->value;
}

std::optional<std::string> GgufFile::get_string_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* s = std::get_if<std::string_view>(&v->value)) return std::string(*s);
    throw Error(key_error(path(), key, "is not a string"));
}

std::optional<int64_t> GgufFile::get_int_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return as_int(scalar_of(*v), [&] { return key_name(path(), key); });
}

std::optional<double> GgufFile::get_float_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return as_float(scalar_of(*v), [&] { return key_name(path(), key); });
}

std::optional<bool> GgufFile::get_bool_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* b = std::get_if<bool>(&v->value)) return *b;
    throw Error(key_error(path(), key, "is not a bool"));
}

std::string GgufFile::get_string(const std::string& key) const {
    auto v = get_string_opt(key);
    if (!v) throw Error(key_error(path(), key, "is missing"));
    return *v;
}
int64_t GgufFile::get_int(const std::string& key) const {
    auto v = get_int_opt(key);
    if (!v) throw Error(key_error(path(), key, "is missing"));
    return *v;
}
double GgufFile::get_float(const std::string& key) const {
    auto v = get_float_opt(key);
    if (!v) throw Error(key_error(path(), key, "is missing"));
    return *v;
}
bool GgufFile::get_bool(const std::string& key) const {
    auto v = get_bool_opt(key);
    if (!v) throw Error(key_error(path(), key, "is missing"));
    return *v;
}

namespace {

const GgufArray& get_array(const GgufFile& f, const std::string& key) {
    const GgufValue* v = f.find(key);
    if (!v) throw Error(key_error(f.path(), key, "is missing"));
    auto* a = std::get_if<GgufArray>(&v->value);
    if (!a) throw Error(key_error(f.path(), key, "is not an array"));
    return *a;
}

// Each element of a numeric array through `convert(scalar, name)`.
template <typename T, typename Convert>
std::vector<T> decode_numbers(const GgufFile& f, const std::string& key, Convert convert) {
    const GgufArray& a = get_array(f, key);
    const uint64_t width = fixed_width(a.elem_type);
    if (width == 0) throw Error(key_error(f.path(), key, "is an array of strings, not numbers"));
    std::vector<T> out;
    out.reserve(a.count);
    for (uint64_t i = 0; i < a.count; ++i)
        out.push_back(convert(decode_scalar(a.elem_type, a.bytes.data() + i * width),
                              [&] { return key_name(f.path(), key) + " element " + std::to_string(i); }));
    return out;
}

}  // namespace

uint64_t GgufFile::get_array_size(const std::string& key) const {
    return get_array(*this, key).count;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
    const GgufArray& a = get_array(*this, key);
    if (a.elem_type != kString) throw Error(key_error(path(), key, "is not an array of strings"));
    std::vector<std::string> out;
    out.reserve(a.count);
    size_t pos = 0;  // each string's length and bytes were checked against the file at load
    for (uint64_t i = 0; i < a.count; ++i) {
        const auto n = load<uint64_t>(a.bytes.data() + pos);
        out.emplace_back(reinterpret_cast<const char*>(a.bytes.data() + pos + 8), n);
        pos += 8 + n;
    }
    return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
    return decode_numbers<double>(*this, key, [](const Scalar& s, const auto& name) { return as_float(s, name); });
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
    return decode_numbers<int64_t>(*this, key, [](const Scalar& s, const auto& name) { return as_int(s, name); });
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    auto it = std::lower_bound(tensors_by_name_.begin(), tensors_by_name_.end(), name,
                               [&](size_t i, const std::string& n) { return tensors_[i].name < n; });
    return it == tensors_by_name_.end() || tensors_[*it].name != name ? nullptr : &tensors_[*it];
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& t) const {
    return {file_.data() + data_offset_ + t.offset, t.n_bytes};
}

void dequantize(uint32_t type, const uint8_t* src, float* dst, uint64_t n) {
    dequantize_row(type, src, dst, static_cast<int64_t>(n));
}

}  // namespace lamina
