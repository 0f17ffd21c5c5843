// `lamina build --tp_size` and `lamina run|bench` on a tensor-parallel engine (simulated CPU ranks).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "../test_util.h"

namespace lamina {
namespace {

using test::run_command;
using test::TempDir;

std::string lamina(const std::string& args) { return test::lamina_binary() + " " + args; }

std::string build_args(const std::filesystem::path& out, int tp_size) {
    return "build --model_dir " + (test::data_dir() / "tiny_llama").string() + " --output_dir " + out.string() +
           " --dtype float32 --max_input_len 32 --max_output_len 16 --max_batch_size 2 --tp_size " + std::to_string(tp_size);
}

TEST(TpCli, RunOnTp2EngineGivesTheTp1Text) {
    TempDir dir;
    for (int tp : {1, 2}) {
        const auto r = run_command(lamina(build_args(dir / (std::string("tp") + std::to_string(tp)), tp)));
        ASSERT_EQ(r.status, 0) << r.output;
    }
    EXPECT_TRUE(std::filesystem::exists(dir / "tp2" / "weights.rank0.bin"));
    EXPECT_TRUE(std::filesystem::exists(dir / "tp2" / "weights.rank1.bin"));
    auto run = [&](const char* engine) {
        return run_command(std::string("(") +
                           lamina("run --device cpu --engine_dir " + (dir / engine).string() +
                                  " --input_text 'Hello world' --max_output_len 12 --temperature 0") +
                           " 2>/dev/null)");
    };
    const auto one = run("tp1"), tp = run("tp2");
    ASSERT_EQ(one.status, 0) << one.output;
    ASSERT_EQ(tp.status, 0) << tp.output;
    EXPECT_NE(tp.output.find("Output [Text 0 Beam 0]: \""), std::string::npos) << tp.output;
    EXPECT_EQ(tp.output, one.output) << "only rank 0 prints, and it prints what tp 1 does";

    // The numbers behind the text: the last prompt position's logits equal tp 1's up to the order the ranks'
    // partial sums are added in (f32 rounding, ~1e-6 here), and the greedy continuation is the same ids. The
    // logits spread over several units and the continuation is not one id repeated, so a rank whose share is
    // lost or misplaced (a missing all-reduce term, a shard of the wrong heads) moves them far past the tolerance.
    test::write_file(dir / "ids.txt", "1 42 71 78 348 14 376 346 3\n");
    auto logits = [&](const char* engine) {
        const auto out = dir / (std::string(engine) + ".json");
        const auto r = run_command(lamina("logits --device cpu --engine_dir " + (dir / engine).string() + " --input_ids " +
                                          (dir / "ids.txt").string() + " --greedy 12 --output " + out.string()));
        EXPECT_EQ(r.status, 0) << r.output;
        return test::read_json(out);
    };
    const auto j1 = logits("tp1"), j2 = logits("tp2");
    const auto l1 = j1.at("last_logits").get<std::vector<float>>(), l2 = j2.at("last_logits").get<std::vector<float>>();
    ASSERT_EQ(l1.size(), 384u);
    ASSERT_EQ(l2.size(), l1.size());
    const auto [lo, hi] = std::minmax_element(l1.begin(), l1.end());
    EXPECT_GT(*hi - *lo, 2.0f) << "flat logits would hide a broken rank";
    constexpr float kTolerance = 1e-4f;  // f32 sums in another order; a lost rank share is off by ~1
    for (size_t i = 0; i < l1.size(); ++i) ASSERT_NEAR(l2[i], l1[i], kTolerance) << "logit " << i;
    const auto g1 = j1.at("greedy_ids").get<std::vector<int32_t>>(), g2 = j2.at("greedy_ids").get<std::vector<int32_t>>();
    EXPECT_EQ(g2, g1);
    EXPECT_GT(std::set<int32_t>(g1.begin(), g1.end()).size(), 2u) << "a continuation of one repeated id says little";

    const auto json = dir / "bench.json";
    const auto bench = run_command(lamina("bench --device cpu --engine_dir " + (dir / "tp2").string() +
                                          " --input_len 8 --output_len 4 --repeats 1 --json " + json.string()));
    ASSERT_EQ(bench.status, 0) << bench.output;
    EXPECT_NE(bench.output.find("| decode tokens/s |"), std::string::npos) << bench.output;
    EXPECT_NE(bench.output.find("| decode collectives ms/step (rank 0, waits included) |"), std::string::npos)
        << bench.output;
    const auto j = test::read_json(json);
    EXPECT_EQ(j["tp_size"], 2);
    EXPECT_GT(static_cast<double>(j["decode_collective_ms_per_step"]), 0.0) << "timed collectives of a tp 2 decode";
}

TEST(TpCli, IndivisibleHeadsAreOneLineErrors) {
    TempDir dir;
    const auto r = run_command(lamina(build_args(dir / "tp4", 4)));
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_NE(r.output.find("n_head 6 is not divisible by 4"), std::string::npos) << r.output;
    const auto zero = run_command(lamina(build_args(dir / "tp0", 0)));
    EXPECT_NE(zero.status, 0);
    EXPECT_NE(zero.output.find("tp_size"), std::string::npos) << zero.output;
}

}  // namespace
}  // namespace lamina
