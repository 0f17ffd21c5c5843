// Tensor parallelism on simulated CPU ranks: the sharding plan and its refusals, the rank files of a
// tp engine, the CPU collectives, and tp N runs reproducing tp 1 (logits at every prompt position and
// at decode steps with the KV cache, greedy continuations, KV slot copies).
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "core/error.h"
#include "parallel/communicator.h"
#include "parallel/sharding.h"
#include "runtime/generator.h"
#include "runtime/kv_budget.h"
#include "tp_test_util.h"

namespace lamina {
namespace {

using test::TempDir;
using test::TpEngines;

// Sharding reorders only the sums of o_proj, down and the all-reduces (f32 on the CPU): the logits of
// tp N match tp 1 to rounding (measured: at most 7e-7 relative per row); 1e-5 leaves room and catches any
// misplaced head or column (those give errors of order 1).
constexpr double kTol = 1e-5;

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

ModelConfig fixture_config(const char* name) { return load_model_spec(test::data_dir() / name).config; }

TEST(TpSharding, SplitsHeadsColumnsAndVocabulary) {
    const ModelConfig c = fixture_config("tiny_llama");  // 6 heads, 2 KV heads, n_ff 200, vocab 384
    const TpSharding s = plan_tensor_parallel(c, 2);
    EXPECT_EQ(s.n_head, 3);
    EXPECT_EQ(s.n_head_kv, 1);
    EXPECT_EQ(s.kv_replicas, 1);
    EXPECT_EQ(s.n_ff, 100);
    EXPECT_EQ(s.n_vocab_shard, 192);
    EXPECT_EQ(s.first_head_kv(1), 1);
    const ModelConfig rc = s.rank_config(c);
    EXPECT_EQ(rc.qkv_dim(), (3 + 2) * 12);
    EXPECT_EQ(rc.n_vocab, 384) << "a rank's ids and gathered logits are the model's";
}

TEST(TpSharding, ReplicatesKvHeadsWhenRanksOutnumberThem) {
    const TpSharding s = plan_tensor_parallel(test::odd_config(), 4);  // 8 heads, 2 KV heads
    EXPECT_EQ(s.n_head, 2);
    EXPECT_EQ(s.n_head_kv, 1);
    EXPECT_EQ(s.kv_replicas, 2);
    // Query heads 0..3 use KV head 0 and 4..7 KV head 1: ranks 0, 1 hold KV head 0, ranks 2, 3 KV head 1.
    EXPECT_EQ(s.first_head_kv(0), 0);
    EXPECT_EQ(s.first_head_kv(1), 0);
    EXPECT_EQ(s.first_head_kv(2), 1);
    EXPECT_EQ(s.first_head_kv(3), 1);
    EXPECT_EQ(s.n_vocab_shard, 98);  // ceil(390 / 4); the last shard holds 96 ids and 2 zero rows
}

TEST(TpSharding, RefusalsAreOneLineNamingTheNumbers) {
    const ModelConfig c = fixture_config("tiny_llama");
    const std::string heads = error_of([&] { plan_tensor_parallel(c, 4); });
    EXPECT_NE(heads.find("n_head 6 is not divisible by 4"), std::string::npos) << heads;
    ModelConfig ff = test::odd_config();
    ff.n_ff = 90;
    const std::string cols = error_of([&] { plan_tensor_parallel(ff, 4); });
    EXPECT_NE(cols.find("n_ff 90 is not divisible by 4"), std::string::npos) << cols;
    ModelConfig kv = test::odd_config();
    kv.n_head = 12;
    kv.n_head_kv = 3;
    kv.n_ff = 96;
    const std::string kv_err = error_of([&] { plan_tensor_parallel(kv, 2); });
    EXPECT_NE(kv_err.find("n_head_kv 3 is neither divisible by 2 nor a divisor of it"), std::string::npos) << kv_err;
    for (const std::string& e : {heads, cols, kv_err}) EXPECT_EQ(e.find('\n'), std::string::npos) << e;

    TempDir dir;  // and through `lamina build`: tiny_llama_b has 5 heads
    const std::string build = error_of([&] {
        build_engine(load_model_spec(test::data_dir() / "tiny_llama_b"), test::tp_build_options(2), dir.path());
    });
    EXPECT_NE(build.find("n_head 5 is not divisible by 2"), std::string::npos) << build;
    EXPECT_FALSE(std::filesystem::exists(dir / "config.json"));
}

TEST(CpuCommunicator, AllReduceSumsInRankOrderAndAllGatherDropsPadding) {
    constexpr int kRanks = 3;
    auto comms = make_cpu_communicators(kRanks);
    // Rank r reduces a [2, 5] tensor and gathers a [2, 4] block into [2, 11] (the last rank's 4th
    // column is padding).
    std::vector<std::vector<float>> x(kRanks), part(kRanks), out(kRanks, std::vector<float>(22, -1.0f));
    for (int r = 0; r < kRanks; ++r) {
        x[r] = test::random_vec(10, 100 + r);
        part[r] = test::random_vec(8, 200 + r);
    }
    std::vector<float> expected_sum(10, 0.0f);
    for (int r = 0; r < kRanks; ++r)
        for (size_t i = 0; i < 10; ++i) expected_sum[i] += x[r][i];
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r)
        threads.emplace_back([&, r] {
            for (int repeat = 0; repeat < 3; ++repeat) {  // back-to-back collectives reuse the shared state
                comms[r]->all_gather_cols(make_view(part[r].data(), DType::F32, 2, 4), make_view(out[r].data(), DType::F32, 2, 11));
            }
            comms[r]->all_reduce_sum(make_view(x[r].data(), DType::F32, 2, 5));
        });
    for (auto& t : threads) t.join();
    for (int r = 0; r < kRanks; ++r) {
        EXPECT_EQ(x[r], expected_sum) << "rank " << r << ": bit-identical sums in rank order";
        for (int row = 0; row < 2; ++row)
            for (int col = 0; col < 11; ++col)
                EXPECT_EQ(out[r][row * 11 + col], part[col / 4][row * 4 + col % 4]) << r << " " << row << " " << col;
    }
}

TEST(CpuCommunicator, TimesItsCollectivesOnlyWhenAsked) {
    constexpr int kRanks = 2;
    auto comms = make_cpu_communicators(kRanks);
    std::vector<std::vector<float>> x(kRanks, std::vector<float>(64, 1.0f));
    auto reduce_on_all = [&] {
        std::vector<std::thread> threads;
        for (int r = 0; r < kRanks; ++r)
            threads.emplace_back([&, r] { comms[r]->all_reduce_sum(make_view(x[r].data(), DType::F32, 1, 64)); });
        for (auto& t : threads) t.join();
    };
    reduce_on_all();
    EXPECT_EQ(comms[0]->seconds(), 0.0) << "timing is off by default";
    comms[0]->set_timing(true);
    reduce_on_all();
    const double once = comms[0]->seconds();
    EXPECT_GT(once, 0.0);
    comms[0]->set_timing(false);
    reduce_on_all();
    EXPECT_EQ(comms[0]->seconds(), once) << "a running total, still while timing is off";
    EXPECT_EQ(comms[1]->seconds(), 0.0) << "rank 1 was never timed";
}

TEST(TpEngine, RankFilesHoldTheirShards) {
    TpEngines e(load_model_spec(test::data_dir() / "tiny_llama"), 2);
    const auto cfg = test::read_json(e.tp_dir / "config.json");
    EXPECT_EQ(cfg["format_version"], 2);
    EXPECT_EQ(cfg["tensor_parallel"]["tp_size"], 2);
    EXPECT_FALSE(std::filesystem::exists(e.tp_dir / "weights.bin"));
    EXPECT_TRUE(std::filesystem::exists(e.tp_dir / "weights.rank1.bin"));
    const auto one_cfg = test::read_json(e.one_dir / "config.json");
    EXPECT_EQ(one_cfg["format_version"], 1) << "tp 1 engines keep format 1";
    EXPECT_FALSE(one_cfg.contains("tensor_parallel"));
    EXPECT_EQ(one_cfg["weights"]["file"], "weights.bin");

    ASSERT_EQ(e.tp->tp_size(), 2);
    const LlamaWeights& full = e.one->weights();
    for (int r = 0; r < 2; ++r) {
        const EngineRank& rank = e.tp->rank(r);
        EXPECT_EQ(rank.config.n_head, 3);
        EXPECT_EQ(rank.vocab_begin, 192 * r);
        const LlamaWeights& w = rank.weights;
        EXPECT_EQ(w.tok_embd.rows, 193);
        EXPECT_EQ(w.output.rows, 192);
        const LayerWeights& L = w.layers[1];
        const LayerWeights& F = full.layers[1];
        EXPECT_EQ(L.wqkv.rows, 60);
        EXPECT_EQ(L.wo.cols, 36);
        EXPECT_EQ(L.w_gate_up.rows, 200);
        EXPECT_EQ(L.w_down.cols, 100);
        // Row/column spot checks against the tp 1 engine (f32, so values compare exactly).
        auto row = [](const TensorView& v, int64_t i) { return std::vector<float>(v.row<float>(i), v.row<float>(i) + v.cols); };
        EXPECT_EQ(row(L.wqkv, 0), row(F.wqkv, r * 36)) << "first q row: head 3r";
        EXPECT_EQ(row(L.wqkv, 36), row(F.wqkv, 72 + r * 12)) << "first k row: KV head r";
        EXPECT_EQ(row(L.wqkv, 48), row(F.wqkv, 96 + r * 12)) << "first v row: KV head r";
        EXPECT_EQ(row(L.w_gate_up, 100), row(F.w_gate_up, 200 + r * 100)) << "first up row";
        EXPECT_EQ(L.wo.row<float>(5)[7], F.wo.row<float>(5)[r * 36 + 7]);
        EXPECT_EQ(L.w_down.row<float>(5)[7], F.w_down.row<float>(5)[r * 100 + 7]);
        EXPECT_EQ(row(w.tok_embd, 10), row(full.tok_embd, r * 192 + 10));
        EXPECT_EQ(row(w.tok_embd, 192), std::vector<float>(72, 0.0f)) << "the other ranks' row";
        EXPECT_EQ(row(w.output, 191), row(full.output, r * 192 + 191));
    }
}

// --kv_cache_bytes is a budget per rank: a rank holds only its KV heads, so the same bytes give a tp 2
// engine whose KV heads are split twice the positions of the tp 1 engine.
TEST(TpEngine, KvCacheBudgetIsPerRank) {
    TpEngines e(load_model_spec(test::data_dir() / "tiny_llama"), 2);
    const uint64_t whole = kv_bytes_per_position(e.one->config(), DType::F32);
    const uint64_t rank = kv_bytes_per_position(e.tp->rank(0).config, DType::F32);
    EXPECT_EQ(2 * rank, whole);
    EXPECT_EQ(plan_model_limits(*e.one, 1, DType::F32, 10 * whole).n_ctx, 10);
    EXPECT_EQ(plan_model_limits(*e.tp, 1, DType::F32, 10 * whole).n_ctx, 20);
    try {
        plan_model_limits(*e.tp, 1, DType::F32, rank - 1);
        FAIL() << "expected an error";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("per rank"), std::string::npos) << err.what();
    }
}

