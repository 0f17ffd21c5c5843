// Shared helpers for the tokenizer tests: where the fixtures are, and readers for their formats.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace lamina::test {

inline std::filesystem::path source_dir() { return LAMINA_SOURCE_DIR; }
inline std::filesystem::path tokenizer_data_dir() { return source_dir() / "tests" / "data" / "tokenizer"; }

// The default model; CI fetches it before the tests (scripts/), a fresh checkout may lack it.
inline std::filesystem::path smollm2_gguf() { return source_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"; }
// Hugging Face tokenizer files for SmolLM2, written by transformers (tools/).
inline std::filesystem::path smollm2_hf_dir() { return source_dir() / "tests" / "data" / "smollm2_hf_tokenizer"; }

// CNN/DailyMail test rows 0..499: the project's copy under data/, else the shared one next to the repo.
inline std::filesystem::path cnn_dailymail_jsonl() {
    const auto own = source_dir() / "data" / "cnn_dailymail" / "test.jsonl";
    if (std::filesystem::exists(own)) return own;
    return source_dir() / ".." / "shared" / "data" / "cnn_dailymail" / "test.jsonl";
}

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << "cannot open " << path;
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_file(const std::filesystem::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

// llama.cpp's .inp format: every text is followed by this separator (see PROVENANCE.md).
inline std::vector<std::string> read_inp(const std::filesystem::path& path) {
    const std::string separator = "\n__ggml_vocab_test__\n";
    const std::string all = read_file(path);
    std::vector<std::string> texts;
    size_t start = 0;
    for (size_t at = all.find(separator); at != std::string::npos; at = all.find(separator, start)) {
        texts.push_back(all.substr(start, at - start));
        start = at + separator.size();
    }
    return texts;
}

// llama.cpp's .out format: one line per text, each id written as " <id>".
inline std::vector<std::vector<int32_t>> read_out(const std::filesystem::path& path) {
    std::vector<std::vector<int32_t>> out;
    std::istringstream lines(read_file(path));
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream ids(line);
        std::vector<int32_t> row;
        int32_t id = 0;
        while (ids >> id) row.push_back(id);
        out.push_back(row);
    }
    return out;
}

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
public:
    explicit TempDir(const std::string& name)
        : path_(std::filesystem::temp_directory_path() / ("lamina_" + name + "_" + std::to_string(::getpid()))) {
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

}  // namespace lamina::test
