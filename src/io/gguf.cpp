#include "io/gguf.h"

#include <cstring>
#include <limits>

#include "core/checked.h"
#include "core/dtype.h"
#include "core/error.h"

namespace lamina {

namespace {

// GGUF metadata value type codes (spec order).
enum ValueType : uint32_t {
    kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
    kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

constexpr uint64_t kMaxDims = 4;                 // GGML_MAX_DIMS
constexpr uint64_t kMaxStringBytes = 1ull << 30;  // no real key or token is anywhere near 1 GiB
constexpr int kMaxArrayDepth = 4;                 // nested arrays deeper than this are not real files

// Bounds-checked little-endian reader over the mapped file; every failure names the file and offset.
class Cursor {
public:
    Cursor(const MappedFile& f) : f_(f) {}
    size_t pos() const { return pos_; }
    void seek(size_t p) { pos_ = p; }

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(f_.path().string() + ": malformed GGUF: " + what + " (at byte " + std::to_string(pos_) + ")");
    }
    void need(uint64_t n, const char* what) const {
        if (n > f_.size() || pos_ > f_.size() - n) fail(std::string("truncated while reading ") + what);
    }
    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, f_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string read_string(const char* what) {
        auto n = read<uint64_t>(what);
        if (n > kMaxStringBytes) fail(std::string(what) + " length " + std::to_string(n) + " is implausible");
        need(n, what);
        std::string s(reinterpret_cast<const char*>(f_.data() + pos_), n);
        pos_ += n;
        return s;
    }

private:
    const MappedFile& f_;
    size_t pos_ = 0;
};

GgufValue read_value(Cursor& c, uint32_t type, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
        case kU8: v.value = uint64_t{c.read<uint8_t>("u8")}; break;
        case kI8: v.value = int64_t{c.read<int8_t>("i8")}; break;
        case kU16: v.value = uint64_t{c.read<uint16_t>("u16")}; break;
        case kI16: v.value = int64_t{c.read<int16_t>("i16")}; break;
        case kU32: v.value = uint64_t{c.read<uint32_t>("u32")}; break;
        case kI32: v.value = int64_t{c.read<int32_t>("i32")}; break;
        case kU64: v.value = c.read<uint64_t>("u64"); break;
        case kI64: v.value = c.read<int64_t>("i64"); break;
        case kF32: v.value = double{c.read<float>("f32")}; break;
        case kF64: v.value = c.read<double>("f64"); break;
        case kBool: {
            auto b = c.read<uint8_t>("bool");
            if (b > 1) c.fail("bool value " + std::to_string(b));
            v.value = b == 1;
            break;
        }
        case kString: v.value = c.read_string("string"); break;
        case kArray: {
            if (depth >= kMaxArrayDepth) c.fail("arrays nested too deep");
            auto elem_type = c.read<uint32_t>("array type");
            auto n = c.read<uint64_t>("array length");
            // Each element takes at least one byte, so a count above the remaining bytes is corrupt.
            c.need(n, "array elements");
            GgufArray arr;
            arr.reserve(n);
            for (uint64_t i = 0; i < n; ++i) arr.push_back(read_value(c, elem_type, depth + 1));
            v.value = std::move(arr);
            break;
        }
        default: c.fail("unknown metadata value type " + std::to_string(type));
    }
    return v;
}

std::string key_error(const std::filesystem::path& p, const std::string& key, const char* what) {
    return p.string() + ": GGUF key '" + key + "' " + what;
}

}  // namespace

std::string ggml_type_name(uint32_t type) {
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: return "F32";
        case GgmlType::F16: return "F16";
        case GgmlType::BF16: return "BF16";
        case GgmlType::Q4_0: return "Q4_0";
        case GgmlType::Q4_1: return "Q4_1";
        case GgmlType::Q5_0: return "Q5_0";
        case GgmlType::Q5_1: return "Q5_1";
        case GgmlType::Q8_0: return "Q8_0";
        case GgmlType::Q8_1: return "Q8_1";
        case GgmlType::Q2_K: return "Q2_K";
        case GgmlType::Q3_K: return "Q3_K";
        case GgmlType::Q4_K: return "Q4_K";
        case GgmlType::Q5_K: return "Q5_K";
        case GgmlType::Q6_K: return "Q6_K";
        case GgmlType::Q8_K: return "Q8_K";
    }
    return "type#" + std::to_string(type);
}

GgmlTypeTraits ggml_type_traits(uint32_t type) {
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: return {1, 4};
        case GgmlType::F16:
        case GgmlType::BF16: return {1, 2};
        case GgmlType::Q4_0: return {32, 18};   // fp16 d + 16 bytes of nibbles
        case GgmlType::Q4_1: return {32, 20};   // fp16 d, fp16 m + 16 bytes of nibbles
        case GgmlType::Q5_0: return {32, 22};
        case GgmlType::Q5_1: return {32, 24};
        case GgmlType::Q8_0: return {32, 34};   // fp16 d + 32 int8
        case GgmlType::Q8_1: return {32, 36};
        case GgmlType::Q2_K: return {256, 84};
        case GgmlType::Q3_K: return {256, 110};
        case GgmlType::Q4_K: return {256, 144}; // fp16 d, dmin + 12 bytes of 6-bit scales + 128 bytes
        case GgmlType::Q5_K: return {256, 176};
        case GgmlType::Q6_K: return {256, 210}; // 128 ql + 64 qh + 16 int8 scales + fp16 d
        case GgmlType::Q8_K: return {256, 292};
    }
    throw Error("unknown GGML tensor type " + std::to_string(type));
}

