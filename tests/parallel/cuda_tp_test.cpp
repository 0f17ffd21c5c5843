// Tensor parallelism on GPUs through NCCL: a tp N engine on N CUDA ranks reproduces the tp 1 engine on
// one GPU (logits at every prompt position, greedy continuations of batched prompts). Each case is skipped
// when the machine has fewer GPUs than its ranks (CI has none; the device tool's multi-GPU kinds run them:
// `bash bench/gpu_bench.sh tp`).
#if defined(LAMINA_HAS_CUDA) && defined(LAMINA_HAS_NCCL)

#include <gtest/gtest.h>

#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "runtime/generator.h"
#include "tp_test_util.h"

namespace lamina {
namespace {

struct CudaTpCase {
    const char* name;
    std::function<ModelSpec()> spec;
    int64_t tp_size;
    DType dtype;
    double tol;  // max |tp - tp1| over a row, relative to the row's largest |logit|
};

class CudaTpMatchesOneGpu : public ::testing::TestWithParam<CudaTpCase> {};

TEST_P(CudaTpMatchesOneGpu, PromptLogitsAndGreedyText) {
    const CudaTpCase& p = GetParam();
    if (cuda_device_count() < p.tp_size)
        GTEST_SKIP() << p.tp_size << " GPUs needed, " << cuda_device_count() << " here";
    const test::TpEngines e(p.spec(), p.tp_size, p.dtype);
    const Engine &one = *e.one, &tp = *e.tp;
    auto backend_one = make_cuda_backend(p.dtype), backend_tp = make_cuda_backend(p.dtype);

    const std::vector<int32_t> prompt = {1, 40, 41, 42, 300, 7, 383, 0, 191, 192, 193, 250};
    Generator g1(one, *backend_one, 1), gt(tp, *backend_tp, 1);
    const std::vector<float> l1 = g1.prompt_logits(prompt), lt = gt.prompt_logits(prompt);
    ASSERT_EQ(lt.size(), l1.size());
    const size_t V = static_cast<size_t>(one.config().n_vocab);
    for (size_t r = 0; r < l1.size() / V; ++r) {
        double diff = 0.0, scale = 0.0;
        for (size_t j = r * V; j < (r + 1) * V; ++j) {
            ASSERT_TRUE(std::isfinite(lt[j])) << "position " << r;
            diff = std::max(diff, std::abs(static_cast<double>(lt[j]) - l1[j]));
            scale = std::max(scale, std::abs(static_cast<double>(l1[j])));
        }
        EXPECT_LE(diff, p.tol * scale) << "position " << r;
    }

    GenerationParams g;
    g.max_new_tokens = 16;
    g.sampling.temperature = 0.0f;
    const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41}, {5, 383, 192, 9, 10}};
    Generator b1(one, *backend_one, 2), bt(tp, *backend_tp, 2);
    EXPECT_EQ(bt.generate(prompts, g), b1.generate(prompts, g));
}

// f32: only the order of the o_proj/down sums and the all-reduce differs (1e-5 as on the CPU ranks);
// f16: each rank rounds its partial sums to f16 before the all-reduce adds them.
INSTANTIATE_TEST_SUITE_P(
    Cases, CudaTpMatchesOneGpu,
    ::testing::Values(
        CudaTpCase{"tiny_llama_tp2", [] { return load_model_spec(test::data_dir() / "tiny_llama"); }, 2, DType::F32, 1e-5},
        CudaTpCase{"tiny_llama_c_f16_tp2", [] { return load_model_spec(test::data_dir() / "tiny_llama_c"); }, 2,
                   DType::F16, 1e-2},
        CudaTpCase{"odd_tp2", [] { return test::random_spec(test::odd_config(), 11); }, 2, DType::F32, 1e-5},
        CudaTpCase{"odd_tp4_replicated_kv_padded_vocab", [] { return test::random_spec(test::odd_config(), 11); }, 4,
                   DType::F32, 1e-5}),
    [](const ::testing::TestParamInfo<CudaTpCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace lamina

#endif  // LAMINA_HAS_CUDA && LAMINA_HAS_NCCL
