// The fused decode ops (backend/cuda/decode_gemv.cu) against the plain CPU ops they replace, on random
// inputs: 1 to 4 tokens, vectorized and scalar widths, biases, a GQA RoPE + KV write at scattered
// slots and positions, poisoned outputs. Then the CUDA model with and without fusion, and the whole-step
// decode kernel (backend/cuda/decode_step.cu) against the separate ops. Skipped without a GPU.
#ifdef LAMINA_HAS_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "../parallel/tp_test_util.h"
#include "../test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_test_util.h"
#include "build/engine_writer.h"
#include "core/error.h"
#include "model/llama.h"
#include "runtime/generator.h"

namespace lamina {
namespace {

using test::DeviceMatrix;
using test::expect_close;
using test::random_vec;
using test::rms;
using test::rounded;

class CudaDecode : public ::testing::TestWithParam<DType> {
protected:
    void SetUp() override {
        if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
        gpu = make_cuda_backend(GetParam());  // the fused ops run whether or not the model would use them
    }
    std::vector<float> cpu_norm(const std::vector<float>& x, const std::vector<float>& g, int64_t n, int64_t k) {
        std::vector<float> h(x.size());
        cpu.rms_norm(make_view(const_cast<float*>(x.data()), DType::F32, n, k), make_view(const_cast<float*>(g.data()), DType::F32, 1, k),
                     1e-5f, make_view(h.data(), DType::F32, n, k));
        return h;
    }
    std::vector<float> cpu_matmul(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>* b,
                                  int64_t n, int64_t m, int64_t k) {
        std::vector<float> out(n * m);
        const TensorView bv = b ? make_view(const_cast<float*>(b->data()), DType::F32, 1, m) : TensorView{};
        cpu.matmul(make_view(const_cast<float*>(x.data()), DType::F32, n, k), make_view(const_cast<float*>(w.data()), DType::F32, m, k),
                   b ? &bv : nullptr, make_view(out.data(), DType::F32, n, m));
        return out;
    }
    std::unique_ptr<Backend> gpu;
    CpuBackend cpu;
};

TEST_P(CudaDecode, MatmulAddGateUpAndNormMatmul) {
    const DType t = GetParam();
    uint32_t seed = 100;
    // 198, 2050: not a whole number of 16-byte vectors in half precision; 4104 and 2050 give the GEMV 2-4 warps
    // per unit (split-K), and 4104 at 3-4 rows of f32 stages over 48 KB of shared memory.
    for (int64_t k : {512, 200, 198, 4104, 2050}) {
        for (int64_t n : {1, 2, 3, 4}) {
            const int64_t m = 301, ff = 173;
            const auto x = rounded(random_vec(n * k, seed++), t), g = random_vec(k, seed++);
            const auto w = rounded(random_vec(m * k, seed++, 0.05f), t), b = random_vec(m, seed++);
            const auto res0 = rounded(random_vec(n * m, seed++), t);
            DeviceMatrix dx(*gpu, t, n, k, k + 8), dw(*gpu, t, m, k), db(*gpu, DType::F32, 1, m), dg(*gpu, DType::F32, 1, k);
            DeviceMatrix dres(*gpu, t, n, m);
            dx.upload(x), dw.upload(w), db.upload(b), dg.upload(g), dres.upload(res0);
            const std::string what = " n=" + std::to_string(n) + " k=" + std::to_string(k);

            // residual += x @ w^T + b
            const TensorView bv = db.view();
            gpu->decode_matmul_add(dx.view(), dw.view(), &bv, dres.view());
            auto ref = cpu_matmul(x, w, &b, n, m, k);
            const double scale = rms(ref);
            for (size_t i = 0; i < ref.size(); ++i) ref[i] += res0[i];
            expect_close(dres.download(), ref, t, "matmul_add" + what, scale);

            // out = silu(gate) * up of rms_norm(x) * g @ [gate; up]^T + b
            const auto wgu = rounded(random_vec(2 * ff * k, seed++, 0.05f), t), bgu = random_vec(2 * ff, seed++);
            DeviceMatrix dwgu(*gpu, t, 2 * ff, k), dbgu(*gpu, DType::F32, 1, 2 * ff), dff(*gpu, t, n, ff);
            dwgu.upload(wgu), dbgu.upload(bgu);
            const TensorView bguv = dbgu.view();
            gpu->decode_gate_up(dx.view(), dg.view(), 1e-5f, dwgu.view(), &bguv, dff.view());
            const auto gu = cpu_matmul(cpu_norm(x, g, n, k), wgu, &bgu, n, 2 * ff, k);
            std::vector<float> sw(n * ff);
            cpu.swiglu(make_view(const_cast<float*>(gu.data()), DType::F32, n, 2 * ff), make_view(sw.data(), DType::F32, n, ff));
            expect_close(dff.download(), sw, t, "gate_up" + what, rms(sw) + rms(gu));
            // The same without a gain: x as it is (FusedDecode::Epilogues, after the plain norm).
            DeviceMatrix dff_plain(*gpu, t, n, ff);
            gpu->decode_gate_up(dx.view(), TensorView{}, 1e-5f, dwgu.view(), &bguv, dff_plain.view());
            const auto gu_plain = cpu_matmul(x, wgu, &bgu, n, 2 * ff, k);
            std::vector<float> sw_plain(n * ff);
            cpu.swiglu(make_view(const_cast<float*>(gu_plain.data()), DType::F32, n, 2 * ff),
                       make_view(sw_plain.data(), DType::F32, n, ff));
            expect_close(dff_plain.download(), sw_plain, t, "gate_up, no norm" + what, rms(sw_plain) + rms(gu_plain));

            // out[r] = rms_norm(x[rows[r]]) * g @ w^T, rows permuted
            std::vector<int32_t> rows;
            for (int64_t r = 0; r < n; ++r) rows.push_back(static_cast<int32_t>((r * 5 + 2) % n));
            auto* drows = static_cast<int32_t*>(gpu->alloc(n * sizeof(int32_t)));
            gpu->to_device(drows, rows.data(), n * sizeof(int32_t));
            DeviceMatrix dout(*gpu, t, n, m);
            gpu->decode_norm_matmul(dx.view(), drows, dg.view(), 1e-5f, dw.view(), dout.view());
            const auto h = cpu_norm(x, g, n, k);
            std::vector<float> hp(n * k);
            for (int64_t r = 0; r < n; ++r) std::copy(h.begin() + rows[r] * k, h.begin() + (rows[r] + 1) * k, hp.begin() + r * k);
            const auto lm = cpu_matmul(hp, w, nullptr, n, m, k);
            expect_close(dout.download(), lm, t, "norm_matmul" + what, rms(lm));
            gpu->free(drows);
        }
    }
}

// One token through the GEMV at a 7B layer's widths, where its grid is thousands of blocks, more than fit on the
// device at once: the plain matmul, the residual add, and SwiGLU without a norm (the Epilogues mode). k 512, 2048
// and 4096 give 1, 2 and 4 warps per row in half precision; 4002 rows of 4096 (o_proj's shape: one wave of
// blocks) give one warp per row and two batches of loads per lane, and 1000 rows of 3000 a second batch only
// part full (both staged in shared memory); 2002 rows of 11008 (down's width) 8 warps per row, one part-full batch
// a lane (two in f32), and 1000 rows of 9000 a row whose last 32-vector slice is part full. The row counts leave
// the last block part empty.
TEST_P(CudaDecode, OneTokenLargeGrids) {
    const DType t = GetParam();
    uint32_t seed = 500;
    for (const auto& [m, k] : {std::pair<int64_t, int64_t>{20002, 512},
                               {6002, 2048},
                               {6002, 4096},
                               {4002, 4096},
                               {1000, 3000},
                               {2002, 11008},
                               {1000, 9000}}) {
        const std::string what = " m=" + std::to_string(m) + " k=" + std::to_string(k);
        const auto x = rounded(random_vec(k, seed++), t), w = rounded(random_vec(m * k, seed++, 0.05f), t);
        const auto res0 = rounded(random_vec(m, seed++), t);
        DeviceMatrix dx(*gpu, t, 1, k), dw(*gpu, t, m, k), dout(*gpu, t, 1, m), dres(*gpu, t, 1, m);
        dx.upload(x), dw.upload(w), dres.upload(res0);
        dout.poison();
        gpu->matmul(dx.view(), dw.view(), nullptr, dout.view());
        auto ref = cpu_matmul(x, w, nullptr, 1, m, k);
        expect_close(dout.download(), ref, t, "matmul" + what, rms(ref));
        gpu->decode_matmul_add(dx.view(), dw.view(), nullptr, dres.view());
        const double scale = rms(ref);
        for (int64_t i = 0; i < m; ++i) ref[i] += res0[i];
        expect_close(dres.download(), ref, t, "matmul_add" + what, scale);

        const int64_t ff = m / 2;  // gate rows [0, ff), up rows [ff, m)
        DeviceMatrix dff(*gpu, t, 1, ff);
        dff.poison();
        gpu->decode_gate_up(dx.view(), TensorView{}, 1e-5f, dw.view(), nullptr, dff.view());
        const auto gu = cpu_matmul(x, w, nullptr, 1, m, k);
        std::vector<float> sw(ff);
        cpu.swiglu(make_view(const_cast<float*>(gu.data()), DType::F32, 1, m), make_view(sw.data(), DType::F32, 1, ff));
        expect_close(dff.download(), sw, t, "gate_up" + what, rms(sw) + rms(gu));
    }
}

TEST_P(CudaDecode, QkvNormRopeAndKvWrite) {
    const DType t = GetParam();
    uint32_t seed = 300;
    // (heads, KV heads, head_dim, k, token counts): small GQA shapes, then a 7B-wide qkv of one token (6,144 RoPE
    // pairs over 4,096 columns: thousands of GEMV blocks).
    struct Case {
        int64_t n_head, n_head_kv, head_dim, k;
        std::vector<int64_t> ns;
    };
    std::vector<Case> cases;
    for (int64_t head_dim : {64, 128, 48})
        for (int64_t k : {256, 100, 102, 4104})  // 102: not whole 16-byte vectors in f32 either
            cases.push_back({6, 2, head_dim, k, {1, 2, 3, 4}});
    cases.push_back({64, 16, 128, 4096, {1}});
    for (const Case& c : cases) {
        const int64_t head_dim = c.head_dim, k = c.k;
        const AttentionShape s{c.n_head, c.n_head_kv, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim))};
        const int64_t n_ctx = 40, n_slot = 8, n_layer = 2, layer = 1, kv_dim = s.n_head_kv * head_dim;
        const int64_t qkv_dim = (s.n_head + 2 * s.n_head_kv) * head_dim;
        const std::vector<float> table = test::rope_table(n_ctx, head_dim);
        DeviceMatrix dtable(*gpu, DType::F32, n_ctx, head_dim);
        dtable.upload(table);
        for (int64_t n : c.ns) {
            std::vector<int32_t> pos, slots;
            for (int64_t i = 0; i < n; ++i) pos.push_back(static_cast<int32_t>((i * 13 + 5) % n_ctx)), slots.push_back(static_cast<int32_t>(7 - i));
            const auto x = rounded(random_vec(n * k, seed++), t), g = random_vec(k, seed++);
            const auto w = rounded(random_vec(qkv_dim * k, seed++, 0.05f), t), b = random_vec(qkv_dim, seed++);
            DeviceMatrix dx(*gpu, t, n, k, k + 8), dw(*gpu, t, qkv_dim, k), db(*gpu, DType::F32, 1, qkv_dim), dg(*gpu, DType::F32, 1, k);
            DeviceMatrix dqkv(*gpu, t, n, qkv_dim);
            DeviceMatrix dk(*gpu, t, n_slot * n_layer * n_ctx, kv_dim), dv(*gpu, t, n_slot * n_layer * n_ctx, kv_dim);
            dx.upload(x), dw.upload(w), db.upload(b), dg.upload(g);
            auto* dpos = static_cast<int32_t*>(gpu->alloc(n * 4));
            auto* dslots = static_cast<int32_t*>(gpu->alloc(n * 4));
            gpu->to_device(dpos, pos.data(), n * 4);
            gpu->to_device(dslots, slots.data(), n * 4);
            KvCache gkv{dk.data, dv.data, t, n_slot, n_layer, n_ctx, kv_dim};
            const StepTokens gtok{nullptr, dpos, dslots, n, nullptr, 0};
            const TensorView bv = db.view();
            // With the norm, and without it (the Epilogues mode: x already normalized).
            for (const bool norm : {true, false}) {
                dqkv.poison(), dk.poison(), dv.poison();
                gpu->decode_qkv(dx.view(), norm ? dg.view() : TensorView{}, 1e-5f, dw.view(), &bv, gtok, dtable.view(), s,
                                layer, gkv, dqkv.view());

                // CPU: norm, matmul + bias, rope_kv_write into an f32 cache.
                auto qkv = cpu_matmul(norm ? cpu_norm(x, g, n, k) : x, w, &b, n, qkv_dim, k);
                const double scale = rms(qkv);
                std::vector<float> ck(n_slot * n_layer * n_ctx * kv_dim, 0.0f), cv(ck.size(), 0.0f);
                KvCache ckv{ck.data(), cv.data(), DType::F32, n_slot, n_layer, n_ctx, kv_dim};
                const StepTokens ctok{nullptr, pos.data(), slots.data(), n, nullptr, 0};
                cpu.rope_kv_write(make_view(qkv.data(), DType::F32, n, qkv_dim), ctok,
                                  make_view(table.data(), DType::F32, n_ctx, head_dim), s, layer, ckv);

                const std::string what = " head_dim=" + std::to_string(head_dim) + " k=" + std::to_string(k) +
                                         " n=" + std::to_string(n) + (norm ? "" : " (no norm)");
                const auto got_qkv = dqkv.download();
                const auto got_k = dk.download(), got_v = dv.download();
                std::vector<float> gq, wq, gk, wk, gv, wv;
                for (int64_t i = 0; i < n; ++i) {
                    gq.insert(gq.end(), got_qkv.begin() + i * qkv_dim, got_qkv.begin() + i * qkv_dim + s.n_head * head_dim);
                    wq.insert(wq.end(), qkv.begin() + i * qkv_dim, qkv.begin() + i * qkv_dim + s.n_head * head_dim);
                    const int64_t row = ckv.offset(slots[i], layer, pos[i]);
                    gk.insert(gk.end(), got_k.begin() + row, got_k.begin() + row + kv_dim);
                    wk.insert(wk.end(), ck.begin() + row, ck.begin() + row + kv_dim);
                    gv.insert(gv.end(), got_v.begin() + row, got_v.begin() + row + kv_dim);
                    wv.insert(wv.end(), cv.begin() + row, cv.begin() + row + kv_dim);
                }
                expect_close(gq, wq, t, "q" + what, scale);
                expect_close(gk, wk, t, "k cache" + what, scale);
                expect_close(gv, wv, t, "v cache" + what, scale);
            }
            gpu->free(dpos);
            gpu->free(dslots);
        }
    }
}

