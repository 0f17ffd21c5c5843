// The fused ops (Backend::matmul_swiglu, matmul_rope_kv_write; on CUDA the decode GEMV with the op in its
// epilogue, backend/cuda/decode_gemv.cu) against their CPU twins, on random inputs: 1 to 4 tokens (and 8, past
// the fused kernels), vectorized and scalar widths, biases, a GQA RoPE + KV write at scattered slots and
// positions, poisoned outputs. Then the CUDA model with the fused ops against the same model on the plain ops.
// Skipped without a GPU.
#ifdef LAMINA_HAS_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "../parallel/tp_test_util.h"
#include "../test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_test_util.h"
#include "build/engine_writer.h"
#include "core/error.h"
#include "runtime/model_runner.h"
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
    // The CPU twin of matmul_swiglu: out = swiglu(x @ w^T + b), and the gate/up product for the error scale.
    std::vector<float> cpu_matmul_swiglu(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>* b,
                                         int64_t n, int64_t ff, int64_t k, std::vector<float>& gu) {
        gu.assign(n * 2 * ff, 0.0f);
        std::vector<float> out(n * ff);
        const TensorView bv = b ? make_view(const_cast<float*>(b->data()), DType::F32, 1, 2 * ff) : TensorView{};
        cpu.matmul_swiglu(make_view(const_cast<float*>(x.data()), DType::F32, n, k),
                          make_view(const_cast<float*>(w.data()), DType::F32, 2 * ff, k), b ? &bv : nullptr,
                          make_view(gu.data(), DType::F32, n, 2 * ff), make_view(out.data(), DType::F32, n, ff));
        return out;
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

TEST_P(CudaDecode, MatmulSwiGlu) {
    const DType t = GetParam();
    uint32_t seed = 100;
    // 198, 2050: not a whole number of 16-byte vectors in half precision; 4104 and 2050 give the GEMV 2-4 warps
    // per unit (split-K). 8 tokens: past the fused kernel, the plain ops.
    for (int64_t k : {512, 200, 198, 4104, 2050}) {
        for (int64_t n : {1, 2, 3, 4, 8}) {
            const int64_t ff = 173;
            const auto x = rounded(random_vec(n * k, seed++), t);
            const auto wgu = rounded(random_vec(2 * ff * k, seed++, 0.05f), t), bgu = random_vec(2 * ff, seed++);
            DeviceMatrix dx(*gpu, t, n, k, k + 8), dwgu(*gpu, t, 2 * ff, k), dbgu(*gpu, DType::F32, 1, 2 * ff);
            DeviceMatrix dgu(*gpu, t, n, 2 * ff), dff(*gpu, t, n, ff);
            dx.upload(x), dwgu.upload(wgu), dbgu.upload(bgu);
            dff.poison();
            const TensorView bguv = dbgu.view();
            gpu->matmul_swiglu(dx.view(), dwgu.view(), &bguv, dgu.view(), dff.view());
            std::vector<float> gu;
            const auto sw = cpu_matmul_swiglu(x, wgu, &bgu, n, ff, k, gu);
            expect_close(dff.download(), sw, t, "matmul_swiglu n=" + std::to_string(n) + " k=" + std::to_string(k),
                         rms(sw) + rms(gu));
        }
    }
}

// One token through the GEMV at a 7B layer's widths, where its grid is thousands of blocks, more than fit on the
// device at once: the plain matmul and matmul_swiglu. k 512, 2048 and 4096 give 1, 2 and 4 warps per row in half
// precision; 4002 rows of 4096 (o_proj's shape: one wave of blocks) give one warp per row and two batches of loads
// per lane, and 1000 rows of 3000 a second batch only part full (both staged in shared memory); 2002 rows of 11008
// (down's width) 8 warps per row, one part-full batch a lane (two in f32), and 1000 rows of 9000 a row whose last
// 32-vector slice is part full. The row counts leave the last block part empty.
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
        DeviceMatrix dx(*gpu, t, 1, k), dw(*gpu, t, m, k), dout(*gpu, t, 1, m);
        dx.upload(x), dw.upload(w);
        dout.poison();
        gpu->matmul(dx.view(), dw.view(), nullptr, dout.view());
        const auto ref = cpu_matmul(x, w, nullptr, 1, m, k);
        expect_close(dout.download(), ref, t, "matmul" + what, rms(ref));

        const int64_t ff = m / 2;  // gate rows [0, ff), up rows [ff, m)
        DeviceMatrix dgu(*gpu, t, 1, m), dff(*gpu, t, 1, ff);
        dff.poison();
        gpu->matmul_swiglu(dx.view(), dw.view(), nullptr, dgu.view(), dff.view());
        std::vector<float> gu;
        const auto sw = cpu_matmul_swiglu(x, w, nullptr, 1, ff, k, gu);
        expect_close(dff.download(), sw, t, "matmul_swiglu" + what, rms(sw) + rms(gu));
    }
}

