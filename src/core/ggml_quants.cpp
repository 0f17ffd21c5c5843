// GGML block formats: dequantization and llama.cpp's reference quantizers (contract in ggml_quants.h).
//
// Bit-identity with llama.cpp rests on doing the same float operations in the same order: every expression
// below keeps ggml-quants.c's association (a * b * c is (a * b) * c, an int operand converts to float
// first), and this file is compiled with -ffp-contract=off (CMakeLists.txt), since a fused a * b + c rounds
// once where ggml, compiled without FMA, rounds twice. The simple types (Q4_0 … Q8_0) quantize each block
// from its absolute maximum or its range; the K-quants fit a scale (and a min) per sub-block by a small
// search minimizing a weighted error (make_qx_quants, make_q3_quants, make_qkx2_quants), quantize those
// scales to 4, 6 or 8 bits against one f16 super-scale, and then requantize the elements with the scales
// as stored.
#include "core/ggml_quants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace lamina {

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // below this absolute maximum a group is all zeros (GROUP_MAX_EPS)

float f16(uint16_t h) { return f16_to_f32(h); }

// Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the integer in the low mantissa
// bits. Not std::lround: ggml's nearest_int rounds halves to even, and its result for NaN (0) matters too.
int nearest_int(float v) {
    const float biased = v + 12582912.f;
    int32_t bits;
    std::memcpy(&bits, &biased, 4);
    return (bits & 0x007fffff) - 0x00400000;
}

// ---- 32-element blocks ----------------------------------------------------------------------------------

void dequantize_block(const BlockQ4_0& b, float* y) {
    const float d = f16(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
        y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
}

void dequantize_block(const BlockQ4_1& b, float* y) {
    const float d = f16(b.d), m = f16(b.m);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j] = static_cast<float>(b.qs[j] & 0xF) * d + m;
        y[j + kQK / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
}

uint32_t load_qh(const uint8_t* qh) {
    uint32_t v;
    std::memcpy(&v, qh, 4);
    return v;
}

// The 5-bit quants of a Q5_0 / Q5_1 block, element order.
void unpack_q5(const uint8_t* qs, uint32_t qh, int* q) {
    for (int j = 0; j < kQK / 2; ++j) {
        q[j] = (qs[j] & 0xF) | static_cast<int>(((qh >> j) << 4) & 0x10);
        q[j + kQK / 2] = (qs[j] >> 4) | static_cast<int>((qh >> (j + 12)) & 0x10);
    }
}

void dequantize_block(const BlockQ5_0& b, float* y) {
    const float d = f16(b.d);
    int q[kQK];
    unpack_q5(b.qs, load_qh(b.qh), q);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q[j] - 16) * d;
}

void dequantize_block(const BlockQ5_1& b, float* y) {
    const float d = f16(b.d), m = f16(b.m);
    int q[kQK];
    unpack_q5(b.qs, load_qh(b.qh), q);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q[j]) * d + m;
}

void dequantize_block(const BlockQ8_0& b, float* y) {
    const float d = f16(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

// The element of largest magnitude (the first one on a tie), with its sign.
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

void min_max(const float* x, int n, float& min, float& max) {
    min = FLT_MAX;
    max = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
}

// The block's signed absmax maps to q = 0 (-8 after the offset), so it is reproduced exactly up to d's
// f16 rounding. The float -> int8 truncations mirror ggml's casts.
void quantize_block(const float* x, BlockQ4_0& b) {
    const float d = signed_absmax(x, kQK) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_f16(d);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
        const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + kQK / 2] * id + 8.5f)));
        b.qs[j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
    }
}

void quantize_block(const float* x, BlockQ4_1& b) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_f16(d);
    b.m = f32_to_f16(min);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
        const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j + kQK / 2] - min) * id + 0.5f)));
        b.qs[j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
    }
}

// The low nibbles into qs and the 5th bits into qh, from 5-bit quants in element order.
void pack_q5(const uint8_t* q, uint8_t* qs, uint8_t* qh) {
    uint32_t high = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + kQK / 2] & 0x0F) << 4));
        high |= ((q[j] & 0x10u) >> 4) << j;
        high |= ((q[j + kQK / 2] & 0x10u) >> 4) << (j + kQK / 2);
    }
    std::memcpy(qh, &high, 4);
}

void quantize_block(const float* x, BlockQ5_0& b) {
    const float d = signed_absmax(x, kQK) / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_f16(d);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j)
        q[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f))));
    pack_q5(q, b.qs, b.qh);
}

