// Helpers shared by the commands: choosing a backend, opening an engine (or building one on the fly
// from a checkpoint), loading a tokenizer from any model path.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "backend/backend.h"
#include "build/engine_writer.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"

namespace lamina::cli {

// "cpu", "cuda" or "auto" (cuda when built with it and a GPU is present, else cpu). On CUDA the
// activations and KV cache take the engine's dtype.
std::unique_ptr<Backend> make_backend(const std::string& device, DType engine_dtype);

// --kv_cache_bytes: the KV cache's byte budget (binary suffixes accepted: 512MiB, 4G); 0 sizes it from
// the engine's limits.
void add_kv_cache_option(CLI::App* cmd, uint64_t& bytes);

// An engine from --engine_dir, or built into a temporary directory from --model_dir.
struct OpenedEngine {
    std::unique_ptr<Engine> engine;
    std::filesystem::path temp_dir;  // removed on destruction when set
    OpenedEngine() = default;
    OpenedEngine(OpenedEngine&& o) noexcept : engine(std::move(o.engine)), temp_dir(std::exchange(o.temp_dir, {})) {}
    OpenedEngine& operator=(OpenedEngine&&) = delete;
    ~OpenedEngine();
};
OpenedEngine open_engine(const std::string& engine_dir, const std::string& model_dir, const BuildOptions& build);

// Tokenizer of a .gguf file, a Hugging Face directory, or an engine directory.
Tokenizer load_tokenizer(const std::filesystem::path& path);

}  // namespace lamina::cli