TEST_P(CudaDecode, MatmulRopeKvWrite) {
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
            cases.push_back({6, 2, head_dim, k, {1, 2, 3, 4, 8}});
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
            const auto x = rounded(random_vec(n * k, seed++), t);
            const auto w = rounded(random_vec(qkv_dim * k, seed++, 0.05f), t), b = random_vec(qkv_dim, seed++);
            DeviceMatrix dx(*gpu, t, n, k, k + 8), dw(*gpu, t, qkv_dim, k), db(*gpu, DType::F32, 1, qkv_dim);
            DeviceMatrix dqkv(*gpu, t, n, qkv_dim);
            DeviceMatrix dk(*gpu, t, n_slot * n_layer * n_ctx, kv_dim), dv(*gpu, t, n_slot * n_layer * n_ctx, kv_dim);
            dx.upload(x), dw.upload(w), db.upload(b);
            auto* dpos = static_cast<int32_t*>(gpu->alloc(n * 4));
            auto* dslots = static_cast<int32_t*>(gpu->alloc(n * 4));
            gpu->to_device(dpos, pos.data(), n * 4);
            gpu->to_device(dslots, slots.data(), n * 4);
            KvCache gkv{dk.data, dv.data, t, n_slot, n_layer, n_ctx, kv_dim};
            const StepTokens gtok{nullptr, dpos, dslots, n, nullptr, 0};
            const TensorView bv = db.view();
            {
                dqkv.poison(), dk.poison(), dv.poison();
                gpu->matmul_rope_kv_write(dx.view(), dw.view(), &bv, gtok, dtable.view(), s, layer, gkv, dqkv.view());

                // The CPU twin, into an f32 cache.
                std::vector<float> qkv(n * qkv_dim);
                std::vector<float> ck(n_slot * n_layer * n_ctx * kv_dim, 0.0f), cv(ck.size(), 0.0f);
                KvCache ckv{ck.data(), cv.data(), DType::F32, n_slot, n_layer, n_ctx, kv_dim};
                const StepTokens ctok{nullptr, pos.data(), slots.data(), n, nullptr, 0};
                const TensorView cb = make_view(const_cast<float*>(b.data()), DType::F32, 1, qkv_dim);
                cpu.matmul_rope_kv_write(make_view(const_cast<float*>(x.data()), DType::F32, n, k),
                                         make_view(const_cast<float*>(w.data()), DType::F32, qkv_dim, k), &cb, ctok,
                                         make_view(const_cast<float*>(table.data()), DType::F32, n_ctx, head_dim), s,
                                         layer, ckv, make_view(qkv.data(), DType::F32, n, qkv_dim));
                const double scale = rms(cpu_matmul(x, w, &b, n, qkv_dim, k));

                const std::string what = " head_dim=" + std::to_string(head_dim) + " k=" + std::to_string(k) +
                                         " n=" + std::to_string(n);
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


INSTANTIATE_TEST_SUITE_P(Dtypes, CudaDecode, ::testing::Values(DType::F16, DType::BF16, DType::F32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// The whole model on the fused ops against the same engine on the plain ops they compose (a model that reports
// its intermediates takes the plain ops): the logits of a prompt and of 12 decode steps of 1-4 sequences, f32
// activations, where only the order of sums differs.
TEST(CudaDecodeModel, FusedOpsMatchPlainOps) {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
    auto gpu = make_cuda_backend(DType::F32);
    for (const char* name : {"tiny_llama", "tiny_llama_b", "tiny_llama_c"}) {
        test::TempDir dir;
        test::build_from(test::data_dir() / name, dir.path(), DType::F32, 24, 20, 4);
        Engine engine(dir.path());
        const ModelLimits limits{4, 64, 64};
        ModelRunner fused(engine, *gpu, limits), plain(engine, *gpu, limits);
        plain.set_on_intermediate([](const std::string&, const TensorView&) {});
        const int64_t n_vocab = engine.config().n_vocab;
        for (int64_t batch = 1; batch <= 4; ++batch) {
            std::vector<int32_t> ids, pos, slots, rows;
            for (int64_t s = 0; s < batch; ++s)
                for (int32_t p = 0; p < 5; ++p) {
                    rows.push_back(static_cast<int32_t>(ids.size()));
                    ids.push_back(static_cast<int32_t>((7 * s + 3 * p + 1) % n_vocab));
                    pos.push_back(p);
                    slots.push_back(static_cast<int32_t>(s));
                }
            for (int step = 0; step <= 12; ++step) {
                std::vector<float> a(rows.size() * n_vocab), b(rows.size() * n_vocab);
                const StepInput in{step == 0 ? StepKind::Prefill : StepKind::Decode, ids, pos, slots, rows};
                fused.forward(in, a.data());
                plain.forward(in, b.data());
                test::expect_close(a, b, DType::F32, std::string(name) + " batch " + std::to_string(batch) + " step " +
                                                         std::to_string(step), test::rms(b));
                // Next: one token a sequence at its next position (ids from the plain logits' argmax).
                std::vector<int32_t> next_ids, next_pos, next_slots, next_rows;
                for (int64_t s = 0; s < batch; ++s) {
                    const size_t r = rows.size() - static_cast<size_t>(batch) + static_cast<size_t>(s);
                    const float* row = b.data() + r * n_vocab;
                    next_ids.push_back(static_cast<int32_t>(std::max_element(row, row + n_vocab) - row));
                    next_pos.push_back(pos[static_cast<size_t>(rows[r])] + 1);
                    next_slots.push_back(static_cast<int32_t>(s));
                    next_rows.push_back(static_cast<int32_t>(s));
                }
                ids = next_ids, pos = next_pos, slots = next_slots, rows = next_rows;
            }
        }
    }
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

}  // namespace
}  // namespace lamina

#endif  // LAMINA_HAS_CUDA
