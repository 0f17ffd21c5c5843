// Issue 24's reproducers for integer flags: CLI11 2.1 on its own read `--seed -1` as 2^64-1,
// `--kv_cache_bytes -1` as an unlimited budget, a number past 2^63 as 2^63-1 and a 300-digit number as
// the largest integer, all without a word. Each is now a usage error (exit 2) on one short line naming
// the flag and the value, before any model is read.
#include <gtest/gtest.h>

#include <algorithm>

#include "../test_util.h"

namespace lamina {
namespace {

using test::run_command;

const std::string kHuge(300, '9');

std::string run_with(const std::string& flags) {
    return test::lamina_binary() + " run --device cpu --model_dir " + (test::data_dir() / "tiny_llama").string() +
           " --input_text hi " + flags;
}

// `command` fails as a bad command line: exit 2, one line of at most 160 characters, holding each of `want`.
void expect_usage_error(const std::string& command, const std::vector<std::string>& want) {
    const auto r = run_command(command);
    EXPECT_EQ(r.status, 2) << command << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_LE(r.output.size(), 160u) << r.output;
    for (const auto& w : want) EXPECT_NE(r.output.find(w), std::string::npos) << "want '" << w << "' in: " << r.output;
}

TEST(CliFlagValues, NegativeValuesOfUnsignedFlagsAreUsageErrors) {
    expect_usage_error(run_with("--kv_cache_bytes -1"), {"--kv_cache_bytes: '-1' is negative"});
    expect_usage_error(run_with("--kv_cache_bytes -5M"), {"--kv_cache_bytes: '-5M' is negative"});
    expect_usage_error(run_with("--seed -1"), {"--seed: '-1' is out of range 0 to 18446744073709551615"});
    expect_usage_error(run_with("--num_return_sequences -1"), {"--num_return_sequences: '-1' is out of range 0 to 64"});
    expect_usage_error(run_with("--top_k -1"), {"--top_k: '-1' is out of range"});
    const std::string summarize = test::lamina_binary() + " summarize --model_dir x ";
    expect_usage_error(summarize + "--num_return_sequences -1", {"--num_return_sequences: '-1' is out of range 0 to 64"});
    expect_usage_error(summarize + "--random_seed -1", {"--random_seed: '-1'"});
    expect_usage_error(summarize + "--batch_size 0", {"--batch_size: '0' is out of range 1 to 4096"});
    expect_usage_error(test::lamina_binary() + " bench --model_dir x --kv_cache_bytes -1", {"--kv_cache_bytes: '-1'"});
    expect_usage_error(test::lamina_binary() + " build --random_weights tiny --output_dir x --seed -1", {"--seed: '-1'"});
}

TEST(CliFlagValues, HugeNumbersAreNamedShortly) {
    // 2^63 is out of range as itself, not as the -9223372036854775808 a signed read would make of it.
    expect_usage_error(run_with("--max_input_len 9223372036854775808"),
                       {"--max_input_len: '9223372036854775808' is out of range 0 to 16777216"});
    expect_usage_error(run_with("--no_repeat_ngram_size 9223372036854775808"), {"'9223372036854775808' is out of range"});
    // 2^64 and beyond: out of range, echoed as their first characters and length.
    expect_usage_error(run_with("--seed 18446744073709551616"), {"--seed: '18446744073709551616' is out of range"});
    for (const char* flag : {"--seed", "--kv_cache_bytes", "--max_input_len", "--top_k", "--num_beams"})
        expect_usage_error(run_with(std::string(flag) + " " + kHuge),
                           {std::string(flag) + ": '999999999999999999999999...' (300 characters) is out of range"});
    expect_usage_error(run_with("--kv_cache_bytes 9223372036854775808"), {"--kv_cache_bytes: '9223372036854775808' is out of range"});
    expect_usage_error(run_with("--kv_cache_bytes 8589934592G"), {"is out of range 0 to 9223372036854775807 bytes"});
}

TEST(CliFlagValues, MalformedIntegersAreNamed) {
    expect_usage_error(run_with("--seed 12abc"), {"--seed: '12abc' is not an integer"});
    expect_usage_error(run_with("--top_k 0x10"), {"--top_k: '0x10' is not an integer"});
    expect_usage_error(run_with("--kv_cache_bytes 4X"), {"--kv_cache_bytes: '4X' is not a byte count"});
    expect_usage_error(run_with("--top_k " + std::string(300, 'a')), {"--top_k: 'aaaaaaaaaaaaaaaaaaaaaaaa...' (300 characters)"});
}

// In range values still work, suffixes and leading zeros read as decimal (CLI11 read "010" as octal 8).
TEST(CliFlagValues, ValidValuesRun) {
    test::TempDir dir;
    const auto r = run_command(run_with("--max_output_len 3 --seed 18446744073709551615 --kv_cache_bytes 1MiB --top_k 010 "
                                        "--temperature 1 --output_json " + (dir / "out.json").string() +
                                        " --cache_dir " + (dir / "cache").string()));
    ASSERT_EQ(r.status, 0) << r.output;
    const auto j = test::read_json(dir / "out.json");
    EXPECT_EQ(j["sampling"]["seed"].get<uint64_t>(), 18446744073709551615ull) << j.dump();
    EXPECT_EQ(j["sampling"]["top_k"].get<int64_t>(), 10) << j.dump();
}

// --num_return_sequences above 1 means beams to print: without --num_beams there are none to choose.
TEST(CliFlagValues, ReturnSequencesNeedBeams) {
    const auto r = run_command(run_with("--num_return_sequences 3"));
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("--num_return_sequences 3 needs --num_beams >= it"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lamina
