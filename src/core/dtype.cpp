#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace lamina {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32: return 4;
        case DType::F16:
        case DType::BF16: return 2;
    }
    return 0;
}

std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "float32";
        case DType::F16: return "float16";
        case DType::BF16: return "bfloat16";
    }
    return "?";
}

DType dtype_from_name(std::string_view s) {
    if (s == "float32" || s == "fp32" || s == "f32") return DType::F32;
    if (s == "float16" || s == "fp16" || s == "f16") return DType::F16;
    if (s == "bfloat16" || s == "bf16") return DType::BF16;
    throw Error("unknown dtype '" + std::string(s) + "' (expected float32, float16 or bfloat16)");
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
    switch (from) {
        case DType::F32: std::memcpy(dst, src, n * 4); return;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src, i));
            return;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src, i));
            return;
    }
}

void convert_from_f32(DType to, const float* src, void* dst, size_t n) {
    switch (to) {
        case DType::F32: std::memcpy(dst, src, n * 4); return;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) store_u16(dst, i, f32_to_f16(src[i]));
            return;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) store_u16(dst, i, f32_to_bf16(src[i]));
            return;
    }
}

}  // namespace lamina
