// GGML block formats, exactly as llama.cpp stores them in GGUF files, and their reference conversions:
// dequantize_row gives the same f32 values as ggml's dequantize_row_*, and quantize_row the same bytes as
// llama.cpp's reference quantizers quantize_row_*_ref (the ones `llama-quantize` uses without an
// importance matrix), for every type below. tests/data/quant/ holds llama.cpp's own output for both
// (tools/make_quant_vectors.py) and tests/core/ggml_quants_test.cpp compares them bit for bit.
//
// A row of n elements is n / block_elems blocks laid end to end (n a whole number of blocks). A block
// holds its scales as IEEE half bits (`uint16_t`, core/dtype.h's f16_to_f32 / f32_to_f16) and its quants
// packed in bytes; the comment on each struct gives element i of the block as a formula. Blocks in a file
// may sit at any address: the functions here read and write them through memcpy.
#pragma once

#include <cstdint>

#include "core/ggml_type.h"

namespace lamina {

constexpr int kQK = 32;           // elements of a Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 block (ggml's QK4_0 … QK8_0)
constexpr int kQK_K = 256;        // elements of a K-quant super-block (ggml's QK_K)
constexpr int kScaleBytesK = 12;  // 8 6-bit scales and 8 6-bit mins of a Q4_K / Q5_K block (K_SCALE_SIZE)

// x[i] = d * (q[i] - 8); q[i] is the low nibble of qs[i] for i < 16, the high nibble of qs[i - 16] after.
struct BlockQ4_0 {
    static constexpr int kElems = kQK;
    uint16_t d;
    uint8_t qs[kQK / 2];
};
// x[i] = d * q[i] + m; nibbles as Q4_0.
struct BlockQ4_1 {
    static constexpr int kElems = kQK;
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK / 2];
};
// x[i] = d * (q[i] - 16); q's low 4 bits as Q4_0, its 5th bit is bit i of qh (little-endian u32).
struct BlockQ5_0 {
    static constexpr int kElems = kQK;
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// x[i] = d * q[i] + m; 5-bit q as Q5_0.
struct BlockQ5_1 {
    static constexpr int kElems = kQK;
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// x[i] = d * qs[i].
struct BlockQ8_0 {
    static constexpr int kElems = kQK;
    uint16_t d;
    int8_t qs[kQK];
};

// 16 sub-blocks of 16: x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4), q of 2 bits. Within each
// half of 128 elements, element 32 * k + l (k = 0..3, l = 0..31) is bits 2k..2k+1 of qs[32 * half + l].
struct BlockQ2_K {
    static constexpr int kElems = kQK_K;
    uint8_t scales[kQK_K / 16];
    uint8_t qs[kQK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
// 16 sub-blocks of 16: x = d * (s - 32) * (q - 4), s of 6 bits (low 4 bits in scales[0..7]'s nibbles, high
// 2 bits in scales[8..11]), q of 3 bits: its low 2 bits packed as in Q2_K, its high bit bit `i / 32` of
// hmask[i % 32].
struct BlockQ3_K {
    static constexpr int kElems = kQK_K;
    uint8_t hmask[kQK_K / 8];
    uint8_t qs[kQK_K / 4];
    uint8_t scales[12];
    uint16_t d;
};
// 8 sub-blocks of 32: x = d * sc * q - dmin * m, (sc, m) 6 bits each (k_scale_min), q of 4 bits: each 64
// elements are 32 bytes of qs, the first 32 in the low nibbles.
struct BlockQ4_K {
    static constexpr int kElems = kQK_K;
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kScaleBytesK];
    uint8_t qs[kQK_K / 2];
};
// As Q4_K with a 5th bit: for element 64 * p + 32 * h + l (h = 0, 1), bit 2p + h of qh[l].
struct BlockQ5_K {
    static constexpr int kElems = kQK_K;
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kScaleBytesK];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: x = d * scales[s] * (q - 32), q of 6 bits: per half of 128 elements, low nibbles in
// 64 bytes of ql (elements 0-31 and 32-63 in the low nibbles of ql[0..31], ql[32..63]; 64-127 in their high
// nibbles), high 2 bits in 32 bytes of qh (element 32 * k + l: bits 2k..2k+1 of qh[l]).
struct BlockQ6_K {
    static constexpr int kElems = kQK_K;
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};

// The file format: these sizes are what GGUF stores and what ggml_type_traits reports.
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Scale and min of sub-block j (0..7) of a Q4_K / Q5_K block: j < 4 in the low 6 bits of bytes j and j + 4;
// j >= 4 in the nibbles of byte j + 4 with their top 2 bits in the top bits of bytes j - 4 and j.
inline void k_scale_min(int j, const uint8_t* scales, uint8_t& sc, uint8_t& m) {
    if (j < 4) {
        sc = scales[j] & 63;
        m = scales[j + 4] & 63;
    } else {
        sc = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
        m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

// n elements of `type` (a GgmlType code that ggml_type_supported accepts; n a whole number of blocks) at
// `blocks` into f32 at dst. F32, F16 and BF16 convert element by element. Throws lamina::Error naming the type
// for any other type.
void dequantize_row(uint32_t type, const void* blocks, float* dst, int64_t n);

// n f32 elements at src into n / block_elems blocks of `type` at `blocks`, bit-identical to llama.cpp's
// quantize_row_*_ref (F16 and BF16 round to nearest even, as ggml does). Throws like dequantize_row.
void quantize_row(uint32_t type, const float* src, void* blocks, int64_t n);

}  // namespace lamina
