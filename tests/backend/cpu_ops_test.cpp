// CPU ops against plain loops, and each fused op against its unfused twin, on random data with odd
// sizes (the llama.cpp test-backend-ops idea; the CUDA backend will be held to these same references).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/dot.h"
#include "../test_util.h"

namespace lamina {
namespace {

using test::random_vec;

std::vector<uint16_t> to_half(const std::vector<float>& v, DType t) {
    std::vector<uint16_t> h(v.size());
    convert_from_f32(t, v.data(), h.data(), v.size());
    return h;
}

TEST(CpuDot, VectorMatchesPortableForEveryDtype) {
    for (int64_t k : {1, 7, 8, 31, 33, 576, 1537}) {
        const auto x = random_vec(static_cast<size_t>(k), 1), w = random_vec(static_cast<size_t>(k), 2);
        for (DType t : {DType::F32, DType::F16, DType::BF16}) {
            std::vector<uint16_t> half;
            const void* wp = w.data();
            if (t != DType::F32) {
                half = to_half(w, t);
                wp = half.data();
            }
            const float fast = cpu::dot_for(t)(x.data(), wp, k);
            const float ref = cpu::dot_portable(t)(x.data(), wp, k);
            // Same products, different summation order: error grows like sqrt(k) * eps * |terms|.
            EXPECT_NEAR(fast, ref, 1e-5f * std::sqrt(static_cast<float>(k)) * 4.0f) << "k=" << k << " dtype " << dtype_name(t);
        }
    }
}

TEST(CpuMatmul, GemvAndGemmPathsAgreeWithPlainLoops) {
    CpuBackend be;
    const int64_t k = 67, m = 301;
    for (DType t : {DType::F32, DType::F16, DType::BF16}) {
        for (int64_t n : {1, 3, 4, 5, 13}) {  // <= 4 takes the GEMV path, more takes sgemm
            const auto x = random_vec(static_cast<size_t>(n * k), 3);
            const auto wf = random_vec(static_cast<size_t>(m * k), 4, 0.1f);
            const auto bias = random_vec(static_cast<size_t>(m), 5);
            std::vector<uint16_t> wh;
            const void* wp = wf.data();
            std::vector<float> w_exact = wf;  // the weight values as stored
            if (t != DType::F32) {
                wh = to_half(wf, t);
                wp = wh.data();
                convert_to_f32(t, wh.data(), w_exact.data(), wh.size());
            }
            std::vector<float> out(static_cast<size_t>(n * m), NAN);  // poisoned: unwritten elements show
            const TensorView bv = make_view(bias.data(), DType::F32, 1, m);
            be.matmul(make_view(x.data(), DType::F32, n, k), make_view(wp, t, m, k), &bv,
                      make_view(out.data(), DType::F32, n, m));
            for (int64_t i = 0; i < n; ++i)
                for (int64_t r = 0; r < m; ++r) {
                    double ref = bias[r];
                    for (int64_t j = 0; j < k; ++j) ref += static_cast<double>(x[i * k + j]) * w_exact[r * k + j];
                    ASSERT_NEAR(out[i * m + r], ref, 1e-4) << "n=" << n << " r=" << r << " dtype " << dtype_name(t);
                }
        }
    }
}

TEST(CpuNorm, FusedAddEqualsAddThenNorm) {
    CpuBackend be;
    const int64_t rows = 5, cols = 577;
    const auto x = random_vec(rows * cols, 6), res0 = random_vec(rows * cols, 7), w = random_vec(cols, 8);
    auto res_a = res0, res_b = res0;
    std::vector<float> out_a(rows * cols, NAN), out_b(rows * cols, NAN);
    const auto wv = make_view(w.data(), DType::F32, 1, cols);
    be.rms_norm_fused_add(make_view(res_a.data(), DType::F32, rows, cols), make_view(x.data(), DType::F32, rows, cols), wv,
                          1e-5f, make_view(out_a.data(), DType::F32, rows, cols));
    be.add(make_view(res_b.data(), DType::F32, rows, cols), make_view(x.data(), DType::F32, rows, cols));
    be.rms_norm(make_view(res_b.data(), DType::F32, rows, cols), wv, 1e-5f, make_view(out_b.data(), DType::F32, rows, cols));
    EXPECT_EQ(res_a, res_b);
    EXPECT_EQ(out_a, out_b);
    // And against the formula, row 2.
    double ss = 0;
    for (int64_t i = 0; i < cols; ++i) ss += double(res_b[2 * cols + i]) * res_b[2 * cols + i];
    const double inv = 1.0 / std::sqrt(ss / cols + 1e-5);
    for (int64_t i = 0; i < cols; ++i) EXPECT_NEAR(out_b[2 * cols + i], w[i] * res_b[2 * cols + i] * inv, 1e-5);
}

TEST(CpuNorm, StridedRowsAreRespected) {
    CpuBackend be;
    const int64_t rows = 3, cols = 9, stride = 16;
    auto x = random_vec(rows * stride, 9);
    std::vector<float> w(cols, 1.0f), out(rows * stride, NAN);
    TensorView xv{x.data(), DType::F32, rows, cols, stride}, ov{out.data(), DType::F32, rows, cols, stride};
    be.rms_norm(xv, make_view(w.data(), DType::F32, 1, cols), 1e-6f, ov);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < cols; ++i) EXPECT_FALSE(std::isnan(out[r * stride + i]));
        for (int64_t i = cols; i < stride; ++i) EXPECT_TRUE(std::isnan(out[r * stride + i])) << "wrote past the row";
    }
}