uint64_t GgufTensorInfo::n_elements() const {
    return static_cast<uint64_t>(checked_product(shape, ("GGUF tensor '" + name + "' element count").c_str()));
}

GgufFile::GgufFile(const std::filesystem::path& path) : file_(path) {
    Cursor c(file_);
    if (file_.size() < 4 || std::memcmp(file_.data(), "GGUF", 4) != 0)
        throw Error(path.string() + ": not a GGUF file (bad magic)");
    c.seek(4);
    version_ = c.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3)
        throw Error(path.string() + ": unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
    const auto n_tensors = c.read<uint64_t>("tensor count");
    const auto n_kv = c.read<uint64_t>("metadata count");
    // Every kv and tensor info takes well over 8 bytes: counts beyond file size / 8 are corrupt.
    if (n_tensors > file_.size() / 8 || n_kv > file_.size() / 8)
        c.fail("tensor count " + std::to_string(n_tensors) + " or metadata count " + std::to_string(n_kv) +
               " exceeds what the file can hold");

    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.read_string("metadata key");
        auto type = c.read<uint32_t>("metadata type");
        GgufValue v = read_value(c, type, 0);
        kv_[key] = std::move(v);
    }
    if (auto a = get_int_opt("general.alignment")) {
        if (*a <= 0 || (*a & (*a - 1)) != 0 || *a > 65536)
            throw Error(path.string() + ": general.alignment " + std::to_string(*a) + " is not a power of two");
        alignment_ = static_cast<uint64_t>(*a);
    }

    tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo t;
        t.name = c.read_string("tensor name");
        auto n_dims = c.read<uint32_t>("tensor n_dims");
        if (n_dims == 0 || n_dims > kMaxDims)
            c.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions");
        for (uint32_t d = 0; d < n_dims; ++d) {
            auto dim = c.read<uint64_t>("tensor dim");
            if (dim == 0 || dim > (uint64_t{1} << 40)) c.fail("tensor '" + t.name + "' has dimension " + std::to_string(dim));
            t.shape.push_back(dim);
        }
        const std::string what = path.string() + ": GGUF tensor '" + t.name + "'";
        const auto n_elem = static_cast<uint64_t>(checked_product(t.shape, (what + " element count").c_str()));
        t.type = c.read<uint32_t>("tensor type");
        t.offset = c.read<uint64_t>("tensor offset");
        GgmlTypeTraits tr{};
        try {
            tr = ggml_type_traits(t.type);
        } catch (const Error&) {
            c.fail("tensor '" + t.name + "' has unknown type " + std::to_string(t.type));
        }
        if (t.shape[0] % tr.block_elems != 0)
            c.fail("tensor '" + t.name + "' row of " + std::to_string(t.shape[0]) + " is not a multiple of the " +
                   ggml_type_name(t.type) + " block size");
        t.n_bytes = checked_mul(n_elem / tr.block_elems, uint64_t{tr.block_bytes}, (what + " n_bytes").c_str());
        if (tensor_index_.count(t.name)) c.fail("duplicate tensor '" + t.name + "'");
        tensor_index_[t.name] = tensors_.size();
        tensors_.push_back(std::move(t));
    }
    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    for (const auto& t : tensors_) {
        if (t.offset % alignment_ != 0)
            throw Error(path.string() + ": tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                        " is not aligned to " + std::to_string(alignment_));
        if (data_offset_ > file_.size() || t.offset > file_.size() - data_offset_ ||
            t.n_bytes > file_.size() - data_offset_ - t.offset)
            throw Error(path.string() + ": tensor '" + t.name + "' data [" + std::to_string(data_offset_ + t.offset) +
                        ", +" + std::to_string(t.n_bytes) + ") lies outside the file of " +
                        std::to_string(file_.size()) + " bytes (truncated?)");
    }
}

const GgufValue* GgufFile::find(const std::string& key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::get_string_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* s = std::get_if<std::string>(&v->value)) return *s;
    throw Error(key_error(path(), key, "is not a string"));
}

std::optional<int64_t> GgufFile::get_int_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* u = std::get_if<uint64_t>(&v->value)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            throw Error(key_error(path(), key, "is out of range"));
        return static_cast<int64_t>(*u);
    }
    if (auto* i = std::get_if<int64_t>(&v->value)) return *i;
    throw Error(key_error(path(), key, "is not an integer"));
}