void quantize_block(const float* x, BlockQ5_1& b) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_f16(d);
    b.m = f32_to_f16(min);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
    pack_q5(q, b.qs, b.qh);
}

void quantize_block(const float* x, BlockQ8_0& b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);  // ggml's MAX, NaN too
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_f16(d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(std::round(x[j] * id));
}

// ---- K-quant scale searches -----------------------------------------------------------------------------

// Symmetric: L[i] in [0, 2 * nmax) with x[i] ≈ scale * (L[i] - nmax), weights x², trying 19 scales around
// nmax / max and keeping the one of least weighted squared error (ggml's make_qx_quants, rmse_type 1, the
// variant Q6_K uses).
float fit_symmetric(int n, int nmax, const float* x, int8_t* L) {
    const float max = signed_absmax(x, n);
    if (std::fabs(max) < kGroupMaxEps) {
        std::fill(L, L + n, int8_t{0});
        return 0.0f;
    }
    // Σ w·x·l and Σ w·l² for the quants at inverse scale `iscale`, storing them in L when asked.
    auto sums = [&](float iscale, float& sumlx, float& suml2, bool store) {
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
            if (store) L[i] = static_cast<int8_t>(l + nmax);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * static_cast<float>(l);
            suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
    };
    float sumlx, suml2;
    sums(static_cast<float>(-nmax) / max, sumlx, suml2, true);
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sums(iscale, sumlx, suml2, false);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            sums(iscale, sumlx, suml2, true);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Symmetric for Q3_K: L[i] in [0, 2 * nmax), weights x², starting from nmax / max and then moving one
// quant at a time while that improves the fit, up to 5 passes (ggml's make_q3_quants with do_rmse).
float fit_symmetric_q3(int n, int nmax, const float* x, int8_t* L) {
    const float max = signed_absmax(x, n);
    if (std::fabs(max) < kGroupMaxEps) {
        std::fill(L, L + n, int8_t{0});
        return 0.0f;
    }
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int pass = 0; pass < 5; ++pass) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
            if (!(slx > 0)) continue;
            float sl2 = suml2 - w * static_cast<float>(L[i]) * static_cast<float>(L[i]);
            const int new_l = std::max(-nmax, std::min(nmax - 1, nearest_int(x[i] * sl2 / slx)));
            if (new_l == L[i]) continue;
            slx += w * x[i] * static_cast<float>(new_l);
            sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = static_cast<int8_t>(new_l);
                sumlx = slx;
                suml2 = sl2;
                ++n_changed;
            }
        }
        if (n_changed == 0) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric: x[i] ≈ scale * L[i] - the_min with L[i] in [0, nmax] and the_min >= 0. Tries inverse scales
// (rmin + rdelta * is + nmax) / (max - min) for is = 0..nstep, each followed by the weighted least-squares
// scale and min for its quants, and keeps the least weighted error (|diff| when use_mad, else diff²).
// ggml's make_qkx2_quants.
float fit_asymmetric(int n, int nmax, const float* x, const float* weights, uint8_t* L, float& the_min,
                     float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        std::fill(L, L + n, uint8_t{0});
        the_min = -min;
        return 0.0f;
    }
    auto error_of = [&](float scale, float min_, const uint8_t* q) {
        float err = 0.0f;
        for (int i = 0; i < n; ++i) {
            float diff = scale * static_cast<float>(q[i]) + min_ - x[i];
            diff = use_mad ? std::fabs(diff) : diff * diff;
            err += weights[i] * diff;
        }
        return err;
    };
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    for (int i = 0; i < n; ++i)
        L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min)))));
    float best_error = error_of(scale, min, L);
    uint8_t Laux[32];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i], fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        const float cur_error = error_of(this_scale, this_min, Laux);
        if (cur_error < best_error) {
            std::copy(Laux, Laux + n, L);
            best_error = cur_error;
            scale = this_scale;
            min = this_min;
        }
    }
    the_min = -min;
    return scale;
}

// ---- Q2_K, Q3_K -----------------------------------------------------------------------------------------

// The 2-bit quants (values 0..3) of a super-block into qs: for each half, element 32k + l at bits 2k of
// byte l.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                 (L[j + l + 96] << 6));
}

void dequantize_block(const BlockQ2_K& b, float* y) {
    const float d = f16(b.d), dmin = f16(b.dmin);
    for (int e = 0; e < kQK_K; ++e) {
        const uint8_t sc = b.scales[e / 16];
        const int q = (b.qs[e / 128 * 32 + e % 32] >> (2 * (e % 128 / 32))) & 3;
        y[e] = d * static_cast<float>(sc & 0xF) * static_cast<float>(q) - dmin * static_cast<float>(sc >> 4);
    }
}

