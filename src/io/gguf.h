// GGUF v2/v3 reader (the llama.cpp checkpoint format), over a memory-mapped file.
//
// Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv (key, type, value) entries,
// then n_tensors tensor infos (name, n_dims, dims[], ggml type, u64 offset), padding to
// `general.alignment` (default 32), then the tensor data. Every offset and size is checked against the
// file before use; a malformed file throws lamina::Error naming the file and what was wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/mmap_file.h"

namespace lamina {

// GGML tensor types this reader knows (numbering from the GGUF spec).
enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};
std::string ggml_type_name(uint32_t type);

struct GgufValue;
using GgufArray = std::vector<GgufValue>;
// One metadata value. Integers of every width are held as int64/uint64, floats as double, so callers
// need not care which width the writer chose; arrays hold their elements.
struct GgufValue {
    uint32_t type = 0;  // GGUF value type code (0..12)
    std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> value;
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

    const std::map<std::string, GgufValue>& metadata() const { return kv_; }
    const GgufValue* find(const std::string& key) const;
    // Typed getters: throw lamina::Error naming the file and key when missing or of the wrong type.
    std::string get_string(const std::string& key) const;
    int64_t get_int(const std::string& key) const;
    double get_float(const std::string& key) const;
    bool get_bool(const std::string& key) const;
    std::vector<std::string> get_string_array(const std::string& key) const;
    std::vector<double> get_float_array(const std::string& key) const;
    std::vector<int64_t> get_int_array(const std::string& key) const;
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
    std::map<std::string, GgufValue> kv_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

// Bytes per block and elements per block of a GGML type; throws for unknown types.
struct GgmlTypeTraits {
    uint64_t block_elems;
    uint64_t block_bytes;
};
GgmlTypeTraits ggml_type_traits(uint32_t type);

// True for the types dequantize() handles.
bool ggml_type_supported(uint32_t type);

// Exact dequantization of n elements (n a multiple of the block size) of `type` into f32.
// Supports F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K.
void dequantize(uint32_t type, const uint8_t* src, float* dst, uint64_t n);

}  // namespace lamina
