// The lamina binary end to end: happy paths, and bad input giving one line and a non-zero exit.
#include <gtest/gtest.h>

#include <algorithm>

#include "../refusal_util.h"
#include "../test_util.h"

namespace lamina {
namespace {

using test::expect_command_refusal;
using test::run_command;
using test::TempDir;

std::string lamina(const std::string& args) { return test::lamina_binary() + " " + args; }

class CliTiny : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir;
        const auto r = run_command(lamina("build --model_dir " + (test::data_dir() / "tiny_llama").string() +
                                          " --output_dir " + engine().string() +
                                          " --dtype float32 --max_input_len 32 --max_output_len 16 --max_batch_size 2"));
        ASSERT_EQ(r.status, 0) << r.output;
    }
    static void TearDownTestSuite() { delete dir_; }
    static std::filesystem::path engine() { return dir_->path() / "engine"; }
    static TempDir* dir_;
};
TempDir* CliTiny::dir_ = nullptr;

TEST_F(CliTiny, RunPrintsInputAndOutput) {
    const auto r = run_command(lamina("run --engine_dir " + engine().string() + " --input_text 'Hello world' --max_output_len 8 --temperature 0 --device cpu"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("Input [Text 0]: \"Hello world\""), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("Output [Text 0 Beam 0]: \""), std::string::npos) << r.output;
}

TEST_F(CliTiny, StreamingPrintsTheSameText) {
    const std::string base = lamina("run --engine_dir " + engine().string() + " --input_text 'Hello' --max_output_len 8 --temperature 0 --device cpu");
    const auto plain = run_command("(" + base + " 2>/dev/null)");
    const auto streamed = run_command("(" + base + " --stream 2>/dev/null)");
    ASSERT_EQ(plain.status, 0);
    ASSERT_EQ(streamed.status, 0);
    const auto start = plain.output.find("Output [Text 0 Beam 0]: \"") + 25;
    const std::string text = plain.output.substr(start, plain.output.rfind('"') - start);
    EXPECT_EQ(streamed.output, "Hello" + text + "\n");
}

TEST_F(CliTiny, BadRunInputs) {
    const std::string e = "run --device cpu --engine_dir " + engine().string();
    expect_command_refusal(e + " --max_output_len 8 --input_text ''", "empty");
    expect_command_refusal(e + " --max_output_len 8 --input_text \"$(printf 'a\\377b')\"", "UTF-8");
    std::string long_text;
    for (int i = 0; i < 200; ++i) long_text += "word ";
    expect_command_refusal(e + " --max_output_len 8 --input_text '" + long_text + "'", "max_input_len");
    expect_command_refusal(e + " --max_output_len 17", "max_output_len");
    expect_command_refusal(e + " --temperature -1", "temperature");
    expect_command_refusal(e + " --top_p 2", "top_p");
    expect_command_refusal(e + " --max_output_len abc", "max_output_len");
    expect_command_refusal(e + " --no_such_flag 1", "no_such_flag");
    expect_command_refusal("run --device cpu --engine_dir /nonexistent", "/nonexistent");
    expect_command_refusal("run --device quantum --engine_dir " + engine().string(), "quantum");
    expect_command_refusal(e + " --max_output_len 8 --kv_cache_bytes 12", "--kv_cache_bytes");
    expect_command_refusal(e + " --max_output_len 8 --kv_cache_bytes lots", "kv_cache_bytes");
}

// tiny_llama's KV cache takes 2 (K, V) x 3 layers x 24 (2 KV heads x 12) x 4 bytes = 576 bytes a position; the
// engine's limits give a sequence 32 + 16 = 48 positions.
TEST_F(CliTiny, KvCacheBudgetSetsThePositionsPerSequence) {
    constexpr int kBytesPerPosition = 576;
    const std::string e = "run --device cpu --temperature 0 --input_text 'Hello world' --engine_dir " + engine().string();
    auto with_budget = [&](int64_t positions, int max_output_len) {
        return run_command(lamina(e + " --max_output_len " + std::to_string(max_output_len) + " --kv_cache_bytes " +
                                  std::to_string(positions * kBytesPerPosition)));
    };
    auto text = [](const std::string& out) { return out.substr(std::min(out.size(), out.find("Output [Text 0 Beam 0]"))); };
    // 20 positions hold the prompt and 8 new tokens (the same text as the engine's own limits) but not 16.
    const auto full8 = run_command(lamina(e + " --max_output_len 8"));
    const auto small8 = with_budget(20, 8);
    ASSERT_EQ(full8.status, 0) << full8.output;
    ASSERT_EQ(small8.status, 0) << small8.output;
    EXPECT_EQ(text(small8.output), text(full8.output));
    const auto full16 = run_command(lamina(e + " --max_output_len 16"));
    ASSERT_EQ(full16.status, 0) << full16.output;
    const auto small16 = with_budget(20, 16);
    EXPECT_NE(small16.status, 0);
    EXPECT_EQ(std::count(small16.output.begin(), small16.output.end(), '\n'), 1) << small16.output;
    EXPECT_NE(small16.output.find("KV cache's 20 per sequence"), std::string::npos) << small16.output;
    EXPECT_NE(small16.output.find("--kv_cache_bytes"), std::string::npos) << small16.output;
    // A budget past the engine's limits is capped at its 48 positions: 16 new tokens fit, and so does the text.
    const auto large16 = with_budget(1000, 16);
    ASSERT_EQ(large16.status, 0) << large16.output;
    EXPECT_EQ(text(large16.output), text(full16.output));
    // One byte short of a position is an error naming the flag and the bytes a position takes.
    expect_command_refusal(
        e + " --max_output_len 8 --kv_cache_bytes " + std::to_string(kBytesPerPosition - 1),
        "--kv_cache_bytes 575 holds no position for 1 sequence(s): one position of each takes 576 bytes");
}

TEST_F(CliTiny, BadBuildInputs) {
    TempDir out;
    expect_command_refusal("build --output_dir " + out.path().string() + " --model_dir /nonexistent.gguf",
                           "/nonexistent.gguf");
    expect_command_refusal("build --output_dir " + out.path().string() + " --random_weights tiny --dtype float8",
                           "float8");
    expect_command_refusal("build --output_dir " + out.path().string() + " --random_weights huge", "huge");
    expect_command_refusal("build --model_dir x", "output_dir");
    expect_command_refusal("build --output_dir " + out.path().string(), "--random_weights");
    expect_command_refusal("build --output_dir " + out.path().string() + " --random_weights tiny --max_batch_size 0",
                           "max_batch_size");
}

TEST_F(CliTiny, TokenizeIdsAndPieces) {
    const auto ids = run_command(lamina("tokenize --model " + engine().string() + " --ids --text 'Hello, world!'"));
    ASSERT_EQ(ids.status, 0) << ids.output;
    EXPECT_EQ(ids.output, "42 71 78 348 14 376 346 3\n");  // tokenizer_cases[0] of the fixture, without BOS
    const auto pieces = run_command(lamina("tokenize --model " + (test::data_dir() / "tiny_llama").string() + " --text 'Hello'"));
    ASSERT_EQ(pieces.status, 0) << pieces.output;
    EXPECT_EQ(pieces.output.front(), '[');
    expect_command_refusal("tokenize --model " + engine().string(), "--text");
    expect_command_refusal("tokenize --model " + engine().string() + " --file /nonexistent.txt", "/nonexistent.txt");
}

TEST_F(CliTiny, BenchPrintsATableAndJson) {
    TempDir out;
    const auto r = run_command(lamina("bench --device cpu --engine_dir " + engine().string() +
                                      " --input_len 8 --output_len 4 --repeats 1 --json " + (out / "b.json").string()));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("| prefill tokens/s |"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("| decode achieved GB/s |"), std::string::npos) << r.output;
    const auto j = test::read_json(out / "b.json");
    EXPECT_GT(j["decode_tokens_per_s"][0].get<double>(), 0.0);
    expect_command_refusal("bench --device cpu --engine_dir " + engine().string() + " --input_len 33", "max_input_len");
}

TEST(CliSmolLM2, RunFromGgufOnTheFlyGivesHfText) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir cache;
    const auto r = run_command(lamina("run --device cpu --cache_dir " + cache.path().string() + " --model_dir " + test::smollm2_gguf().string() +
                                      " --input_text 'The capital of France is' --max_output_len 6 --temperature 0"));
    ASSERT_EQ(r.status, 0) << r.output;
    // tests/data/smollm2_greedy.json: HF's greedy continuation begins " Paris".
    EXPECT_NE(r.output.find("Output [Text 0 Beam 0]: \" Paris"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lamina
