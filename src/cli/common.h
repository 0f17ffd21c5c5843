// Helpers shared by the commands: the model flags (an engine, or a checkpoint built on the fly and
// cached), choosing a backend, sampling flags with the defaults users know, loading a tokenizer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "build/engine_writer.h"
#include "core/file_util.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace lamina::cli {

// Context that a checkpoint run without limit flags gets at most (tokens per sequence): a model trained
// for 128k would otherwise take gigabytes of KV cache for a short prompt. The flags raise it.
inline constexpr int64_t kDefaultMaxContext = 8192;

// The flags of every command that runs a model: where it comes from, the limits and dtype of an engine
// built from a checkpoint, and where it runs.
struct ModelArgs {
    std::string engine_dir, model_dir, dtype = "auto", device = "auto", cache_dir;
    int64_t max_batch_size = 0, max_input_len = 0, max_output_len = 0;  // 0: from the model's context
    int threads = 0;                                                     // 0: the machine's physical cores
    uint64_t kv_cache_bytes = 0;
    bool verbose = false;
};

// Adds --engine_dir, --model_dir, --dtype, --max_batch_size, --max_input_len, --device, --threads,
// --kv_cache_bytes, --cache_dir, --verbose, and --max_output_len unless the command has its own (run's
// --max_output_len is both the new-token budget and the limit).
void add_model_options(CLI::App* cmd, ModelArgs& a, bool with_max_output_len = true);

// What a command will ask of the engine, for the limits of one built on the fly: sequences at once,
// prompt and new tokens (0: whatever the context leaves).
struct Needs {
    int64_t batch = 1;
    int64_t input_len = 0;
    int64_t output_len = 0;
};

struct OpenedEngine {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<PrivateTempDir> temp_dir;  // no cache directory to keep the engine in: removed after it
    std::string device;                        // "cpu" or "cuda": --device with auto resolved
    OpenedEngine() = default;
    OpenedEngine(OpenedEngine&& o) noexcept = default;
    OpenedEngine& operator=(OpenedEngine&&) = delete;
    ~OpenedEngine();
};

// The engine of --engine_dir (limit flags are an error: its limits are built in), or of --model_dir:
// built once into the engine cache and reused, with limits from the flags or else from `needs` and the
// model's context (capped at kDefaultMaxContext).
OpenedEngine open_engine(const ModelArgs& a, const Needs& needs);
// `lamina build --weights` when not given: "keep" for a .gguf file (its block types), else "float".
std::string default_weights(const std::string& model_dir);
// Sets the limits of an engine opened from --model_dir again, once the command knows its needs better
// (e.g. the longest prompt after tokenizing): the flags, else `needs`. Nothing for an --engine_dir.
void fit_limits(const ModelArgs& a, OpenedEngine& opened, const Needs& needs);

// The backend for an opened engine (its resolved device and dtype, --threads).
std::unique_ptr<Backend> make_backend(const ModelArgs& a, const OpenedEngine& opened);

// "cpu", "cuda" or "auto" (cuda when built with it and a GPU is present, else cpu) -> "cpu" or "cuda".
std::string resolve_device(const std::string& device);

// Integer flags are checked on their text before CLI11 converts it, since CLI11 2.1 reads "-1" into an
// unsigned flag as 2^64-1, saturates a number past 2^63 without a word and reads "010" as octal. A
// decimal integer in [lo, hi] is rewritten canonical for CLI11; anything else is a usage error (exit 2)
// naming the flag and the value, cut to its first characters: "--seed: -1 is not an integer in 0 to
// 18446744073709551615". Use with Option::transform, which may rewrite the text.
CLI::Validator integer_in(int64_t lo, uint64_t hi);
// Most tokens a flag may ask for: ModelConfig's bound on any context (kMaxContext).
inline constexpr int64_t kMaxFlagTokens = int64_t{1} << 24;
// Most sequences at once (--max_batch_size, --batch_size).
inline constexpr int64_t kMaxFlagBatch = 4096;

// --kv_cache_bytes: the KV cache's byte budget (binary suffixes accepted: 512MiB, 4G); 0 sizes it from
// the engine's limits.
void add_kv_cache_option(CLI::App* cmd, uint64_t& bytes);

// Sampling flags. Greedy with none of them; --temperature > 0 or --top_p < 1 without --top_k samples
// from the whole distribution (top-k off), as Hugging Face generate and llama.cpp do. Without --seed each
// run draws a fresh seed (reported: resolve() returns it, --verbose prints it).
struct SamplingArgs {
    float temperature = 1.0f, top_p = 1.0f, repetition_penalty = 1.0f;
    int32_t top_k = 1;
    uint64_t seed = 0;
    CLI::Option *temperature_opt = nullptr, *top_p_opt = nullptr, *top_k_opt = nullptr, *seed_opt = nullptr;
};
// seed_flag: the seed's flag name (summarize.py calls it --random_seed).
void add_sampling_options(CLI::App* cmd, SamplingArgs& s, const std::string& seed_flag = "--seed");
SamplingParams resolve_sampling(const SamplingArgs& s);

// Writes `j` (indented by `indent`) to `path`, the value of `flag`; a failure names both.
void write_json_file(const std::string& path, const nlohmann::json& j, const std::string& flag, int indent = 2);

// Tokenizer of a .gguf file, a Hugging Face directory, or an engine directory.
Tokenizer load_tokenizer(const std::filesystem::path& path);

// The text of `path`, the value of `flag`: a regular file of valid UTF-8 (else an error naming both).
std::string read_text_file(const std::string& path, const std::string& flag);

// A file that ships in the repository (data/…), given relative to its root: found from the working
// directory, or from a directory above the binary's (a build directory). `hint` ends the error when
// neither has it ("pass --dataset_path").
std::filesystem::path find_shipped_file(const std::string& relative_path, const std::string& hint);

}  // namespace lamina::cli