std::optional<double> GgufFile::get_float_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* d = std::get_if<double>(&v->value)) return *d;
    if (auto* u = std::get_if<uint64_t>(&v->value)) return static_cast<double>(*u);
    if (auto* i = std::get_if<int64_t>(&v->value)) return static_cast<double>(*i);
    throw Error(key_error(path(), key, "is not a number"));
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
}  // namespace

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
    std::vector<std::string> out;
    for (const auto& e : get_array(*this, key)) {
        auto* s = std::get_if<std::string>(&e.value);
        if (!s) throw Error(key_error(path(), key, "has a non-string element"));
        out.push_back(*s);
    }
    return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
    std::vector<double> out;
    for (const auto& e : get_array(*this, key)) {
        if (auto* d = std::get_if<double>(&e.value)) out.push_back(*d);
        else if (auto* u = std::get_if<uint64_t>(&e.value)) out.push_back(static_cast<double>(*u));
        else if (auto* i = std::get_if<int64_t>(&e.value)) out.push_back(static_cast<double>(*i));
        else throw Error(key_error(path(), key, "has a non-numeric element"));
    }
    return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
    std::vector<int64_t> out;
    for (const auto& e : get_array(*this, key)) {
        if (auto* u = std::get_if<uint64_t>(&e.value)) out.push_back(static_cast<int64_t>(*u));
        else if (auto* i = std::get_if<int64_t>(&e.value)) out.push_back(*i);
        else throw Error(key_error(path(), key, "has a non-integer element"));
    }
    return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& t) const {
    return {file_.data() + data_offset_ + t.offset, t.n_bytes};
}

namespace {
float half_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

// Q4_K packs 8 (scale, min) pairs of 6 bits into 12 bytes.
void q4k_scale_min(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
}  // namespace

bool ggml_type_supported(uint32_t type) {
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0:
        case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q4_K: case GgmlType::Q6_K: return true;
        default: return false;
    }
}

void dequantize(uint32_t type, const uint8_t* src, float* dst, uint64_t n) {
    const GgmlTypeTraits tr = ggml_type_traits(type);
    LAMINA_CHECK(n % tr.block_elems == 0, "n=" + std::to_string(n));
    const uint64_t n_blocks = n / tr.block_elems;
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: std::memcpy(dst, src, n * 4); return;
        case GgmlType::F16: convert_to_f32(DType::F16, src, dst, n); return;
        case GgmlType::BF16: convert_to_f32(DType::BF16, src, dst, n); return;
        case GgmlType::Q8_0:
            for (uint64_t b = 0; b < n_blocks; ++b, src += 34, dst += 32) {
                const float d = half_at(src);
                const auto* q = reinterpret_cast<const int8_t*>(src + 2);
                for (int j = 0; j < 32; ++j) dst[j] = q[j] * d;
            }
            return;
        case GgmlType::Q4_0:
            for (uint64_t b = 0; b < n_blocks; ++b, src += 18, dst += 32) {
                const float d = half_at(src);
                const uint8_t* q = src + 2;
                for (int j = 0; j < 16; ++j) {
                    dst[j] = static_cast<float>((q[j] & 0xF) - 8) * d;
                    dst[j + 16] = static_cast<float>((q[j] >> 4) - 8) * d;
                }
            }
            return;
        case GgmlType::Q4_1:
            for (uint64_t b = 0; b < n_blocks; ++b, src += 20, dst += 32) {
                const float d = half_at(src);
                const float m = half_at(src + 2);
                const uint8_t* q = src + 4;
                for (int j = 0; j < 16; ++j) {
                    dst[j] = static_cast<float>(q[j] & 0xF) * d + m;
                    dst[j + 16] = static_cast<float>(q[j] >> 4) * d + m;
                }
            }
            return;
        case GgmlType::Q4_K:
            for (uint64_t b = 0; b < n_blocks; ++b, src += 144) {
                const float d = half_at(src);
                const float dmin = half_at(src + 2);
                const uint8_t* scales = src + 4;
                const uint8_t* q = src + 16;
                for (int j = 0; j < 8; j += 2, q += 32) {
                    uint8_t sc, m;
                    q4k_scale_min(j, scales, sc, m);
                    const float d1 = d * sc, m1 = dmin * m;
                    q4k_scale_min(j + 1, scales, sc, m);
                    const float d2 = d * sc, m2 = dmin * m;
                    for (int l = 0; l < 32; ++l) *dst++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
                    for (int l = 0; l < 32; ++l) *dst++ = d2 * static_cast<float>(q[l] >> 4) - m2;
                }
            }
            return;
        case GgmlType::Q6_K:
            for (uint64_t b = 0; b < n_blocks; ++b, src += 210) {
                const uint8_t* ql = src;
                const uint8_t* qh = src + 128;
                const auto* sc = reinterpret_cast<const int8_t*>(src + 192);
                const float d = half_at(src + 208);
                for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, dst += 128) {
                    for (int l = 0; l < 32; ++l) {
                        const int is = l / 16;
                        const int q1 = static_cast<int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        const int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        const int q3 = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        dst[l] = d * sc[is + 0] * static_cast<float>(q1);
                        dst[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
                        dst[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
                        dst[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
                    }
                }
            }
            return;
        default:
            throw Error("tensor type " + ggml_type_name(type) + " is not supported (supported: F32, F16, BF16, "
                        "Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)");
    }
}

}  // namespace lamina
