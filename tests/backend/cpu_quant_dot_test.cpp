// The CPU's quantized dot products (backend/cpu/quant_dot.h) on random blocks of every block type: each vector
// kernel against the portable one, the portable one against dequantize-then-f32 on the same quantized
// activations, and the whole path against f32 activations within the activation quantization's error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/quant_dot.h"
#include "core/dtype.h"

namespace lamina {
namespace {

using cpu::ActBlock;

constexpr DType kBlockTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                 DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Where each block type keeps its f16 scales (random bytes there could be inf or NaN).
std::vector<int> f16_fields(DType t) {
    switch (t) {
        case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
        case DType::Q2_K: return {80, 82};
        case DType::Q3_K: return {108};
        case DType::Q6_K: return {208};
        default: return {0};
    }
}

// `rows` weight rows of k elements: random bytes, with sane scales.
std::vector<uint8_t> random_blocks(DType t, int64_t rows, int64_t k, std::mt19937& rng) {
    std::vector<uint8_t> w(dtype_bytes(t, rows * k));
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
    const DTypeBlock blk = dtype_block(t);
    for (size_t off = 0; off < w.size(); off += static_cast<size_t>(blk.bytes))
        for (int f : f16_fields(t)) {
            const uint16_t h = f32_to_f16(scale(rng));
            std::memcpy(&w[off + static_cast<size_t>(f)], &h, 2);
        }
    return w;
}

struct Case {
    std::vector<float> x;             // [n][k]
    std::vector<ActBlock> act;        // [n][k / 32]
    std::vector<float> x_dequant;     // the quantized activations as f32
};

Case make_case(int n, int64_t k, std::mt19937& rng) {
    Case c;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    c.x.resize(static_cast<size_t>(n * k));
    for (auto& v : c.x) v = normal(rng);
    c.x[3] = 25.0f;  // an outlier, as real activations have
    c.act.resize(static_cast<size_t>(n * k / 32));
    for (int t = 0; t < n; ++t) cpu::quantize_activations(c.x.data() + t * k, k, c.act.data() + t * k / 32);
    for (const ActBlock& a : c.act)
        for (int i = 0; i < 32; ++i) c.x_dequant.push_back(a.d * a.q[i]);
    return c;
}

// out[t] for every row of w, through `dot`, tokens kMaxDotRows at a time.
std::vector<float> run(cpu::QuantDotFn dot, DType t, const std::vector<uint8_t>& w, int64_t rows, const Case& c, int n, int64_t k) {
    std::vector<float> out(static_cast<size_t>(n * rows));
    const size_t row_bytes = dtype_bytes(t, k);
    for (int64_t r = 0; r < rows; ++r)
        for (int t0 = 0; t0 < n; t0 += cpu::kMaxDotRows) {
            const int tile = std::min(cpu::kMaxDotRows, n - t0);
            const ActBlock* xs[cpu::kMaxDotRows];
            const float* xf[cpu::kMaxDotRows];
            for (int i = 0; i < tile; ++i) xs[i] = c.act.data() + (t0 + i) * k / 32, xf[i] = c.x.data() + (t0 + i) * k;
            float d[cpu::kMaxDotRows];
            dot(w.data() + r * row_bytes, xs, xf, k, tile, d);
            for (int i = 0; i < tile; ++i) out[static_cast<size_t>((t0 + i) * rows + r)] = d[i];
        }
    return out;
}

// Sum |w| |x| for row r and token t: the scale of a dot product's rounding error.
double magnitude(const std::vector<float>& wf, const std::vector<float>& x, int64_t r, int t, int64_t k) {
    double s = 0.0;
    for (int64_t i = 0; i < k; ++i) s += std::fabs(wf[static_cast<size_t>(r * k + i)] * x[static_cast<size_t>(t * k + i)]);
    return s;
}

TEST(CpuQuantDot, EveryKernelAgreesWithTheDequantizedDot) {
    std::mt19937 rng(7);
    for (DType t : kBlockTypes) {
        const int64_t blk = dtype_block(t).elems;
        for (int64_t k : {blk, 3 * blk, 7 * blk}) {
            for (int n : {1, 3, 4, 7}) {
                SCOPED_TRACE(std::string(dtype_name(t)) + " k " + std::to_string(k) + " n " + std::to_string(n));
                const int64_t rows = 5;
                const auto w = random_blocks(t, rows, k, rng);
                std::vector<float> wf(static_cast<size_t>(rows * k));
                convert_to_f32(t, w.data(), wf.data(), wf.size());
                const Case c = make_case(n, k, rng);
                const bool in_floats = t == DType::Q2_K || t == DType::Q3_K || t == DType::Q5_K;
                const std::vector<float>& xref = in_floats ? c.x : c.x_dequant;
                const auto portable = run(cpu::quant_dot_portable(t), t, w, rows, c, n, k);
                std::vector<cpu::QuantDotFn> fast = {cpu::quant_dot_for(t)};
                if (__builtin_cpu_supports("avx2")) fast.push_back(cpu::quant_dot_avx2(t));
                if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")) fast.push_back(cpu::quant_dot_vnni(t));
                for (int tok = 0; tok < n; ++tok)
                    for (int64_t r = 0; r < rows; ++r) {
                        double ref = 0.0;
                        for (int64_t i = 0; i < k; ++i) ref += static_cast<double>(wf[static_cast<size_t>(r * k + i)]) * xref[static_cast<size_t>(tok * k + i)];
                        const double tol = 1e-5 * magnitude(wf, xref, r, tok, k) + 1e-7;
                        const size_t o = static_cast<size_t>(tok * rows + r);
                        EXPECT_NEAR(portable[o], ref, tol) << "portable, row " << r << " token " << tok;
                        for (size_t f = 0; f < fast.size(); ++f) {
                            const auto got = run(fast[f], t, w, rows, c, n, k);
                            EXPECT_NEAR(got[o], ref, tol) << "kernel " << f << ", row " << r << " token " << tok;
                        }
                        // Against the f32 activations: int8 rounding, at most half a step of each block's scale.
                        double bound = 0.0;
                        for (int64_t i = 0; i < k; ++i)
                            bound += std::fabs(wf[static_cast<size_t>(r * k + i)]) * 0.5 * c.act[static_cast<size_t>((tok * k + i) / 32)].d;
                        double exact = 0.0;
                        for (int64_t i = 0; i < k; ++i) exact += static_cast<double>(wf[static_cast<size_t>(r * k + i)]) * c.x[static_cast<size_t>(tok * k + i)];
                        EXPECT_NEAR(portable[o], exact, bound + tol);
                    }
            }
        }
    }
}

TEST(CpuQuantDot, ActivationQuantizationMatchesThePortableRounding) {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> x(32 * 9);
    for (auto& v : x) v = normal(rng);
    for (int i = 32; i < 64; ++i) x[static_cast<size_t>(i)] = 0.0f;  // an all-zero block: d = 0, q = 0
    std::vector<ActBlock> a(9);
    cpu::quantize_activations(x.data(), static_cast<int64_t>(x.size()), a.data());
    for (int b = 0; b < 9; ++b) {
        float amax = 0.0f;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[static_cast<size_t>(b * 32 + i)]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        EXPECT_EQ(a[static_cast<size_t>(b)].d, d);
        int sum[2] = {0, 0};
        for (int i = 0; i < 32; ++i) {
            const int q = static_cast<int>(std::nearbyint(x[static_cast<size_t>(b * 32 + i)] * id));
            EXPECT_EQ(a[static_cast<size_t>(b)].q[i], q) << "block " << b << " element " << i;
            sum[i / 16] += q;
        }
        EXPECT_EQ(a[static_cast<size_t>(b)].s[0], d * static_cast<float>(sum[0]));
        EXPECT_EQ(a[static_cast<size_t>(b)].s[1], d * static_cast<float>(sum[1]));
        EXPECT_EQ(a[static_cast<size_t>(b)].sum, d * static_cast<float>(sum[0] + sum[1]));
    }
}

}  // namespace
}  // namespace lamina
