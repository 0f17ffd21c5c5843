#include "core/dtype.h"

#include <cmath>
#include <cstdlib>
#include <iterator>

#include "core/error.h"
#include "core/ggml_quants.h"

namespace lamina {

namespace {
struct DTypeInfo {
    const char* name;
    uint32_t ggml_code;  // io/gguf.h GgmlType
};
// Indexed by DType, as kDTypeBlocks.
constexpr DTypeInfo kInfo[] = {
    {"float32", 0}, {"float16", 1}, {"bfloat16", 30}, {"q4_0", 2},  {"q4_1", 3},  {"q5_0", 6},  {"q5_1", 7},
    {"q8_0", 8},    {"q2_k", 10},   {"q3_k", 11},     {"q4_k", 12}, {"q5_k", 13}, {"q6_k", 14},
};
constexpr size_t kNumTypes = sizeof(kInfo) / sizeof(kInfo[0]);
static_assert(kNumTypes == static_cast<size_t>(DType::Q6_K) + 1 && kNumTypes == std::size(kDTypeBlocks), "one row per DType");

const DTypeInfo& info(DType t) {
    const auto i = static_cast<size_t>(t);
    LAMINA_CHECK(i < kNumTypes, "dtype " + std::to_string(i));
    return kInfo[i];
}
}  // namespace

size_t dtype_size(DType t) {
    LAMINA_CHECK(!dtype_is_block(t), "dtype_size of block type " + std::string(info(t).name));
    return static_cast<size_t>(dtype_block(t).bytes);
}

void dtype_bytes_not_whole_blocks(DType t, int64_t n) {
    LAMINA_CHECK(false, std::to_string(n) + " elements of " + info(t).name + " are not whole blocks");
    std::abort();
}

std::string_view dtype_name(DType t) { return info(t).name; }

DType dtype_from_name(std::string_view s) {
    if (s == "fp32" || s == "f32") return DType::F32;
    if (s == "fp16" || s == "f16") return DType::F16;
    if (s == "bf16") return DType::BF16;
    for (size_t i = 0; i < kNumTypes; ++i)
        if (s == kInfo[i].name) return static_cast<DType>(i);
    throw Error("unknown dtype '" + std::string(s) +
                "' (expected float32, float16, bfloat16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k or q6_k)");
}

uint32_t dtype_ggml_code(DType t) { return info(t).ggml_code; }

std::optional<DType> dtype_from_ggml_code(uint32_t code) {
    for (size_t i = 0; i < kNumTypes; ++i)
        if (kInfo[i].ggml_code == code) return static_cast<DType>(i);
    return std::nullopt;
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {  // subnormal: value = mant * 2^-24
            float f = std::ldexp(static_cast<float>(mant), -24);
            std::memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u); // rounds to inf
    if (abs < 0x38800000u) {  // result is subnormal or zero: scale into the integer mantissa and round
        float a;
        std::memcpy(&a, &abs, 4);
        float scaled = a * 16777216.0f;  // 2^24: one unit = the smallest subnormal
        uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
        return static_cast<uint16_t>(sign | m);
    }
    uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

namespace {
// Element i of a 16-bit array that may start at any byte (a tensor inside a file's bytes, a GGUF
// tensor at an odd offset): read and written through memcpy, since a misaligned uint16_t* is undefined
// behaviour. Compilers turn these into plain loads and stores.
uint16_t load_u16(const void* base, size_t i) {
    uint16_t v;
    std::memcpy(&v, static_cast<const unsigned char*>(base) + 2 * i, 2);
    return v;
}
void store_u16(void* base, size_t i, uint16_t v) { std::memcpy(static_cast<unsigned char*>(base) + 2 * i, &v, 2); }
}  // namespace

void convert_to_f32(DType from, const void* src, float* dst, size_t n) {
    if (dtype_is_block(from)) {
        dequantize_row(dtype_ggml_code(from), src, dst, static_cast<int64_t>(n));
        return;
    }
    switch (from) {
        case DType::F32: std::memcpy(dst, src, n * 4); return;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src, i));
            return;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src, i));
            return;
        default: break;
    }
}

void convert_from_f32(DType to, const float* src, void* dst, size_t n) {
    if (dtype_is_block(to)) {
        quantize_row(dtype_ggml_code(to), src, dst, static_cast<int64_t>(n));
        return;
    }
    switch (to) {
        case DType::F32: std::memcpy(dst, src, n * 4); return;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) store_u16(dst, i, f32_to_f16(src[i]));
            return;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) store_u16(dst, i, f32_to_bf16(src[i]));
            return;
        default: break;
    }
}

}  // namespace lamina
