// Every CUDA op against the CPU reference on random inputs: odd sizes, a strided row, n_tokens = 1,
// poisoned outputs (NaN-filled before the op, so unwritten elements fail). Then whole models: the CUDA
// backend against the CPU backend and against Hugging Face's fixtures. Skipped without a GPU.
#ifdef LAMINA_HAS_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "../test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/error.h"
#include "cuda_test_util.h"
#include "runtime/generator.h"

namespace lamina {
namespace {

#define REQUIRE_GPU()                                                        \
    do {                                                                     \
        if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here"; \
    } while (0)

using test::random_vec;

using test::DeviceMatrix;
using test::expect_close;
using test::rms;
using test::rounded;

class CudaOps : public ::testing::TestWithParam<DType> {
protected:
    void SetUp() override {
        if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
        gpu = make_cuda_backend(GetParam());
    }
    std::unique_ptr<Backend> gpu;
    CpuBackend cpu;
};

TEST_P(CudaOps, RmsNormFusedAndUnfused) {
    const DType t = GetParam();
    // 100 rows: the plain norm's one-wave geometry (128 threads a row); 1200 rows of 4096: more rows than
    // resident blocks, so blocks walk rows with the next row's loads in flight.
    for (auto [rows, cols, stride] : {std::tuple{1, 4096, 4096},
                                      {5, 577, 600},
                                      {3, 64, 72},
                                      {2, 5000, 5000},
                                      {100, 4096, 4104},
                                      {1200, 4096, 4096}}) {
        const auto x = rounded(random_vec(rows * cols, 1), t), r0 = rounded(random_vec(rows * cols, 2), t);
        const auto w = random_vec(cols, 3);
        DeviceMatrix dx(*gpu, t, rows, cols, stride), dres(*gpu, t, rows, cols, stride), dout(*gpu, t, rows, cols, stride);
        DeviceMatrix dw(*gpu, DType::F32, 1, cols);
        dx.upload(x);
        dres.upload(r0);
        dw.upload(w);
        // CPU reference on the same rounded inputs: residual rounded to t after the add, as the GPU does.
        std::vector<float> res = r0, ref(rows * cols);
        for (size_t i = 0; i < res.size(); ++i) res[i] = x[i] + r0[i];
        res = rounded(res, t);
        cpu.rms_norm(make_view(res.data(), DType::F32, rows, cols), make_view(w.data(), DType::F32, 1, cols), 1e-5f,
                     make_view(ref.data(), DType::F32, rows, cols));
        gpu->rms_norm_fused_add(dres.view(), dx.view(), dw.view(), 1e-5f, dout.view());
        expect_close(dres.download(), res, DType::F32, "fused residual");
        expect_close(dout.download(), ref, t, "fused rms_norm rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
        DeviceMatrix dout2(*gpu, t, rows, cols, stride), dout3(*gpu, t, rows, cols, stride);
        gpu->rms_norm(dres.view(), dw.view(), 1e-5f, dout2.view());
        gpu->rms_norm_unfused(dres.view(), dw.view(), 1e-5f, dout3.view());
        expect_close(dout2.download(), ref, t, "rms_norm");
        expect_close(dout3.download(), ref, t, "unfused rms_norm");
    }
}

// The int8-output RMSNorm against its CPU twin. The GPU rounds y to the activation dtype before it quantizes,
// which moves a value by at most one step.
TEST_P(CudaOps, RmsNormInt8PerTokenAndPerTensor) {
    const DType t = GetParam();
    const int64_t rows = 4, cols = 1000;
    auto x = rounded(random_vec(rows * cols, 4), t);
    std::fill(x.begin() + 3 * cols, x.end(), 0.0f);  // an all-zero row: scale 0, every value 0
    const auto w = random_vec(cols, 5);
    DeviceMatrix dx(*gpu, t, rows, cols), dw(*gpu, DType::F32, 1, cols);
    dx.upload(x);
    dw.upload(w);
    auto* q = static_cast<int8_t*>(gpu->alloc(rows * cols));
    auto* scales = static_cast<float*>(gpu->alloc(rows * sizeof(float)));
    const TensorView cx = make_view(x.data(), DType::F32, rows, cols), cw = make_view(const_cast<float*>(w.data()), DType::F32, 1, cols);
    for (bool per_token : {true, false}) {
        const float tensor_scale = 20.0f;
        std::vector<int8_t> want(rows * cols), got(rows * cols);
        std::vector<float> want_scales(rows, -1.0f), got_scales(rows, -1.0f);
        if (per_token) {
            cpu.rms_norm_quant_per_token(cx, cw, 1e-6f, want.data(), want_scales.data());
            gpu->rms_norm_quant_per_token(dx.view(), dw.view(), 1e-6f, q, scales);
            gpu->to_host(got_scales.data(), scales, rows * sizeof(float));
        } else {
            cpu.rms_norm_quant_per_tensor(cx, cw, 1e-6f, tensor_scale, want.data());
            gpu->rms_norm_quant_per_tensor(dx.view(), dw.view(), 1e-6f, tensor_scale, q);
        }
        gpu->to_host(got.data(), q, got.size());
        int64_t moved = 0;
        for (int64_t r = 0; r < rows; ++r) {
            if (per_token) {
                EXPECT_NEAR(got_scales[r], want_scales[r], 1e-2f * want_scales[r] + 1e-12f) << "row " << r;
            }
            for (int64_t i = 0; i < cols; ++i) {
                EXPECT_NEAR(got[r * cols + i], want[r * cols + i], 1) << "row " << r << " col " << i;
                moved += got[r * cols + i] != want[r * cols + i];
            }
        }
        EXPECT_EQ(want_scales[3], per_token ? 0.0f : -1.0f);
        EXPECT_LT(moved, rows * cols / 10) << "most values must agree exactly";
    }
    gpu->free(q);
    gpu->free(scales);
}

TEST_P(CudaOps, MatmulGemvAndCublasLt) {
    const DType t = GetParam();
    // (k, n): cuBLASLt from 3 rows, the GEMV below; k = 16400 and 2050 (not whole 16-byte vectors in half
    // precision) give the GEMV 2-4 warps per row (split-K, decode_gemv.cu), as f32 at k = 4096 does.
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (int64_t k : {264, 67, 4096})
        for (int64_t n : {1, 3, 8, 9, 64}) shapes.emplace_back(k, n);
    for (int64_t k : {16400, 2050})
        for (int64_t n : {1, 2}) shapes.emplace_back(k, n);
    for (auto [k, n] : shapes) {
        const int64_t m = 301;
        const auto x = rounded(random_vec(n * k, 6), t), w = rounded(random_vec(m * k, 7, 0.05f), t);
        const auto bias = random_vec(m, 8);
        DeviceMatrix dx(*gpu, t, n, k), dw(*gpu, t, m, k), dout(*gpu, t, n, m), db(*gpu, DType::F32, 1, m);
        dx.upload(x);
        dw.upload(w);
        db.upload(bias);
        const TensorView bv = db.view();
        gpu->matmul(dx.view(), dw.view(), &bv, dout.view());
        std::vector<float> ref(n * m);
        const TensorView cbias = make_view(bias.data(), DType::F32, 1, m);
        cpu.matmul(make_view(x.data(), DType::F32, n, k), make_view(w.data(), DType::F32, m, k), &cbias,
                   make_view(ref.data(), DType::F32, n, m));
        expect_close(dout.download(), ref, t, "matmul n=" + std::to_string(n) + " k=" + std::to_string(k), rms(ref));
    }
}

// A KV cache of n_slot slots and n_ctx positions on both backends (zeroed on the CPU, f32; in t on the GPU,
// freed with the fixture) and the RoPE table on both.
struct CacheOnBoth {
    Backend* gpu;
    KvCache cpu_kv, gpu_kv;
    std::vector<float> ck, cv, table;
    DeviceMatrix dtable;
    CacheOnBoth(Backend* g, DType t, int64_t n_slot, int64_t n_ctx, const AttentionShape& s)
        : gpu(g),
          cpu_kv{nullptr, nullptr, DType::F32, n_slot, 1, n_ctx, s.n_head_kv * s.head_dim},
          gpu_kv{nullptr, nullptr, t, n_slot, 1, n_ctx, s.n_head_kv * s.head_dim},
          ck(cpu_kv.bytes() / 8, 0.0f),
          cv(ck.size(), 0.0f),
          table(test::rope_table(n_ctx, s.head_dim)),
          dtable(*g, DType::F32, n_ctx, s.head_dim) {
        cpu_kv.k = ck.data();
        cpu_kv.v = cv.data();
        gpu_kv.k = gpu->alloc(gpu_kv.bytes() / 2);
        gpu_kv.v = gpu->alloc(gpu_kv.bytes() / 2);
        dtable.upload(table);
    }
    ~CacheOnBoth() {
        gpu->free(gpu_kv.k);
        gpu->free(gpu_kv.v);
    }
    CacheOnBoth(const CacheOnBoth&) = delete;
    CacheOnBoth& operator=(const CacheOnBoth&) = delete;
};

// Attention through rope_kv_write + attention on both backends: prefill tiles (tensor cores for
// head_dim 64/128) and decode steps (split kernel), GQA, two sequences at different positions.
void rope_kv_write_and_attention(Backend* gpu, CpuBackend& cpu, DType t) {
    for (int64_t head_dim : {64, 128, 48}) {
        const AttentionShape s{8, 2, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim))};
        const int64_t n_ctx = 160, qkv_dim = (s.n_head + 2 * s.n_head_kv) * head_dim;
        CacheOnBoth c(gpu, t, 2, n_ctx, s);
        KvCache &cpu_kv = c.cpu_kv, &gpu_kv = c.gpu_kv;
        const std::vector<float>& table = c.table;
        DeviceMatrix& dtable = c.dtable;
        // Step 1: prefill 100 tokens of slot 0 and 30 of slot 1 (tiles of <= 64). Step 2: decode both.
        // Step 3: a second prefill chunk of each, starting mid-tile (positions 101.. and 31..). Steps 4 and 5:
        // decode one token (the attention's keys loaded before the PDL wait, its own after): positions 141 and
        // 34, each in its warp's first group of keys, with the group's keys past the end clamped to it.
        struct Step {
            std::vector<int32_t> pos, slots;
        };
        std::vector<Step> steps(5);
        for (int i = 0; i < 100; ++i) steps[0].pos.push_back(i), steps[0].slots.push_back(0);
        for (int i = 0; i < 30; ++i) steps[0].pos.push_back(i), steps[0].slots.push_back(1);
        steps[1] = {{100, 30}, {0, 1}};
        for (int i = 101; i < 141; ++i) steps[2].pos.push_back(i), steps[2].slots.push_back(0);
        for (int i = 31; i < 34; ++i) steps[2].pos.push_back(i), steps[2].slots.push_back(1);
        steps[3] = {{141}, {0}};
        steps[4] = {{34}, {1}};
        uint32_t seed = 10;
        for (const Step& st : steps) {
            const auto n = static_cast<int64_t>(st.pos.size());
            std::vector<int32_t> tiles;
            for (int64_t i = 0; i < n && n > 2;) {  // the model's tiling rule (llama.cpp: upload_step)
                int64_t e = i + 1;
                while (e < n && e - i < kAttentionTileRows && st.slots[e] == st.slots[i] && st.pos[e] == st.pos[e - 1] + 1) ++e;
                tiles.insert(tiles.end(), {int32_t(i), int32_t(e - i), st.slots[i], st.pos[i]});
                i = e;
            }
            const auto qkv = rounded(random_vec(n * qkv_dim, seed++), t);
            auto cq = qkv;
            auto* dpos = static_cast<int32_t*>(gpu->alloc(n * 4));
            auto* dslots = static_cast<int32_t*>(gpu->alloc(n * 4));
            auto* dtiles = static_cast<int32_t*>(gpu->alloc(std::max<size_t>(4, tiles.size() * 4)));
            gpu->to_device(dpos, st.pos.data(), n * 4);
            gpu->to_device(dslots, st.slots.data(), n * 4);
            if (!tiles.empty()) gpu->to_device(dtiles, tiles.data(), tiles.size() * 4);
            const StepTokens ctok{nullptr, st.pos.data(), st.slots.data(), n, nullptr, 0};
            const StepTokens gtok{nullptr, dpos, dslots, n, dtiles, static_cast<int64_t>(tiles.size() / 4)};
            DeviceMatrix dqkv(*gpu, t, n, qkv_dim), dout(*gpu, t, n, s.n_head * head_dim);
            dqkv.upload(qkv);
            cpu.rope_kv_write(make_view(cq.data(), DType::F32, n, qkv_dim), ctok, make_view(table.data(), DType::F32, n_ctx, head_dim), s, 0, cpu_kv);
            gpu->rope_kv_write(dqkv.view(), gtok, dtable.view(), s, 0, gpu_kv);
            expect_close(dqkv.download(), cq, t, "rope");
            std::vector<float> ref(n * s.n_head * head_dim);
            cpu.attention(make_view(cq.data(), DType::F32, n, qkv_dim), ctok, s, 0, cpu_kv, make_view(ref.data(), DType::F32, n, s.n_head * head_dim));
            gpu->attention(dqkv.view(), gtok, s, 0, gpu_kv, dout.view());
            // The outputs average values of standard deviation 1: that is the scale of their error.
            expect_close(dout.download(), ref, t,
                         "attention head_dim " + std::to_string(head_dim) + " tokens " + std::to_string(n), 1.0);
            gpu->free(dpos);
            gpu->free(dslots);
            gpu->free(dtiles);
        }
    }
}

TEST_P(CudaOps, RopeKvWriteAndAttention) {
    rope_kv_write_and_attention(gpu.get(), cpu, GetParam());
}

// A long cache and few heads: a one-token decode step cut into more than 32 splits (46 here: the merge takes
// them 32 at a time, the second batch part empty), for a head of 128 and one of 40 (warps part past the head).
void decode_attention_over_many_splits(Backend* gpu, CpuBackend& cpu, DType t) {
    for (int64_t head_dim : {128, 40}) {
        const AttentionShape s{2, 1, head_dim, 2.0f / std::sqrt(static_cast<float>(head_dim))};
        const int64_t n_ctx = 1500, filled = 1450, qkv_dim = (s.n_head + 2 * s.n_head_kv) * head_dim;
        CacheOnBoth c(gpu, t, 1, n_ctx, s);
        KvCache &cpu_kv = c.cpu_kv, &gpu_kv = c.gpu_kv;
        const std::vector<float>& table = c.table;
        DeviceMatrix& dtable = c.dtable;
        // Positions 0..filled-1 written to the cache (no attention), then two one-token decode steps.
        uint32_t seed = 40;
        for (int64_t first : {int64_t{0}, filled, filled + 1}) {
            const int64_t n = first == 0 ? filled : 1;
            std::vector<int32_t> pos(static_cast<size_t>(n)), slots(static_cast<size_t>(n), 0);
            for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(first + i);
            auto cq = rounded(random_vec(n * qkv_dim, seed++), t);
            auto* dpos = static_cast<int32_t*>(gpu->alloc(n * 4));
            auto* dslots = static_cast<int32_t*>(gpu->alloc(n * 4));
            gpu->to_device(dpos, pos.data(), n * 4);
            gpu->to_device(dslots, slots.data(), n * 4);
            const StepTokens ctok{nullptr, pos.data(), slots.data(), n, nullptr, 0};
            const StepTokens gtok{nullptr, dpos, dslots, n, nullptr, 0};
            DeviceMatrix dqkv(*gpu, t, n, qkv_dim), dout(*gpu, t, n, s.n_head * head_dim);
            dqkv.upload(cq);
            cpu.rope_kv_write(make_view(cq.data(), DType::F32, n, qkv_dim), ctok, make_view(table.data(), DType::F32, n_ctx, head_dim), s, 0, cpu_kv);
            gpu->rope_kv_write(dqkv.view(), gtok, dtable.view(), s, 0, gpu_kv);
            if (n == 1) {
                std::vector<float> ref(s.n_head * head_dim);
                cpu.attention(make_view(cq.data(), DType::F32, 1, qkv_dim), ctok, s, 0, cpu_kv, make_view(ref.data(), DType::F32, 1, s.n_head * head_dim));
                gpu->attention(dqkv.view(), gtok, s, 0, gpu_kv, dout.view());
                expect_close(dout.download(), ref, t,
                             "attention head_dim " + std::to_string(head_dim) + " position " + std::to_string(first),
                             1.0);
            }
            gpu->free(dpos);
            gpu->free(dslots);
        }
    }
}

TEST_P(CudaOps, DecodeAttentionOverManySplits) {
    decode_attention_over_many_splits(gpu.get(), cpu, GetParam());
}

TEST_P(CudaOps, SmallOps) {
    const DType t = GetParam();
    const int64_t n = 3, ff = 1001, vocab = 5003;
    const auto gu = rounded(random_vec(n * 2 * ff, 20), t);
    DeviceMatrix dgu(*gpu, t, n, 2 * ff), dff(*gpu, t, n, ff);
    dgu.upload(gu);
    gpu->swiglu(dgu.view(), dff.view());
    std::vector<float> ref(n * ff);
    cpu.swiglu(make_view(gu.data(), DType::F32, n, 2 * ff), make_view(ref.data(), DType::F32, n, ff));
    expect_close(dff.download(), ref, t, "swiglu");

    // acc += x, on strided rows
    const auto acc0 = rounded(random_vec(n * ff, 22), t), x = rounded(random_vec(n * ff, 23), t);
    DeviceMatrix dacc(*gpu, t, n, ff, ff + 8), dx(*gpu, t, n, ff, ff + 16);
    dacc.upload(acc0), dx.upload(x);
    gpu->add(dacc.view(), dx.view());
    std::vector<float> sum = acc0;
    cpu.add(make_view(sum.data(), DType::F32, n, ff), make_view(x.data(), DType::F32, n, ff));
    expect_close(dacc.download(), sum, t, "add");

    auto logits = rounded(random_vec(n * vocab, 21), t);
    logits[1 * vocab + 77] = 50.0f;  // a tie: the first index must win
    logits[1 * vocab + 4000] = 50.0f;
    DeviceMatrix dl(*gpu, t, n, vocab);
    dl.upload(logits);
    auto* ids = static_cast<int32_t*>(gpu->alloc(n * 4));
    gpu->argmax_rows(dl.view(), ids);
    std::vector<int32_t> got(n), want(n);
    gpu->to_host(got.data(), ids, n * 4);
    cpu.argmax_rows(make_view(logits.data(), DType::F32, n, vocab), want.data());
    EXPECT_EQ(got, want);
    EXPECT_EQ(got[1], 77);
    gpu->free(ids);
}

// The one-block-a-row kernels at the 16-byte-vector width (4096 and 8008 columns, rows strided by 8 more) and at
// one element (1001 columns): embedding gather, row gather and argmax against the CPU, outputs poisoned. Argmax
// ties sit in one vector, across vectors and at both ends of a row; the first index must win.
TEST_P(CudaOps, RowKernelsAtBothWidths) {
    const DType t = GetParam();
    for (const int64_t cols : {int64_t{4096}, int64_t{8008}, int64_t{1001}}) {
        SCOPED_TRACE("cols " + std::to_string(cols));
        const int64_t rows = 37, stride = cols + 8, n = 3;
        auto table = rounded(random_vec(rows * cols, 30), t);
        table[0 * cols + cols - 1] = 50.0f;  // row 0: the maximum is the last element
        for (int64_t j : {int64_t{3}, int64_t{5}, cols - 2}) table[1 * cols + j] = 50.0f;  // one vector, and across
        for (int64_t j : {int64_t{0}, cols - 1}) table[2 * cols + j] = 50.0f;              // both ends
        DeviceMatrix dtable(*gpu, t, rows, cols, stride);
        dtable.upload(table);
        const std::vector<int32_t> ids = {36, 0, 17};
        auto* dids = static_cast<int32_t*>(gpu->alloc(n * sizeof(int32_t)));
        gpu->to_device(dids, ids.data(), n * sizeof(int32_t));
        std::vector<float> want(static_cast<size_t>(n * cols));
        for (int64_t r = 0; r < n; ++r) std::copy_n(table.begin() + ids[r] * cols, cols, want.begin() + r * cols);

        StepTokens tok;
        tok.ids = dids;
        tok.n_tokens = n;
        DeviceMatrix demb(*gpu, t, n, cols, stride);
        gpu->embedding(dtable.view(), tok, demb.view());
        EXPECT_EQ(demb.download(), want) << "embedding";
        DeviceMatrix dgather(*gpu, t, n, cols);
        gpu->gather_rows(dtable.view(), dids, n, dgather.view());
        EXPECT_EQ(dgather.download(), want) << "gather_rows";

        auto* dbest = static_cast<int32_t*>(gpu->alloc(rows * sizeof(int32_t)));
        gpu->argmax_rows(dtable.view(), dbest);
        std::vector<int32_t> got(rows), best(rows);
        gpu->to_host(got.data(), dbest, rows * sizeof(int32_t));
        cpu.argmax_rows(make_view(table.data(), DType::F32, rows, cols), best.data());
        EXPECT_EQ(got, best) << "argmax";
        EXPECT_EQ(got[0], cols - 1);
        EXPECT_EQ(got[1], 3);
        EXPECT_EQ(got[2], 0);
        gpu->free(dbest);
        gpu->free(dids);
    }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaOps, ::testing::Values(DType::F16, DType::BF16, DType::F32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Whole model: the HF tiny fixtures on CUDA in f32 must meet the same bar as the CPU (rel < 1e-4,
// identical greedy), and an f16 engine's greedy tokens must equal the CPU's on the same engine.
TEST(CudaModel, TinyFixturesMatchTransformersInF32) {
    REQUIRE_GPU();
    for (const char* name : {"tiny_llama", "tiny_llama_b", "tiny_llama_c"}) {
        const auto dir = test::data_dir() / name;
        const auto ref = test::read_json(dir / "reference.json");
        test::TempDir eng;
        test::build_from(dir, eng.path(), DType::F32, 64, 64);
        Engine engine(eng.path());
        auto gpu = make_cuda_backend(DType::F32);
        Generator gen(engine, *gpu, 1);
        for (const auto& c : ref["cases"]) {
            const auto ids = c["input_ids"].get<std::vector<int32_t>>();
            const auto logits = gen.prompt_logits(ids);
            const auto expected = c["logits"].get<std::vector<std::vector<float>>>();
            for (size_t p = 0; p < ids.size(); ++p)
                EXPECT_LT(test::rel_error(logits.data() + p * expected[p].size(), expected[p].data(), expected[p].size()), 1e-4)
                    << name << " position " << p;
            GenerationParams params;
            params.max_new_tokens = 32;
            params.sampling.temperature = 0.0f;
            EXPECT_EQ(gen.generate({ids}, params)[0], c["greedy_ids"].get<std::vector<int32_t>>()) << name;
        }
    }
}

// Decode graphs are captured per model: models on one backend, one after another or side by side, each
// replay their own (with their own buffers and weights), so each gives what it gives on a backend of its own.
TEST(CudaModel, ModelsSharingABackendReplayTheirOwnGraphs) {
    REQUIRE_GPU();
    const std::vector<int32_t> prompt = {1, 40, 41, 42};
    GenerationParams p;
    p.max_new_tokens = 8;
    p.sampling.temperature = 0.0f;
    std::vector<std::unique_ptr<test::TempDir>> dirs;
    std::vector<std::unique_ptr<Engine>> engines;
    std::vector<std::vector<int32_t>> alone;
    for (const char* name : {"tiny_llama", "tiny_llama_b"}) {
        dirs.push_back(std::make_unique<test::TempDir>());
        test::build_from(test::data_dir() / name, dirs.back()->path(), DType::F16, 24, 20);
        engines.push_back(std::make_unique<Engine>(dirs.back()->path()));
        auto own = make_cuda_backend(DType::F16);
        alone.push_back(Generator(*engines.back(), *own, 1).generate({prompt, prompt}, p)[1]);
    }
    ASSERT_NE(alone[0], alone[1]);  // two models that tell each other apart
    auto shared = make_cuda_backend(DType::F16);
    for (int round = 0; round < 2; ++round) {  // one after another (a freed model's address may come back)
        for (size_t e = 0; e < engines.size(); ++e)
            EXPECT_EQ(Generator(*engines[e], *shared, 1).generate({prompt, prompt}, p)[1], alone[e]) << "engine " << e;
    }
    Generator a(*engines[0], *shared, 1), b(*engines[1], *shared, 1);  // side by side
    for (int round = 0; round < 2; ++round) {
        EXPECT_EQ(a.generate({prompt, prompt}, p)[1], alone[0]);
        EXPECT_EQ(b.generate({prompt, prompt}, p)[1], alone[1]);
    }
}

// Sampled generation end to end: on CUDA the rows are sampled on the GPU (forward_sample, graph replay
// then sample_rows); in f32 the logits equal the CPU's to rounding, so the same seeds draw the same tokens.
TEST(CudaModel, SampledGenerationMatchesCpuInF32) {
    REQUIRE_GPU();
    test::TempDir eng;
    test::build_from(test::data_dir() / "tiny_llama", eng.path(), DType::F32, 64, 48, 4);
    Engine engine(eng.path());
    auto gpu = make_cuda_backend(DType::F32);
    auto cpu = make_cpu_backend();
    Generator g_gpu(engine, *gpu, 3), g_cpu(engine, *cpu, 3);
    GenerationParams params;
    params.max_new_tokens = 16;
    params.sampling.temperature = 0.8f;
    params.sampling.top_k = 20;
    params.sampling.top_p = 0.9f;
    params.sampling.repetition_penalty = 1.2f;
    params.sampling.seed = 7;
    const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41, 42}, {1, 5}, {1, 77, 78, 300}};
    EXPECT_EQ(g_gpu.generate(prompts, params), g_cpu.generate(prompts, params));
}

// Prefill steps of a shape seen before run from a captured graph that reads the step's ids, positions
// and tiles from device buffers: the first run is direct, the second is captured, the third replays.
// Each must compute its own prompt (same shape, different tokens), bit for bit as the direct run.
TEST(CudaModel, PrefillGraphReplayReadsEachStepsTokens) {
    REQUIRE_GPU();
    test::TempDir eng;
    test::build_from(test::data_dir() / "tiny_llama", eng.path(), DType::F16, 96, 16, 2);
    Engine engine(eng.path());
    auto gpu = make_cuda_backend(DType::F16);
    auto cpu = make_cpu_backend();
    Generator g_gpu(engine, *gpu, 2), g_cpu(engine, *cpu, 2);
    std::vector<int32_t> a(70), b(70);  // two prefill tiles each
    for (int i = 0; i < 70; ++i) a[i] = 1 + (i * 37) % 380, b[i] = 1 + (i * 11 + 5) % 380;
    const auto a1 = g_gpu.prompt_logits(a);
    const auto b2 = g_gpu.prompt_logits(b);
    const auto a3 = g_gpu.prompt_logits(a);
    EXPECT_EQ(a1, a3) << "replayed prefill differs from the direct run";
    const auto bc = g_cpu.prompt_logits(b);
    EXPECT_LT(test::rel_error(b2.data(), bc.data(), bc.size()), 1e-2);
    EXPECT_GT(test::rel_error(a1.data(), b2.data(), bc.size()), 1e-2) << "the two prompts must give different logits";
}

TEST(CudaModel, HalfEnginesAgreeWithCpu) {
    REQUIRE_GPU();
    for (DType t : {DType::F16, DType::BF16}) {
        test::TempDir eng;
        test::build_from(test::data_dir() / "tiny_llama", eng.path(), t, 64, 48, 4);
        Engine engine(eng.path());
        auto gpu = make_cuda_backend(t);
        auto cpu = make_cpu_backend();
        Generator g_gpu(engine, *gpu, 4), g_cpu(engine, *cpu, 4);
        const std::vector<int32_t> prompt = {1, 40, 41, 42, 300, 7, 9, 100, 200};
        const auto lg = g_gpu.prompt_logits(prompt), lc = g_cpu.prompt_logits(prompt);
        // f16/bf16 activations on the GPU vs f32 on the CPU: one rounding per op, ~30 ops deep.
        EXPECT_LT(test::rel_error(lg.data(), lc.data(), lc.size()), t == DType::F16 ? 1e-2 : 4e-2) << dtype_name(t);
        GenerationParams params;
        params.max_new_tokens = 24;
        params.sampling.temperature = 0.0f;
        const std::vector<std::vector<int32_t>> prompts = {prompt, {1, 5}, {1, 77, 78}};
        const auto a = g_gpu.generate(prompts, params), b = g_cpu.generate(prompts, params);
        int same = 0, total = 0;
        for (size_t i = 0; i < a.size(); ++i)
            for (size_t j = 0; j < a[i].size(); ++j, ++total) {
                if (a[i][j] != b[i][j]) break;
                ++same;
            }
        std::printf("%s: %d/%d greedy tokens identical before the first divergence\n", std::string(dtype_name(t)).c_str(), same, total);
        EXPECT_EQ(a[0][0], b[0][0]) << "the first greedy token must agree";
    }
}

TEST(CudaModel, SmolLM2GreedyOnGpu) {
    REQUIRE_GPU();
    LAMINA_REQUIRE_SMOLLM2();
    const auto ref = test::read_json(test::data_dir() / "smollm2_greedy.json");
    for (DType t : {DType::F32, DType::F16}) {
        test::TempDir eng;
        test::build_from(test::smollm2_gguf(), eng.path(), t, 256, 64);
        Engine engine(eng.path());
        auto gpu = make_cuda_backend(t);
        Generator gen(engine, *gpu, 1);
        int identical = 0;
        for (const auto& c : ref["cases"]) {
            GenerationParams params;
            params.max_new_tokens = 32;
            params.sampling.temperature = 0.0f;
            params.stop_ids = {2};
            const auto out = gen.generate({c["input_ids"].get<std::vector<int32_t>>()}, params)[0];
            identical += out == c["greedy_ids"].get<std::vector<int32_t>>();
        }
        std::printf("SmolLM2 %s on CUDA: %d/%zu greedy continuations identical to HF fp32\n",
                    std::string(dtype_name(t)).c_str(), identical, ref["cases"].size());
        if (t == DType::F32) EXPECT_EQ(identical, static_cast<int>(ref["cases"].size()));
        else EXPECT_GE(identical, 3);
    }
}

}  // namespace
}  // namespace lamina

#endif  // LAMINA_HAS_CUDA
