// --kv_cache_bytes: the KV cache sized from an explicit budget instead of the engine's limits.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "core/error.h"
#include "runtime/beam_search.h"
#include "runtime/generator.h"
#include "runtime/kv_budget.h"

namespace lamina {
namespace {

class TinyKvBudget : public test::TinyEngineTest {};

TEST_F(TinyKvBudget, DefaultIsTheEngineLimits) {
    const ModelLimits m = plan_model_limits(*engine, 2, DType::F32, 0);
    EXPECT_EQ(m.n_slot, 2);
    EXPECT_EQ(m.n_ctx, 24 + 20);
}

TEST_F(TinyKvBudget, BudgetShortensTheContextPerSlot) {
    const uint64_t per_pos = kv_bytes_per_position(engine->config(), DType::F32);
    EXPECT_EQ(per_pos, 2u * engine->config().n_layer * engine->config().kv_dim() * 4u);
    // 3 slots x 10 positions, plus a few spare bytes that do not make an 11th position.
    const ModelLimits m = plan_model_limits(*engine, 3, DType::F32, 3 * 10 * per_pos + per_pos - 1);
    EXPECT_EQ(m.n_ctx, 10);
    // A budget larger than the engine's limits is capped at them.
    EXPECT_EQ(plan_model_limits(*engine, 3, DType::F32, 1000 * 3 * 44 * per_pos).n_ctx, 44);
    // f16 positions take half the bytes.
    EXPECT_EQ(plan_model_limits(*engine, 3, DType::F16, 3 * 10 * per_pos).n_ctx, 20);
}

TEST_F(TinyKvBudget, TooSmallABudgetIsAClearError) {
    const uint64_t per_pos = kv_bytes_per_position(engine->config(), DType::F32);
    try {
        plan_model_limits(*engine, 2, DType::F32, 2 * per_pos - 1);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--kv_cache_bytes"), std::string::npos) << e.what();
    }
}

TEST_F(TinyKvBudget, GenerationWithinTheBudgetMatchesTheDefault) {
    const uint64_t per_pos = kv_bytes_per_position(engine->config(), DType::F32);
    Generator full(*engine, *backend, 1), small(*engine, *backend, 1, 12 * per_pos);
    EXPECT_EQ(small.runner().limits().n_ctx, 12);
    GenerationParams p;
    p.max_new_tokens = 8;
    p.sampling.temperature = 0.0f;
    const std::vector<std::vector<int32_t>> prompt = {{1, 40, 41, 42}};
    EXPECT_EQ(small.generate(prompt, p), full.generate(prompt, p));
    // 4 + 9 positions do not fit 12: an error naming the flag, before anything runs.
    p.max_new_tokens = 9;
    try {
        small.generate(prompt, p);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--kv_cache_bytes"), std::string::npos) << e.what();
    }
    BeamSearch beams(*engine, *backend, 1, 2, 2 * 12 * per_pos);
    BeamSearchParams bp;
    bp.num_beams = 2;
    bp.max_new_tokens = 9;
    EXPECT_THROW(beams.generate(prompt, bp), Error);
}

}  // namespace
}  // namespace lamina
