// bench/trace_summary.py (the kernel timeline's reader) on a hand-made trace whose table is worked out by
// hand: blocks out of order, a block that never waited, and two launches of one kernel.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

TEST(TraceSummary, LaunchesSharesAndHandOvers) {
    const auto dir = std::filesystem::temp_directory_path() / "lamina_trace_summary_test";
    std::filesystem::create_directories(dir);
    const auto trace = dir / "trace.csv", table = dir / "table.md", launches = dir / "launches.csv",
               blocks = dir / "blocks.csv";
    // embedding 1 block [0, 1000], waits at 100; rms_norm 2 blocks from 500 and 600, waits at 1200, ends at
    // 2000; the RoPE GEMV (tag 3 + 16 * 3) 3 blocks from 1800, first wait 2100, ends at 4000; rms_norm again,
    // 1 block [3800, 4200], waits at 4050.
    std::ofstream(trace) << "tag,launch,block,grid,sm,start_ns,waited_ns,end_ns\n"
                            "2,11,0,2,0,500,700,1500\n"
                            "51,12,2,3,2,2500,-1,1500\n"
                            "1,10,0,1,0,0,100,1000\n"
                            "2,11,1,2,1,600,600,1400\n"
                            "51,12,0,3,0,1800,300,1200\n"
                            "51,12,1,3,1,1900,200,1200\n"
                            "2,13,0,1,3,3800,250,400\n";
    const std::string cmd = "python3 " LAMINA_SOURCE_DIR "/bench/trace_summary.py " + trace.string() + " --launches " +
                            launches.string() + " --blocks 1-2 " + blocks.string() + " > " + table.string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::stringstream out;
    out << std::ifstream(table).rdbuf();
    const std::string s = out.str();
    for (const char* row : {"4 launches, 7 blocks, step span 4.2 us",
                            "| embedding | 1 | 1 | 1.00 | 23.8% | 0.10 | 0.90 | 0 |",
                            "| rms_norm after embedding | 1 | 2 | 1.00 | 23.8% | 0.20 | 0.80 | 2 |",
                            "| gemv_rope after rms_norm | 1 | 3 | 2.00 | 47.6% | 0.10 | 1.90 | 2 |",
                            "| rms_norm after gemv_rope | 1 | 1 | 0.20 | 4.8% | 0.05 | 0.15 | 1 |"})
        EXPECT_NE(s.find(row), std::string::npos) << "missing: " << row << "\n" << s;
    std::stringstream l;
    l << std::ifstream(launches).rdbuf();
    EXPECT_NE(l.str().find("2,gemv_rope after rms_norm,3,1800,2100,4000,2"), std::string::npos) << l.str();
    // The blocks of launches 1 and 2, by block; wait and end from the step's start; a block that never waited.
    std::stringstream b;
    b << std::ifstream(blocks).rdbuf();
    EXPECT_EQ(b.str(),
              "index,role,block,sm,start_ns,wait_ns,end_ns\r\n"
              "1,rms_norm after embedding,0,0,500,1200,2000\r\n"
              "1,rms_norm after embedding,1,1,600,1200,2000\r\n"
              "2,gemv_rope after rms_norm,0,0,1800,2100,3000\r\n"
              "2,gemv_rope after rms_norm,1,1,1900,2100,3100\r\n"
              "2,gemv_rope after rms_norm,2,2,2500,,4000\r\n");
    std::filesystem::remove_all(dir);
}

TEST(TraceSummary, BadLaunchRangeIsRefused) {
    const auto dir = std::filesystem::temp_directory_path() / "lamina_trace_range_test";
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "trace.csv") << "tag,launch,block,grid,sm,start_ns,waited_ns,end_ns\n1,10,0,1,0,0,100,1000\n";
    const std::string cmd = "python3 " LAMINA_SOURCE_DIR "/bench/trace_summary.py " + (dir / "trace.csv").string() +
                            " --blocks 3-1 " + (dir / "b.csv").string() + " > " + (dir / "err.txt").string() + " 2>&1";
    EXPECT_NE(std::system(cmd.c_str()), 0);
    std::stringstream err;
    err << std::ifstream(dir / "err.txt").rdbuf();
    EXPECT_NE(err.str().find("--blocks: '3-1' is not FIRST-LAST"), std::string::npos) << err.str();
    EXPECT_FALSE(std::filesystem::exists(dir / "b.csv"));
    std::filesystem::remove_all(dir);
}

TEST(TraceSummary, EmptyTraceIsAnError) {
    const auto path = std::filesystem::temp_directory_path() / "lamina_trace_empty.csv";
    std::ofstream(path) << "tag,launch,block,grid,sm,start_ns,waited_ns,end_ns\n";
    const std::string cmd = "python3 " LAMINA_SOURCE_DIR "/bench/trace_summary.py " + path.string() + " > /dev/null 2>&1";
    EXPECT_NE(std::system(cmd.c_str()), 0);
    std::filesystem::remove(path);
}

}  // namespace
