// Dot products of activation rows with weight rows kept in a GGML block format, computed on the blocks
// (no dequantized copy of the matrix). The activations are quantized per block of 32 to int8 with an f32
// scale, as llama.cpp does, and each weight block is decoded in registers to small integers u with a
// scale and an offset per half block (w = scale * u + offset), so a block's dot product is integer:
//
//   sum_i w_i x_i  ~  d_x * (scale_lo * sum_lo(u q) + scale_hi * sum_hi(u q)) + offset_lo * s_lo + offset_hi * s_hi
//
// where x ~ d_x * q and s_lo, s_hi are d_x times the sums of q over each half. Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q4_K and Q6_K run so; Q2_K, Q3_K and Q5_K decode each block to f32 and use the f32 activations.
// Kernels: AVX-512 VNNI (vpdpbusd), AVX2 (vpmaddubsw), and the portable loops they are tested against,
// chosen at run time from the CPU (LAMINA_NO_SIMD=1 forces the portable ones).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace lamina::cpu {

inline constexpr int64_t kActBlock = 32;

// One block of 32 quantized activations: x[i] ~ d * q[i]; s[h] = d * (sum of q over half h); sum = s[0] + s[1].
struct alignas(16) ActBlock {
    float d;
    float s[2];
    float sum;
    int8_t q[32];
};
static_assert(sizeof(ActBlock) == 48);

// Quantizes k values (k a multiple of 32) into k / 32 blocks: d = max |x| / 127, q = round-to-even(x / d).
void quantize_activations(const float* x, int64_t k, ActBlock* out);

// Up to this many activation rows share one pass over a weight row.
inline constexpr int kMaxDotRows = 8;

// out[t] = dot(weight row, activation row t) for t < n_rows (<= kMaxDotRows). x[t]: the row's k / 32 blocks;
// xf[t]: the same row in f32 (read by the formats computed in floats).
using QuantDotFn = void (*)(const void* w_row, const ActBlock* const* x, const float* const* xf, int64_t k, int n_rows,
                            float* out);

// The fastest kernel for this block type on this CPU, and the portable one.
QuantDotFn quant_dot_for(DType w);
QuantDotFn quant_dot_portable(DType w);
// "avx512vnni", "avx2" or "portable": what quant_dot_for picks.
const char* quant_dot_isa();

// The per-ISA kernels (quant_dot_avx2.cpp, quant_dot_vnni.cpp: each compiled for its instruction set);
// nullptr for a type the file has no kernel for.
QuantDotFn quant_dot_avx2(DType w);
QuantDotFn quant_dot_vnni(DType w);
void quantize_activations_avx2(const float* x, int64_t k, ActBlock* out);

}  // namespace lamina::cpu
