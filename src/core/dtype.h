// Element types. Engine weights are f32, f16 or bf16; checkpoints may also hold GGML block-quantized
// types, which io/ dequantizes exactly (build/ converts them to the engine dtype).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace lamina {

enum class DType : uint8_t { F32, F16, BF16 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);     // "float32", "float16", "bfloat16"
DType dtype_from_name(std::string_view s);  // accepts the names above; throws lamina::Error otherwise

// IEEE half <-> float, exact for every half value (round-to-nearest-even on the way down).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

inline float bf16_to_f32(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
// Round-to-nearest-even, NaN kept quiet: the same rounding torch uses for .to(bfloat16).
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

// Convert n values of type `from` at src into f32 at dst.
void convert_to_f32(DType from, const void* src, float* dst, size_t n);
// Convert n f32 values into type `to` at dst.
void convert_from_f32(DType to, const float* src, void* dst, size_t n);

}  // namespace lamina