TEST(TpEngine, BiasesOfRowParallelProjectionsLiveOnRankZeroAndTiedHeadIsTheTable) {
    TpEngines e(test::random_spec(test::odd_config(), 7), 4);
    for (int r = 0; r < 4; ++r) {
        const LlamaWeights& w = e.tp->rank(r).weights;
        for (const LayerWeights& L : w.layers) {
            EXPECT_EQ(L.bo.empty(), r != 0);
            EXPECT_EQ(L.b_down.empty(), r != 0);
            EXPECT_FALSE(L.bqkv.empty());
            EXPECT_EQ(L.bqkv.cols, (2 + 2 * 1) * 8);
            EXPECT_EQ(L.b_gate_up.cols, 2 * 24);
        }
        EXPECT_EQ(w.output.data, w.tok_embd.data);
        EXPECT_EQ(w.output.rows, 98);
        EXPECT_EQ(w.tok_embd.rows, 99);
    }
    // The last shard: ids 294..389, then zero padding.
    const TensorView& last = e.tp->rank(3).weights.tok_embd;
    EXPECT_EQ(std::vector<float>(last.row<float>(95), last.row<float>(95) + 64),
              std::vector<float>(e.one->weights().tok_embd.row<float>(389), e.one->weights().tok_embd.row<float>(389) + 64));
    for (int64_t i = 96; i < 99; ++i)
        EXPECT_EQ(std::vector<float>(last.row<float>(i), last.row<float>(i) + 64), std::vector<float>(64, 0.0f)) << i;
}