TEST(CpuSwiglu, MatchesFormula) {
    CpuBackend be;
    const int64_t rows = 2, ff = 37;
    const auto gu = random_vec(rows * 2 * ff, 10);
    std::vector<float> out(rows * ff, NAN);
    be.swiglu(make_view(gu.data(), DType::F32, rows, 2 * ff), make_view(out.data(), DType::F32, rows, ff));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < ff; ++i) {
            const double g = gu[r * 2 * ff + i], u = gu[r * 2 * ff + ff + i];
            EXPECT_NEAR(out[r * ff + i], g / (1 + std::exp(-g)) * u, 1e-5);
        }
}

// The pool splits rows, heads and weight-row blocks; no op may depend on how (each output element is
// computed by one thread, in one order), so 1 and 3 threads must agree bit for bit.
TEST(CpuThreads, ResultsDoNotDependOnTheThreadCount) {
    CpuBackend one(1), three(3);
    ASSERT_EQ(one.threads(), 1);
    ASSERT_EQ(three.threads(), 3);
    const int64_t k = 67, m = 301;
    const auto wf = random_vec(static_cast<size_t>(m * k), 20, 0.1f), bias = random_vec(static_cast<size_t>(m), 21);
    const auto wh = to_half(wf, DType::F16);
    const TensorView bv = make_view(bias.data(), DType::F32, 1, m);
    for (int64_t n : {1, 3, 13, 130}) {  // GEMV, GEMV, sgemm, sgemm over several row blocks
        const auto x = random_vec(static_cast<size_t>(n * k), 22);
        for (DType t : {DType::F32, DType::F16}) {
            const void* wp = t == DType::F32 ? static_cast<const void*>(wf.data()) : wh.data();
            std::vector<float> a(static_cast<size_t>(n * m), NAN), b(static_cast<size_t>(n * m), NAN);
            one.matmul(make_view(x.data(), DType::F32, n, k), make_view(wp, t, m, k), &bv, make_view(a.data(), DType::F32, n, m));
            three.matmul(make_view(x.data(), DType::F32, n, k), make_view(wp, t, m, k), &bv, make_view(b.data(), DType::F32, n, m));
            EXPECT_EQ(a, b) << "matmul n=" << n << " dtype " << dtype_name(t);
        }
    }

    // RoPE + KV write, then attention: 7 tokens of two sequences (slots 1 and 0) at scattered positions.
    const AttentionShape s{6, 2, 16, 0.25f};
    const int64_t n_ctx = 32, kv_dim = s.n_head_kv * s.head_dim, qkv_dim = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
    const std::vector<int32_t> ids(7, 0), pos = {0, 1, 2, 3, 4, 20, 31}, slots = {1, 1, 1, 1, 1, 0, 0};
    StepTokens tok;
    tok.ids = ids.data();
    tok.positions = pos.data();
    tok.slots = slots.data();
    tok.n_tokens = 7;
    const auto rope = random_vec(static_cast<size_t>(n_ctx * s.head_dim), 23);
    const auto qkv0 = random_vec(static_cast<size_t>(tok.n_tokens * qkv_dim), 24);
    const auto cache0 = random_vec(static_cast<size_t>(2 * n_ctx * kv_dim), 25);  // the other positions
    auto run = [&](CpuBackend& be, std::vector<float>& qkv, std::vector<float>& kc, std::vector<float>& vc,
                   std::vector<float>& out) {
        qkv = qkv0;
        kc = cache0;
        vc = cache0;
        out.assign(static_cast<size_t>(tok.n_tokens * s.n_head * s.head_dim), NAN);
        KvCache cache{kc.data(), vc.data(), DType::F32, 2, 1, n_ctx, kv_dim};
        const TensorView qv = make_view(qkv.data(), DType::F32, tok.n_tokens, qkv_dim);
        be.rope_kv_write(qv, tok, make_view(rope.data(), DType::F32, n_ctx, s.head_dim), s, 0, cache);
        be.attention(qv, tok, s, 0, cache, make_view(out.data(), DType::F32, tok.n_tokens, s.n_head * s.head_dim));
    };
    std::vector<float> q1, k1, v1, o1, q3, k3, v3, o3;
    run(one, q1, k1, v1, o1);
    run(three, q3, k3, v3, o3);
    EXPECT_EQ(q1, q3) << "rope";
    EXPECT_EQ(k1, k3) << "k cache";
    EXPECT_EQ(v1, v3) << "v cache";
    EXPECT_EQ(o1, o3) << "attention";

    // A float16 cache: the same attention as a float32 cache holding the same values rounded to f16.
    CpuBackend half_kv(2, DType::F16);
    auto round16 = [](std::vector<float> v) {
        for (float& x : v) x = f16_to_f32(f32_to_f16(x));
        return v;
    };
    std::vector<uint16_t> kh(cache0.size()), vh(cache0.size());
    convert_from_f32(DType::F16, cache0.data(), kh.data(), cache0.size());
    vh = kh;
    std::vector<float> qh = qkv0, oh(o1.size(), NAN);
    KvCache hc{kh.data(), vh.data(), DType::F16, 2, 1, n_ctx, kv_dim};
    const TensorView qhv = make_view(qh.data(), DType::F32, tok.n_tokens, qkv_dim);
    half_kv.rope_kv_write(qhv, tok, make_view(rope.data(), DType::F32, n_ctx, s.head_dim), s, 0, hc);
    half_kv.attention(qhv, tok, s, 0, hc, make_view(oh.data(), DType::F32, tok.n_tokens, s.n_head * s.head_dim));
    std::vector<float> kr = round16(k1), vr = round16(v1), orf(o1.size(), NAN);
    KvCache rc{kr.data(), vr.data(), DType::F32, 2, 1, n_ctx, kv_dim};
    one.attention(make_view(q1.data(), DType::F32, tok.n_tokens, qkv_dim), tok, s, 0, rc,
                  make_view(orf.data(), DType::F32, tok.n_tokens, s.n_head * s.head_dim));
    for (size_t i = 0; i < oh.size(); ++i) EXPECT_NEAR(oh[i], orf[i], 1e-5f) << "f16 cache, element " << i;

    const int64_t rows = 9, cols = 577;
    const auto x = random_vec(static_cast<size_t>(rows * cols), 26), w = random_vec(static_cast<size_t>(cols), 27);
    const auto xv = make_view(x.data(), DType::F32, rows, cols), wv = make_view(w.data(), DType::F32, 1, cols);
    std::vector<float> n1(x.size(), NAN), n3(x.size(), NAN);
    one.rms_norm(xv, wv, 1e-5f, make_view(n1.data(), DType::F32, rows, cols));
    three.rms_norm(xv, wv, 1e-5f, make_view(n3.data(), DType::F32, rows, cols));
    EXPECT_EQ(n1, n3) << "rms_norm";
    auto r1 = x, r3 = x;
    one.rms_norm_fused_add(make_view(r1.data(), DType::F32, rows, cols), xv, wv, 1e-5f, make_view(n1.data(), DType::F32, rows, cols));
    three.rms_norm_fused_add(make_view(r3.data(), DType::F32, rows, cols), xv, wv, 1e-5f, make_view(n3.data(), DType::F32, rows, cols));
    EXPECT_EQ(r1, r3) << "rms_norm_fused_add residual";
    EXPECT_EQ(n1, n3) << "rms_norm_fused_add";
    const int64_t ff = (cols - 1) / 2;  // gate_up rows of 2 * ff
    std::vector<float> s1(static_cast<size_t>(rows * ff), NAN), s3(static_cast<size_t>(rows * ff), NAN);
    one.swiglu(make_view(x.data(), DType::F32, rows, 2 * ff), make_view(s1.data(), DType::F32, rows, ff));
    three.swiglu(make_view(x.data(), DType::F32, rows, 2 * ff), make_view(s3.data(), DType::F32, rows, ff));
    EXPECT_EQ(s1, s3) << "swiglu";
}

}  // namespace
}  // namespace lamina
