// `lamina build --tp_size` and `lamina run|bench` on a tensor-parallel engine (simulated CPU ranks).
#include <gtest/gtest.h>

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
    auto run = [&](const char* engine, const std::string& env = "") {
        return run_command(std::string("(") + env +
                           lamina("run --device cpu --engine_dir " + (dir / engine).string() +
                                  " --input_text 'Hello world' --max_output_len 12 --temperature 0") +
                           " 2>/dev/null)");
    };
    const auto one = run("tp1"), tp = run("tp2");
    ASSERT_EQ(one.status, 0) << one.output;
    ASSERT_EQ(tp.status, 0) << tp.output;
    EXPECT_NE(tp.output.find("Output [Text 0 Beam 0]: \""), std::string::npos) << tp.output;
    EXPECT_EQ(tp.output, one.output) << "only rank 0 prints, and it prints what tp 1 does";
    // The ranks' A/B switch for the fused decode ops (on by default): 0 and 1 are taken (the CPU has no fused ops
    // either way), anything else is a one-line error naming it.
    EXPECT_EQ(run("tp2", "LAMINA_TP_EPILOGUES=0 ").output, one.output);
    const auto bad = run_command(std::string("LAMINA_TP_EPILOGUES=yes ") +
                                 lamina("run --device cpu --engine_dir " + (dir / "tp2").string() +
                                        " --input_text 'Hello world' --max_output_len 4"));
    EXPECT_NE(bad.status, 0);
    EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;
    EXPECT_NE(bad.output.find("LAMINA_TP_EPILOGUES=yes: expected 0 or 1"), std::string::npos) << bad.output;

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