void expect_rows_close(const std::vector<float>& tp, const std::vector<float>& one, int64_t n_vocab, const std::string& what) {
    ASSERT_EQ(tp.size(), one.size());
    for (size_t r = 0; r * n_vocab < one.size(); ++r) {
        const double err = test::rel_error(tp.data() + r * n_vocab, one.data() + r * n_vocab, static_cast<size_t>(n_vocab));
        EXPECT_LT(err, kTol) << what << ", row " << r;
    }
}

struct TpCase {
    const char* name;
    std::function<ModelSpec()> spec;
    int64_t tp_size;
    DType dtype;
};

class TpMatchesOneRank : public ::testing::TestWithParam<TpCase> {};

TEST_P(TpMatchesOneRank, PromptLogitsDecodeStepsAndGreedyText) {
    const TpCase& p = GetParam();
    TpEngines e(p.spec(), p.tp_size, p.dtype);
    ASSERT_EQ(e.tp->tp_size(), p.tp_size);
    const int64_t V = e.one->config().n_vocab;
    // Ranks x threads: rank 0's backend has 3 threads, ranks 1.. get 3 / tp_size each (at least 1).
    auto backend_one = make_cpu_backend(), backend_tp = make_cpu_backend(3);

    // Every position of a prompt (prefill, one step).
    const std::vector<int32_t> prompt = {1, 40, 41, 42, 300, 7, 383, 0, 191, 192, 193, 250};
    {
        Generator one(*e.one, *backend_one, 1), tp(*e.tp, *backend_tp, 1);
        expect_rows_close(tp.prompt_logits(prompt), one.prompt_logits(prompt), V, "prompt");

        // Greedy continuations (the backend's argmax over the gathered logits), two prompts batched.
        GenerationParams g;
        g.max_new_tokens = 16;
        g.sampling.temperature = 0.0f;
        const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41}, {5, 383, 192, 9, 10}};
        Generator one2(*e.one, *backend_one, 2), tp2(*e.tp, *backend_tp, 2);
        EXPECT_EQ(tp2.generate(prompts, g), one2.generate(prompts, g));
    }

    // Decode steps with the KV cache: two sequences prefilled in one packed step, then decoded together
    // (tp 1's greedy choice fed to both), then slot 0 copied to slot 1 and decoded again.
    ModelLimits lim;
    lim.n_slot = 2;
    lim.n_ctx = 40;
    lim.max_step_tokens = 16;
    const auto one = make_step_runner(*e.one, *backend_one, lim), tp = make_step_runner(*e.tp, *backend_tp, lim);
    std::vector<float> l1, ltp;
    auto step = [&](const std::vector<int32_t>& ids, const std::vector<int32_t>& pos, const std::vector<int32_t>& slots,
                    const std::vector<int32_t>& rows, const std::string& what) {
        l1.assign(rows.size() * V, 0.0f);
        ltp.assign(rows.size() * V, 1e30f);
        const StepInput in{what == "packed prefill" ? StepKind::Prefill : StepKind::Decode, ids, pos, slots, rows};
        one->forward(in, l1.data());
        tp->forward(in, ltp.data());
        expect_rows_close(ltp, l1, V, what);
        std::vector<int32_t> next;
        for (size_t r = 0; r < rows.size(); ++r)
            next.push_back(static_cast<int32_t>(std::max_element(l1.begin() + r * V, l1.begin() + (r + 1) * V) - (l1.begin() + r * V)));
        return next;
    };
    std::vector<int32_t> next = step({1, 40, 41, 42, 5, 383, 192}, {0, 1, 2, 3, 0, 1, 2}, {0, 0, 0, 0, 1, 1, 1}, {3, 6}, "packed prefill");
    int32_t pos0 = 4, pos1 = 3;
    for (int s = 0; s < 6; ++s, ++pos0, ++pos1)
        next = step({next[0], next[1]}, {pos0, pos1}, {0, 1}, {0, 1}, "decode step " + std::to_string(s));
    one->copy_slot(0, 1, pos0);
    tp->copy_slot(0, 1, pos0);
    for (int s = 0; s < 3; ++s, ++pos0)
        next = step({next[0], next[0]}, {pos0, pos0}, {0, 1}, {0, 1}, "after copy_slot, step " + std::to_string(s));
    EXPECT_EQ(std::vector<float>(ltp.begin(), ltp.begin() + V), std::vector<float>(ltp.begin() + V, ltp.end()))
        << "slot 1, a copy of slot 0, gives slot 0's logits";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TpMatchesOneRank,
    ::testing::Values(TpCase{"tiny_llama_tp2", [] { return load_model_spec(test::data_dir() / "tiny_llama"); }, 2, DType::F32},
                      TpCase{"tiny_llama_c_f16_tp2", [] { return load_model_spec(test::data_dir() / "tiny_llama_c"); }, 2, DType::F16},
                      TpCase{"odd_tp2", [] { return test::random_spec(test::odd_config(), 11); }, 2, DType::F32},
                      TpCase{"odd_tp4_replicated_kv_padded_vocab", [] { return test::random_spec(test::odd_config(), 11); }, 4, DType::F32},
                      TpCase{"odd_bf16_tp4", [] { return test::random_spec(test::odd_config(), 12); }, 4, DType::BF16}),
    [](const ::testing::TestParamInfo<TpCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace lamina