void quantize_block(const float* x, BlockQ2_K& b) {
    constexpr float kScaleMax = 15.f;  // scales and mins are 4 bits
    uint8_t L[kQK_K];
    float scales[kQK_K / 16], mins[kQK_K / 16];
    float max_scale = 0, max_min = 0;  // the min is subtracted, so scales are positive
    for (int j = 0; j < kQK_K / 16; ++j) {
        float weights[16];
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = fit_asymmetric(16, 3, x + 16 * j, weights, L + 16 * j, mins[j], -0.5f, 0.1f, 15, true);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        const float iscale = kScaleMax / max_scale;
        for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
        b.d = f32_to_f16(max_scale / kScaleMax);
    } else {
        std::fill(b.scales, b.scales + kQK_K / 16, uint8_t{0});
        b.d = f32_to_f16(0.f);
    }
    if (max_min > 0) {
        const float iscale = kScaleMax / max_min;
        for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
        b.dmin = f32_to_f16(max_min / kScaleMax);
    } else {
        b.dmin = f32_to_f16(0.f);
    }
    // Requantize against the scales as stored; a sub-block whose scale rounded to 0 keeps the fit's quants.
    for (int j = 0; j < kQK_K / 16; ++j) {
        const float d = f16(b.d) * static_cast<float>(b.scales[j] & 0xF);
        if (d == 0.0f) continue;
        const float dm = f16(b.dmin) * static_cast<float>(b.scales[j] >> 4);
        for (int i = 0; i < 16; ++i)
            L[16 * j + i] = static_cast<uint8_t>(std::max(0, std::min(3, nearest_int((x[16 * j + i] + dm) / d))));
    }
    pack_2bit(L, b.qs);
}

// The 6-bit scale of Q3_K sub-block j, still offset by 32.
int q3k_scale(const uint8_t* scales, int j) {
    const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    return low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

void dequantize_block(const BlockQ3_K& b, float* y) {
    const float d = f16(b.d);
    for (int e = 0; e < kQK_K; ++e) {
        const float dl = d * static_cast<float>(q3k_scale(b.scales, e / 16) - 32);
        const int low = (b.qs[e / 128 * 32 + e % 32] >> (2 * (e % 128 / 32))) & 3;
        const int high = b.hmask[e % 32] & (1 << (e / 32)) ? 0 : 4;
        y[e] = dl * static_cast<float>(low - high);
    }
}

void quantize_block(const float* x, BlockQ3_K& b) {
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    float max_scale = 0, amax = 0;  // the signed scale of largest magnitude
    for (int j = 0; j < kQK_K / 16; ++j) {
        scales[j] = fit_symmetric_q3(16, 4, x + 16 * j, L + 16 * j);
        if (std::fabs(scales[j]) > amax) {
            amax = std::fabs(scales[j]);
            max_scale = scales[j];
        }
    }
    std::memset(b.scales, 0, sizeof b.scales);
    if (max_scale != 0.0f) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < kQK_K / 16; ++j) {
            // ggml narrows to int8 before clamping: a scale the search left far out of range wraps.
            const int narrowed = static_cast<int8_t>(nearest_int(iscale * scales[j]));
            const int l = std::max(-32, std::min(31, narrowed)) + 32;
            if (j < 8)
                b.scales[j] = static_cast<uint8_t>(l & 0xF);
            else
                b.scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
            b.scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
        }
        b.d = f32_to_f16(1 / iscale);
    } else {
        b.d = f32_to_f16(0.f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
        const float d = f16(b.d) * static_cast<float>(static_cast<int8_t>(q3k_scale(b.scales, j) - 32));
        if (d == 0.0f) continue;
        for (int i = 0; i < 16; ++i)
            L[16 * j + i] = static_cast<int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * j + i] / d))) + 4);
    }
    // The high bit of element e goes to bit e / 32 of hmask[e % 32], the low two bits to qs.
    std::memset(b.hmask, 0, sizeof b.hmask);
    uint8_t low[kQK_K];
    for (int e = 0; e < kQK_K; ++e) {
        int l = L[e];
        if (l > 3) {
            b.hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
            l -= 4;
        }
        low[e] = static_cast<uint8_t>(l);
    }
    pack_2bit(low, b.qs);
}

// ---- Q4_K, Q5_K -----------------------------------------------------------------------------------------

