// Element types. Activations are f32, f16 or bf16; engine weights are those or a GGML block format kept as
// the checkpoint had it (or quantized at build): blocks of 32 or 256 elements, each with its own scales,
// stored row by row (a row is a whole number of blocks). `lamina build --weights` chooses.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace lamina {

enum class DType : uint8_t { F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K };

// Elements and bytes of one block: {1, element size} for the float types.
struct DTypeBlock {
    int64_t elems;
    int64_t bytes;
};
// Indexed by DType: the GGML file format's block sizes.
inline constexpr DTypeBlock kDTypeBlocks[] = {
    {1, 4}, {1, 2}, {1, 2},                                // f32, f16, bf16
    {32, 18}, {32, 20}, {32, 22}, {32, 24}, {32, 34},      // q4_0, q4_1, q5_0, q5_1, q8_0
    {256, 84}, {256, 110}, {256, 144}, {256, 176}, {256, 210},  // q2_k, q3_k, q4_k, q5_k, q6_k
};
inline DTypeBlock dtype_block(DType t) { return kDTypeBlocks[static_cast<size_t>(t)]; }
inline bool dtype_is_block(DType t) { return t > DType::BF16; }
// Bytes of one element of a float type (a block type has no element size: use dtype_bytes).
size_t dtype_size(DType t);
[[noreturn]] void dtype_bytes_not_whole_blocks(DType t, int64_t n);
// Bytes of n elements (for a block type n is a whole number of blocks: a broken invariant otherwise).
inline size_t dtype_bytes(DType t, int64_t n) {
    const DTypeBlock b = dtype_block(t);
    if (b.elems == 1) return static_cast<size_t>(n * b.bytes);
    if (n % b.elems != 0) dtype_bytes_not_whole_blocks(t, n);
    return static_cast<size_t>(n / b.elems * b.bytes);
}
// "float32", "float16", "bfloat16", and the GGML names in lower case: "q4_0", "q4_1", ..., "q6_k".
std::string_view dtype_name(DType t);
DType dtype_from_name(std::string_view s);  // accepts the names above; throws lamina::Error otherwise
// The GGML type code (io/gguf.h's GgmlType) of a type, and back (nullopt: no engine type has it).
uint32_t dtype_ggml_code(DType t);
std::optional<DType> dtype_from_ggml_code(uint32_t code);

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

// Convert n values of type `from` at src into f32 at dst (a block type: dequantize n, whole blocks).
void convert_to_f32(DType from, const void* src, float* dst, size_t n);
// Convert n f32 values into type `to` at dst (a block type: quantize n, whole blocks, as llama.cpp's reference
// quantizers do).
void convert_from_f32(DType to, const float* src, void* dst, size_t n);

}  // namespace lamina