// attention_out_proj with LAMINA_OPROJ_OVERLAP=1 (out_proj.cu: o_proj started beside the attention, waiting on its
// heads; opt-in) against attention + matmul on the same backend: the same attention output and the same o_proj bits
// (the kernel adds in the one-warp GEMV's order). Shapes: LLaMA-7B's (32 heads of 128, 4096 rows: on a 132-SM H100 or
// H200, 6 shared-memory and 2 register rows a warp), 1000 and 2000 rows with the shared-memory slots capped
// (LAMINA_OPROJ_SMEM_SLOTS: register rows only, then 2 + 2), GQA with a bias and few rows, heads of 16 (lanes past the
// row's end), and 8192 rows, which it does not take (attention + matmul). Several steps over two layers: the per-layer
// counters advance across calls. Outputs poisoned before each call. (f32 takes attention + matmul throughout.)
TEST_P(CudaDecode, AttentionOutProjMatchesSeparateOps) {
    const DType t = GetParam();
    struct Case {
        int64_t n_head, n_head_kv, head_dim, m;
        const char* smem_slots;
        bool bias;
    };
    uint32_t seed = 700;
    for (const Case& c : {Case{32, 32, 128, 4096, nullptr, false}, Case{32, 32, 128, 1000, "0", true},
                          Case{32, 32, 128, 2000, "2", false}, Case{8, 2, 64, 200, nullptr, true},
                          Case{4, 2, 16, 64, nullptr, false}, Case{16, 4, 128, 8192, nullptr, false}}) {
        const test::ScopedEnv on("LAMINA_OPROJ_OVERLAP", "1"), slots("LAMINA_OPROJ_SMEM_SLOTS", c.smem_slots);
        const AttentionShape s{c.n_head, c.n_head_kv, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
        const int64_t k = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim, n_ctx = 300, n_layer = 2;
        const int64_t qkv_dim = k + 2 * kv_dim;
        const std::string what = " heads " + std::to_string(c.n_head) + "x" + std::to_string(c.head_dim) + " m " +
                                 std::to_string(c.m) + " slots " + (c.smem_slots ? c.smem_slots : "default");
        DeviceMatrix kc(*gpu, t, n_layer * n_ctx, kv_dim), vc(*gpu, t, n_layer * n_ctx, kv_dim);
        kc.upload(rounded(random_vec(n_layer * n_ctx * kv_dim, seed++), t));
        vc.upload(rounded(random_vec(n_layer * n_ctx * kv_dim, seed++), t));
        const KvCache kv{kc.data, vc.data, t, 1, n_layer, n_ctx, kv_dim};
        std::vector<std::unique_ptr<DeviceMatrix>> wo;
        for (int64_t l = 0; l < n_layer; ++l) {
            wo.push_back(std::make_unique<DeviceMatrix>(*gpu, t, c.m, k));
            wo.back()->upload(rounded(random_vec(c.m * k, seed++, 0.05f), t));
        }
        DeviceMatrix bias(*gpu, DType::F32, 1, c.m);
        bias.upload(random_vec(c.m, seed++));
        const TensorView bias_view = bias.view();
        DeviceMatrix qkv(*gpu, t, 1, qkv_dim), attn(*gpu, t, 1, k), out(*gpu, t, 1, c.m);
        DeviceMatrix ref_attn(*gpu, t, 1, k), ref_out(*gpu, t, 1, c.m);
        auto* dpos = static_cast<int32_t*>(gpu->alloc(4));
        auto* dslot = static_cast<int32_t*>(gpu->alloc(4));
        const int32_t slot = 0;
        gpu->to_device(dslot, &slot, 4);
        const StepTokens tok{nullptr, dpos, dslot, 1, nullptr, 0};
        for (int32_t pos = 250; pos < 253; ++pos) {
            gpu->to_device(dpos, &pos, 4);
            for (int64_t l = 0; l < n_layer; ++l) {
                const std::string at = what + " position " + std::to_string(pos) + " layer " + std::to_string(l);
                qkv.upload(rounded(random_vec(qkv_dim, seed++), t));
                attn.poison(), out.poison(), ref_attn.poison(), ref_out.poison();
                gpu->attention_out_proj(qkv.view(), tok, s, l, kv, attn.view(), wo[l]->view(),
                                        c.bias ? &bias_view : nullptr, out.view());
                gpu->attention(qkv.view(), tok, s, l, kv, ref_attn.view());
                gpu->matmul(ref_attn.view(), wo[l]->view(), c.bias ? &bias_view : nullptr, ref_out.view());
                const auto a = attn.download(), ra = ref_attn.download(), o = out.download(), ro = ref_out.download();
                ASSERT_EQ(a, ra) << "attention" << at;
                ASSERT_EQ(o, ro) << "o_proj" << at;
                EXPECT_GT(rms(o), 0.0) << at;
            }
        }
        gpu->free(dpos);
        gpu->free(dslot);
    }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaDecode, ::testing::Values(DType::F16, DType::BF16, DType::F32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// The whole model: greedy tokens with each fused decode mode equal those of the plain ops (f32, where
// the only difference is summation order) on the tiny fixtures.
TEST(CudaDecodeModel, FusedDecodeMatchesPlainOps) {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
    using Mode = Backend::FusedDecode;
    for (const char* name : {"tiny_llama", "tiny_llama_b", "tiny_llama_c"}) {
        test::TempDir dir;
        test::build_from(test::data_dir() / name, dir.path(), DType::F32, 24, 20, 4);
        Engine engine(dir.path());
        const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41, 42}, {1, 7}, {1, 100, 200, 300}};
        GenerationParams p;
        p.max_new_tokens = 16;
        p.sampling.temperature = 0.0f;
        auto plain = [] {
            const test::ScopedEnv env("LAMINA_FUSED_DECODE", "0");  // the plain ops (backend/cuda/cuda_backend_impl.h)
            return make_cuda_backend(DType::F32);
        }();
        ASSERT_EQ(plain->fused_decode_mode(), Mode::None);
        Generator gp(engine, *plain, 3);
        const auto want = gp.generate(prompts, p);
        for (const auto& [value, mode] :
             {std::pair{"1", Mode::Full}, std::pair{"epilogues", Mode::Epilogues}, std::pair{"", Mode::Epilogues}}) {
            auto fused = [&] {
                const test::ScopedEnv env("LAMINA_FUSED_DECODE", *value ? value : nullptr);  // "": unset, the default
                return make_cuda_backend(DType::F32);
            }();
            ASSERT_EQ(fused->fused_decode_mode(), mode) << value;
            Generator gf(engine, *fused, 3);
            EXPECT_EQ(gf.generate(prompts, p), want) << name << " with LAMINA_FUSED_DECODE=" << value;
        }
    }
}

// A value of LAMINA_FUSED_DECODE that names no mode is refused with the variable named, not taken as a default.
TEST(CudaDecodeModel, UnknownFusedDecodeModeIsRefused) {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
    test::expect_backend_refuses_env("LAMINA_FUSED_DECODE", "full", "LAMINA_FUSED_DECODE=full");
}

// The kernel timeline (kernel_trace.cuh) exists only in -DLAMINA_KERNEL_TRACE=ON builds: elsewhere the variable
// must be refused, not ignored.
TEST(CudaDecodeModel, KernelTraceOutsideATraceBuildIsRefused) {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
#ifdef LAMINA_KERNEL_TRACE
    GTEST_SKIP() << "a -DLAMINA_KERNEL_TRACE=ON build takes the variable";
#endif
    test::expect_backend_refuses_env("LAMINA_KERNEL_TRACE", "/tmp/lamina_trace_test.csv", "-DLAMINA_KERNEL_TRACE=ON");
}

// The whole-step decode kernel against the separate ops, on random models: a prompt in KV slot 1 of 2, then
// 40 decode steps fed the same tokens (the separate ops' greedy choices), the logits compared at each
// step; then the last step again, which must give the same logits to the bit (no float atomics).
// Shapes: MHA at head_dim 128; GQA (3 query heads per KV head) at head_dim 64 with biases and tied
// embeddings; rows of down longer than one 32 KB stage (n_ff 16400, streamed in pieces); one head over a
// 2,000-token prompt (about 128 attention splits: the merge's scratch past its first column); 160 heads,
// more than there are blocks (several attention items per block); matrices of several stage-sized chunks per
// block (many_chunks).
struct WholeStepCase {
    const char* name;
    ModelConfig config;
    int prompt_len = 40;
};

ModelConfig whole_step_config(int64_t n_embd, int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t n_ff,
                              int64_t n_layer, bool biases) {
    ModelConfig c;
    c.n_vocab = 1000;
    c.n_embd = n_embd;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.n_head_kv = n_head_kv;
    c.head_dim = head_dim;
    c.n_ff = n_ff;
    c.n_ctx = 4096;
    c.rope_theta = 10000.0f;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = biases;
    c.attn_bias = biases;
    c.mlp_bias = biases;
    return c;
}

class CudaWholeStep : public ::testing::TestWithParam<std::tuple<WholeStepCase, DType>> {};

TEST_P(CudaWholeStep, MatchesSeparateOps) {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
    const auto& [tc, dtype] = GetParam();
    test::TempDir dir;
    BuildOptions o;
    o.dtype = dtype;
    o.max_batch_size = 2;
    o.max_input_len = 2048;
    o.max_output_len = 64;
    build_engine(test::random_spec(tc.config, 5), o, dir.path());
    const Engine engine(dir.path());
    auto ops_backend = make_cuda_backend(dtype);
    auto whole_backend = [&] {
        const test::ScopedEnv env("LAMINA_PERSISTENT_DECODE", "1");  // opt-in (backend/cuda/cuda_backend_impl.h)
        return make_cuda_backend(dtype);
    }();
    const int64_t V = tc.config.n_vocab, prompt_len = tc.prompt_len;
    const ModelLimits limits{2, prompt_len + 48, prompt_len};  // the prompt in one step
    LlamaModel ops(engine, *ops_backend, limits), whole(engine, *whole_backend, limits);

    std::vector<int32_t> ids(prompt_len), pos(prompt_len), slots(prompt_len, 1);
    for (int32_t i = 0; i < prompt_len; ++i) ids[i] = (i * 37 + 11) % static_cast<int32_t>(V), pos[i] = i;
    const std::vector<int32_t> last = {static_cast<int32_t>(prompt_len - 1)}, zero = {0}, slot = {1};
    std::vector<float> a(V), b(V);
    ops.forward(ids, pos, slots, last, a.data());
    whole.forward(ids, pos, slots, last, b.data());
    // bf16 keeps 8 bits of mantissa: the two summation orders drift apart further than in f16.
    const double tol = dtype == DType::F16 ? 1e-2 : 4e-2;
    int same_argmax = 0;
    const int steps = 40;
    std::vector<int32_t> id, p;
    for (int step = 0; step < steps; ++step) {
        id = {static_cast<int32_t>(std::max_element(a.begin(), a.end()) - a.begin())};
        p = {static_cast<int32_t>(prompt_len + step)};
        ops.forward(id, p, slot, zero, a.data());
        whole.forward(id, p, slot, zero, b.data());
        double diff = 0.0, scale = 0.0;
        for (int64_t j = 0; j < V; ++j) {
            ASSERT_TRUE(std::isfinite(b[j])) << tc.name << " step " << step << " logit " << j;
            diff = std::max(diff, std::abs(static_cast<double>(a[j]) - b[j]));
            scale = std::max(scale, std::abs(static_cast<double>(a[j])));
        }
        EXPECT_LE(diff, tol * scale) << tc.name << " step " << step;
        same_argmax += std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(b.begin(), b.end()) - b.begin();
    }
    EXPECT_GE(same_argmax, steps * 9 / 10) << tc.name;
    std::vector<float> again(V);
    whole.forward(id, p, slot, zero, again.data());  // the same step: rewrites the same k, v at p
    EXPECT_EQ(again, b) << tc.name << ": the whole-step kernel's logits differ between two runs of one step";
    EXPECT_EQ(ops.whole_step_kernels(), 0);
    EXPECT_GT(whole.whole_step_kernels(), 0) << tc.name << ": the whole-step kernel did not take this shape";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaWholeStep,
    ::testing::Combine(::testing::Values(WholeStepCase{"mha128", whole_step_config(256, 2, 2, 128, 688, 2, false)},
                                         WholeStepCase{"gqa64_bias_tied", whole_step_config(384, 6, 2, 64, 1000, 3, true)},
                                         WholeStepCase{"long_rows", whole_step_config(128, 2, 1, 64, 16400, 1, false)},
                                         WholeStepCase{"one_head_2k", whole_step_config(128, 1, 1, 128, 256, 1, false), 2000},
                                         WholeStepCase{"many_heads", whole_step_config(256, 160, 32, 64, 512, 1, false)},
                                         WholeStepCase{"many_chunks", whole_step_config(2048, 16, 16, 128, 5632, 1, false)}),
                       ::testing::Values(DType::F16, DType::BF16)),
    [](const auto& info) {
        return std::string(std::get<0>(info.param).name) + "_" + std::string(dtype_name(std::get<1>(info.param)));
    });

}  // namespace
}  // namespace lamina

#endif  // LAMINA_HAS_CUDA
