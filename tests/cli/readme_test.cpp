// The README's front door cannot rot: every `build/lamina ...` command in its ```sh blocks runs as
// written and exits 0, in order (later commands use what earlier ones built), from a scratch directory
// that sees the repository's models/, examples/, data/ and tests/ and the lamina under test as
// build/lamina. Blocks whose first line is a "# GPU" comment need a GPU and are skipped here (the device
// machine runs them: docs/developing.md).
#include <gtest/gtest.h>

#include "../test_util.h"

namespace lamina {
namespace {

// The commands of the README's sh blocks: continuation lines joined, comments dropped.
std::vector<std::string> readme_commands(const std::string& readme) {
    std::vector<std::string> commands;
    std::istringstream in(readme);
    std::string line, command;
    bool in_block = false, skip_block = false, first_line = false;
    while (std::getline(in, line)) {
        if (!in_block) {
            if (line.rfind("```sh", 0) == 0) in_block = first_line = true, skip_block = false;
            continue;
        }
        if (line.rfind("```", 0) == 0) {
            in_block = false;
            continue;
        }
        if (first_line && line.rfind("# GPU", 0) == 0) skip_block = true;
        first_line = false;
        if (skip_block) continue;
        if (!command.empty()) {
            command += " " + line.substr(line.find_first_not_of(' '));
        } else {
            if (line.rfind("build/lamina ", 0) != 0) continue;  // comments, make targets
            command = line;
        }
        // A trailing comment (after two spaces and '#') is not part of the command.
        if (const size_t c = command.find("  # "); c != std::string::npos) command.erase(c);
        if (!command.empty() && command.back() == '\\') {
            command.pop_back();
            continue;
        }
        commands.push_back(command);
        command.clear();
    }
    return commands;
}

TEST(Readme, EveryCpuCommandRunsAsWritten) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "minutes of SmolLM2 on the CPU under AddressSanitizer; the release suite runs it";
#endif
    LAMINA_REQUIRE_SMOLLM2();
    const auto commands = readme_commands(test::read_file(test::source_dir() / "README.md"));
    ASSERT_GE(commands.size(), 12u) << "the README's command examples were not found";
    test::TempDir dir;
    for (const char* d : {"models", "examples", "data", "tests"})
        std::filesystem::create_directory_symlink(test::source_dir() / d, dir / d);
    std::filesystem::create_directory_symlink(std::filesystem::path(test::lamina_binary()).parent_path(), dir / "build");
    const std::string env = "cd " + dir.path().string() + " && XDG_CACHE_HOME=" + (dir / "cache").string() + " ";
    for (const auto& c : commands) {
        const auto r = test::run_command(env + c + (c.find(" < ") == std::string::npos ? " < /dev/null" : ""));
        EXPECT_EQ(r.status, 0) << c << "\n" << r.output;
    }
}

}  // namespace
}  // namespace lamina
