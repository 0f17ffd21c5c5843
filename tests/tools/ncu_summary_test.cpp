// bench/ncu_summary.py (the reader of `bash bench/gpu_bench.sh profile`'s ncu log) on a hand-made log whose table is
// worked out by hand: the warm-up half left out, two launches of one kernel grouped, units scaled, and a column per
// metric beyond time and DRAM bytes (the mean of numbers, the distinct values of strings).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

// One ncu --csv row: kernel `id`, its name and grid, a metric with its unit and value.
std::string row(int id, const std::string& name, const std::string& grid, const std::string& metric,
                const std::string& unit, const std::string& value) {
    std::ostringstream r;
    const char* sep = "\",\"";  // ","
    r << '"' << id << sep << "1" << sep << "lamina" << sep << "127.0.0.1" << sep << name << sep << "1" << sep << "13"
      << sep << "(256, 1, 1)" << sep << grid << sep << "0" << sep << "9.0" << sep << "Command line profiler metrics"
      << sep << metric << sep << unit << sep << value << "\"\n";
    return r.str();
}

TEST(NcuSummary, TimedHalfGroupedWithExtraMetrics) {
    const auto dir = std::filesystem::temp_directory_path() / "lamina_ncu_summary_test";
    std::filesystem::create_directories(dir);
    const auto log = dir / "ncu.csv", table = dir / "table.md";
    std::ofstream out(log);
    out << "==PROF== Connected to process 1 (lamina)\n"
           "\"ID\",\"Process ID\",\"Process Name\",\"Host Name\",\"Kernel Name\",\"Context\",\"Stream\",\"Block Size\","
           "\"Grid Size\",\"Device\",\"CC\",\"Section Name\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n";
    // IDs 0-2 are the warm-up half (left out whatever they hold); 3 and 4 are one kernel of 8 blocks, 5 another.
    for (int id = 0; id < 3; ++id) out << row(id, "gemv", "(8, 1, 1)", "gpu__time_duration.sum", "ms", "9");
    out << row(3, "gemv", "(8, 1, 1)", "gpu__time_duration.sum", "us", "10")
        << row(3, "gemv", "(8, 1, 1)", "dram__bytes_read.sum", "Mbyte", "30")
        << row(3, "gemv", "(8, 1, 1)", "lts__t_sector_hit_rate.pct", "%", "10")
        << row(4, "gemv", "(8, 1, 1)", "gpu__time_duration.sum", "ns", "30,000")
        << row(4, "gemv", "(8, 1, 1)", "dram__bytes_read.sum", "Mbyte", "50")
        << row(4, "gemv", "(8, 1, 1)", "lts__t_sector_hit_rate.pct", "%", "25")
        << row(5, "norm", "(1, 1, 1)", "gpu__time_duration.sum", "us", "2")
        << row(5, "norm", "(1, 1, 1)", "dram__bytes_write.sum", "Kbyte", "8")
        << row(5, "norm", "(1, 1, 1)", "lts__t_sector_hit_rate.pct", "%", "n/a");
    out.close();
    const std::string cmd =
        "python3 " LAMINA_SOURCE_DIR "/bench/ncu_summary.py " + log.string() + " > " + table.string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::stringstream got;
    got << std::ifstream(table).rdbuf();
    const std::string s = got.str();
    // gemv: 2 launches, 40 us, 80 MB read: 2,000 GB/s, hit rate (10 + 25) / 2; norm: 8 KB in 2 us: 4 GB/s.
    for (const char* line : {"3 kernels in the timed half, 0.042 ms of kernel time",
                             "| kernel | grid | block | launches | total ms | us/launch | DRAM GB/s | "
                             "lts__t_sector_hit_rate.pct |",
                             "| gemv | (8, 1, 1) | (256, 1, 1) | 2 | 0.040 | 20.0 | 2000 | 17.5 |",
                             "| norm | (1, 1, 1) | (256, 1, 1) | 1 | 0.002 | 2.0 | 4 | n/a |"})
        EXPECT_NE(s.find(line), std::string::npos) << "missing: " << line << "\n" << s;
    std::filesystem::remove_all(dir);
}

}  // namespace
