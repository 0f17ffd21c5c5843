// What every libFuzzer harness shares: a private scratch directory, inputs split into files, and the
// rule that a loader may only fail with lamina::Error. Any other exception (a raw nlohmann message, a
// std::filesystem error, std::bad_alloc) is a finding: it escapes the harness and libFuzzer reports it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"

namespace lamina::fuzz {

// A harness reading several files takes them from one input cut at this line (seeds and the
// dictionaries in fuzz/ use it; libFuzzer's mutations keep it or drop it, both are interesting).
inline constexpr std::string_view kPartSeparator = "\n#LAMINA-FUZZ-PART#\n";

inline std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t max_parts) {
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> parts;
    while (parts.size() + 1 < max_parts) {
        const size_t at = rest.find(kPartSeparator);
        if (at == std::string_view::npos) break;
        parts.push_back(rest.substr(0, at));
        rest.remove_prefix(at + kPartSeparator.size());
    }
    parts.push_back(rest);
    return parts;
}

// One private directory per fuzzing process (mkdtemp under $TMPDIR or /tmp).
inline const std::filesystem::path& scratch_dir() {
    static const auto dir = [] {
        const char* tmp = std::getenv("TMPDIR");
        return std::make_unique<PrivateTempDir>(tmp && *tmp ? tmp : "/tmp", "lamina-fuzz-");
    }();
    return dir->path();
}

// The harness's directory in the scratch directory, made once and kept: each input's files are written over
// the last input's by write_input_files, far cheaper per input than emptying the directory and making it again.
inline std::filesystem::path input_dir(const std::string& name) {
    const auto dir = scratch_dir() / name;
    std::filesystem::create_directories(dir);
    return dir;
}

inline std::filesystem::path write_file(const std::filesystem::path& path, std::string_view bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
}

// A file of an input: its name in the input directory and its bytes, or nullopt when this input has none.
struct InputFile {
    const char* name;
    std::optional<std::string_view> bytes;
};

// Writes the files this input has into `dir` and removes those it lacks, so that no file of an earlier input
// is left behind: `files` names every file the harness ever writes.
inline void write_input_files(const std::filesystem::path& dir, std::initializer_list<InputFile> files) {
    for (const InputFile& f : files) {
        if (f.bytes) {
            write_file(dir / f.name, *f.bytes);
        } else {
            std::error_code ignored;  // usually absent already
            std::filesystem::remove(dir / f.name, ignored);
        }
    }
}

// parts[i] when the input has it.
inline std::optional<std::string_view> part(const std::vector<std::string_view>& parts, size_t i) {
    return i < parts.size() ? std::optional(parts[i]) : std::nullopt;
}

// Runs `body`; a lamina::Error is the clean outcome for bad input, anything else escapes.
template <class F>
void expect_clean(F&& body) {
    try {
        body();
    } catch (const lamina::Error& e) {
        // The message is what a command prints as its one line: never empty, never several lines.
        const std::string_view what = e.what();
        if (what.empty() || what.find('\n') != std::string_view::npos) {
            std::fprintf(stderr, "lamina::Error that is not one line: [%s]\n", e.what());
            std::abort();
        }
    }
}

// Weights are read only up to this many elements each, so a valid-looking huge tensor costs no time.
inline constexpr int64_t kMaxReadElements = int64_t{1} << 20;

// Room for n floats, exactly (AddressSanitizer sees a write past the end) and not zeroed (the reader writes
// every element; zeroing them first took a twentieth of the GGUF harness's time).
inline std::unique_ptr<float[]> float_buffer(int64_t n) {
    return std::make_unique_for_overwrite<float[]>(static_cast<size_t>(n));
}

}  // namespace lamina::fuzz