// The per-sub-block fit Q4_K and Q5_K share: weights sqrt(mean x²) + |x| per sub-block of 32, the 6-bit
// scales and mins packed against the f16 d and dmin, then every element requantized with the scales as
// stored into L (0..nmax).
template <class Block>
void quantize_k_scale_min(const float* x, Block& b, int nmax, float rmin, int nstep, uint8_t* L) {
    float scales[kQK_K / 32], mins[kQK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
        const float* xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += xj[l] * xj[l];
        const float av_x = std::sqrt(sum_x2 / 32);
        float weights[32];
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xj[l]);
        scales[j] = fit_asymmetric(32, nmax, xj, weights, L + 32 * j, mins[j], rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < kQK_K / 32; ++j) {
        const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
        const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
        if (j < 4) {
            b.scales[j] = ls;
            b.scales[j + 4] = lm;
        } else {
            b.scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
            b.scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
            b.scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
        }
    }
    b.d = f32_to_f16(max_scale / 63.f);
    b.dmin = f32_to_f16(max_min / 63.f);
    for (int j = 0; j < kQK_K / 32; ++j) {
        uint8_t sc, m;
        k_scale_min(j, b.scales, sc, m);
        const float d = f16(b.d) * static_cast<float>(sc);
        if (d == 0.0f) continue;  // keeps the fit's quants
        const float dm = f16(b.dmin) * static_cast<float>(m);
        for (int i = 0; i < 32; ++i)
            L[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(nmax, nearest_int((x[32 * j + i] + dm) / d))));
    }
}

// Element e of a Q4_K / Q5_K block is d * sc * q - dmin * m with (sc, m) of sub-block e / 32.
template <class Block>
void dequantize_k_scale_min(const Block& b, const int* q, float* y) {
    const float d = f16(b.d), dmin = f16(b.dmin);
    for (int j = 0; j < kQK_K / 32; ++j) {
        uint8_t sc, m;
        k_scale_min(j, b.scales, sc, m);
        const float dj = d * static_cast<float>(sc), mj = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) y[32 * j + l] = dj * static_cast<float>(q[32 * j + l]) - mj;
    }
}

void dequantize_block(const BlockQ4_K& b, float* y) {
    int q[kQK_K];
    for (int e = 0; e < kQK_K; ++e) q[e] = (b.qs[e / 64 * 32 + e % 32] >> (e % 64 / 32 * 4)) & 0xF;
    dequantize_k_scale_min(b, q, y);
}

