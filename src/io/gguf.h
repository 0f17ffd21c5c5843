// GGUF v2/v3 reader (the llama.cpp checkpoint format), over a memory-mapped file.
//
// Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv (key, type, value) entries,
// then n_tensors tensor infos (name, n_dims, dims[], ggml type, u64 offset), padding to
// `general.alignment` (default 32), then the tensor data. Every count, offset and size is checked against the
// file before use, and the RAM the reader keeps is a small multiple of the file's directory bytes (arrays
// and strings stay in the mapping). A malformed file throws lamina::Error, one line naming the file, the key
// or tensor, and what was wrong: duplicate keys or tensor names, tensors that overlap, leave the file or
// are misaligned, and values that do not fit what the getter returns.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/ggml_type.h"
#include "core/mmap_file.h"

namespace lamina {

// A metadata array, left in the mapped file: its elements are decoded by the getters, so an array costs the
// same few bytes of RAM whatever its length. Elements are all of one scalar or string type; arrays of arrays
// are refused at load (llama.cpp refuses them too, and no key it writes uses them).
struct GgufArray {
    uint32_t elem_type = 0;          // GGUF value type code of every element
    uint64_t count = 0;
    std::span<const uint8_t> bytes;  // the elements as stored; strings are each a u64 length then the bytes
};

// One metadata value. Scalar integers of every width are held as int64/uint64 and floats as double, so
// callers need not care which width the writer chose; strings and arrays are views into the mapped file.
struct GgufValue {
    uint32_t type = 0;  // GGUF value type code (0..12)
    std::variant<uint64_t, int64_t, double, bool, std::string_view, GgufArray> value;
};

struct GgufKv {
    std::string_view key;  // into the mapped file
    GgufValue value;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<uint64_t> shape;  // GGUF order: shape[0] is the contiguous (innermost) dimension
    uint32_t type = 0;            // GgmlType code
    uint64_t offset = 0;          // from the start of the data section
    uint64_t n_bytes = 0;
    uint64_t n_elements() const;
};

class GgufFile {
public:
    explicit GgufFile(const std::filesystem::path& path);

    const std::filesystem::path& path() const { return file_.path(); }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }

    const std::vector<GgufKv>& metadata() const { return kv_; }  // sorted by key
    const GgufValue* find(const std::string& key) const;
    // Typed getters: throw lamina::Error naming the file and key when missing, of the wrong type, or out of
    // range: an integer must fit int64 (a u64 of 2^63 or more is refused, not made negative); a float, read
    // from any numeric type, must be finite and fit a float without overflowing or flushing to zero (llama.cpp
    // reads every float key as f32, and lamina keeps them as float). Array getters apply the same rules to
    // each element and name its index.
    std::string get_string(const std::string& key) const;
    int64_t get_int(const std::string& key) const;
    double get_float(const std::string& key) const;
    bool get_bool(const std::string& key) const;
    std::vector<std::string> get_string_array(const std::string& key) const;
    std::vector<double> get_float_array(const std::string& key) const;
    std::vector<int64_t> get_int_array(const std::string& key) const;
    uint64_t get_array_size(const std::string& key) const;  // the element count, without decoding them
    // Optional forms: nullopt when the key is absent (still throw on a wrong type).
    std::optional<std::string> get_string_opt(const std::string& key) const;
    std::optional<int64_t> get_int_opt(const std::string& key) const;
    std::optional<double> get_float_opt(const std::string& key) const;
    std::optional<bool> get_bool_opt(const std::string& key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(const std::string& name) const;
    std::span<const uint8_t> tensor_data(const GgufTensorInfo& t) const;

private:
    MappedFile file_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<GgufKv> kv_;
    std::vector<GgufTensorInfo> tensors_;
    std::vector<size_t> tensors_by_name_;  // indices into tensors_, sorted by name
};

// Exact dequantization of n elements (n a multiple of the block size) of `type` into f32: core/ggml_quants.h's
// dequantize_row, for the types ggml_type_supported accepts (core/ggml_type.h); throws naming any other type.
void dequantize(uint32_t type, const uint8_t* src, float* dst, uint64_t n);

}  // namespace lamina