void quantize_block(const float* x, BlockQ4_K& b) {
    uint8_t L[kQK_K];
    quantize_k_scale_min(x, b, 15, -1.f, 20, L);
    for (int j = 0; j < kQK_K; j += 64)
        for (int l = 0; l < 32; ++l) b.qs[j / 2 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

void dequantize_block(const BlockQ5_K& b, float* y) {
    int q[kQK_K];
    for (int e = 0; e < kQK_K; ++e) {
        const int low = (b.qs[e / 64 * 32 + e % 32] >> (e % 64 / 32 * 4)) & 0xF;
        const int high = b.qh[e % 32] & (1 << (e / 32)) ? 16 : 0;
        q[e] = low + high;
    }
    dequantize_k_scale_min(b, q, y);
}

void quantize_block(const float* x, BlockQ5_K& b) {
    uint8_t L[kQK_K];
    quantize_k_scale_min(x, b, 31, -0.5f, 15, L);
    std::memset(b.qh, 0, sizeof b.qh);
    for (int e = 0; e < kQK_K; ++e)
        if (L[e] > 15) b.qh[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
    for (int j = 0; j < kQK_K; j += 64)
        for (int l = 0; l < 32; ++l)
            b.qs[j / 2 + l] = static_cast<uint8_t>((L[j + l] & 0xF) | ((L[j + l + 32] & 0xF) << 4));
}

// ---- Q6_K -----------------------------------------------------------------------------------------------

void dequantize_block(const BlockQ6_K& b, float* y) {
    const float d = f16(b.d);
    for (int e = 0; e < kQK_K; ++e) {
        const int half = e / 128, k = e % 128 / 32, l = e % 32;
        const int low = (b.ql[64 * half + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xF;
        const int high = (b.qh[32 * half + l] >> (2 * k)) & 3;
        y[e] = d * static_cast<float>(b.scales[e / 16]) * static_cast<float>((low | (high << 4)) - 32);
    }
}

void quantize_block(const float* x, BlockQ6_K& b) {
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
        scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
        if (std::fabs(scales[j]) > max_abs_scale) {
            max_abs_scale = std::fabs(scales[j]);
            max_scale = scales[j];
        }
    }
    if (max_abs_scale < kGroupMaxEps) {
        std::memset(&b, 0, sizeof b);
        return;
    }
    const float iscale = -128.f / max_scale;
    b.d = f32_to_f16(1 / iscale);
    for (int j = 0; j < kQK_K / 16; ++j)
        b.scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    for (int j = 0; j < kQK_K / 16; ++j) {
        const float d = f16(b.d) * static_cast<float>(b.scales[j]);
        if (d == 0.0f) continue;  // keeps the fit's quants
        for (int i = 0; i < 16; ++i)
            L[16 * j + i] = static_cast<int8_t>(std::max(-32, std::min(31, nearest_int(x[16 * j + i] / d))) + 32);
    }
    for (int half = 0; half < 2; ++half) {
        const int8_t* Lh = L + 128 * half;
        for (int l = 0; l < 32; ++l) {
            b.ql[64 * half + l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
            b.ql[64 * half + l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
            b.qh[32 * half + l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                                       ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
        }
    }
}

// ---- rows -----------------------------------------------------------------------------------------------

template <class Block>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
    const auto* bytes = static_cast<const unsigned char*>(src);
    for (int64_t i = 0; i < n / Block::kElems; ++i) {
        Block b;
        std::memcpy(&b, bytes + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
        dequantize_block(b, dst + i * Block::kElems);
    }
}

template <class Block>
void quantize_blocks(const float* src, void* dst, int64_t n) {
    auto* bytes = static_cast<unsigned char*>(dst);
    for (int64_t i = 0; i < n / Block::kElems; ++i) {
        Block b{};
        quantize_block(src + i * Block::kElems, b);
        std::memcpy(bytes + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
    }
}

[[noreturn]] void refuse(uint32_t type) {
    throw Error("tensor type " + ggml_type_name(type) + " is not supported (supported: " +
                ggml_supported_type_names() + ")");
}

void check_whole_blocks(uint32_t type, int64_t n) {
    const GgmlTypeTraits tr = ggml_type_traits(type);
    LAMINA_CHECK(n >= 0 && n % static_cast<int64_t>(tr.block_elems) == 0,
                 ggml_type_name(type) + " row of n=" + std::to_string(n));
}

// Calls f(Block{}) with the block struct of a quantized `type`; refuses any other type.
template <class F>
void with_block_type(uint32_t type, F&& f) {
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::Q4_0: return f(BlockQ4_0{});
        case GgmlType::Q4_1: return f(BlockQ4_1{});
        case GgmlType::Q5_0: return f(BlockQ5_0{});
        case GgmlType::Q5_1: return f(BlockQ5_1{});
        case GgmlType::Q8_0: return f(BlockQ8_0{});
        case GgmlType::Q2_K: return f(BlockQ2_K{});
        case GgmlType::Q3_K: return f(BlockQ3_K{});
        case GgmlType::Q4_K: return f(BlockQ4_K{});
        case GgmlType::Q5_K: return f(BlockQ5_K{});
        case GgmlType::Q6_K: return f(BlockQ6_K{});
        default: refuse(type);
    }
}

}  // namespace

void dequantize_row(uint32_t type, const void* blocks, float* dst, int64_t n) {
    if (!ggml_type_supported(type)) refuse(type);
    check_whole_blocks(type, n);
    const auto count = static_cast<size_t>(n);
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: std::memcpy(dst, blocks, count * 4); return;
        case GgmlType::F16: convert_to_f32(DType::F16, blocks, dst, count); return;
        case GgmlType::BF16: convert_to_f32(DType::BF16, blocks, dst, count); return;
        default:
            with_block_type(type, [&](auto block) { dequantize_blocks<decltype(block)>(blocks, dst, n); });
    }
}

void quantize_row(uint32_t type, const float* src, void* blocks, int64_t n) {
    if (!ggml_type_supported(type)) refuse(type);
    check_whole_blocks(type, n);
    const auto count = static_cast<size_t>(n);
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: std::memcpy(blocks, src, count * 4); return;
        case GgmlType::F16: convert_from_f32(DType::F16, src, blocks, count); return;
        case GgmlType::BF16: convert_from_f32(DType::BF16, src, blocks, count); return;
        default:
            with_block_type(type, [&](auto block) { quantize_blocks<decltype(block)>(src, blocks, n); });
    }
}

}  // namespace lamina
