// Shared test helpers: where the data lives, scratch directories, building engines, reading fixtures.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "build/engine_writer.h"
#include "core/error.h"
#include "model/model_spec.h"
#include "runtime/engine.h"

namespace lamina::test {

inline std::filesystem::path source_dir() { return LAMINA_SOURCE_DIR; }
inline std::filesystem::path data_dir() { return source_dir() / "tests" / "data"; }
inline std::filesystem::path smollm2_gguf() { return source_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"; }

#define LAMINA_REQUIRE_SMOLLM2()                                                                          \
    do {                                                                                                  \
        if (!std::filesystem::exists(::lamina::test::smollm2_gguf()))                                     \
            GTEST_SKIP() << "models/SmolLM2-135M-Instruct.Q4_1.gguf is absent (scripts/fetch_model.sh)"; \
    } while (0)

// A directory removed when the object goes away.
class TempDir {
public:
    TempDir() {
        static int counter = 0;
        path_ = std::filesystem::temp_directory_path() /
                ("lamina-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

private:
    std::filesystem::path path_;
};

// A small LLaMA HF config.json (tiny_llama's shapes, transformers 5.x layout); tests add, change or erase keys.
inline nlohmann::json tiny_llama_hf_config() {
    return nlohmann::json::parse(R"({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 384, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}})");
}

inline nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Builds an engine from a checkpoint path into `dir`.
inline void build_from(const std::filesystem::path& model, const std::filesystem::path& dir, DType dtype,
                       int64_t max_input_len, int64_t max_output_len, int64_t max_batch_size = 1,
                       bool rmsnorm_plugin = true) {
    BuildOptions o;
    o.dtype = dtype;
    o.max_input_len = max_input_len;
    o.max_output_len = max_output_len;
    o.max_batch_size = max_batch_size;
    o.rmsnorm_plugin = rmsnorm_plugin;
    build_engine(load_model_spec(model), o, dir);
}

// Normal(0, scale) values from a fixed seed.
inline std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// ||a - b|| / ||b|| over two equal-length vectors.
inline double rel_error(const float* a, const float* b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        num += d * d;
        den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / den);
}

// Runs a shell command, returning its exit status and combined output.
struct CommandResult {
    int status;
    std::string output;
};
inline CommandResult run_command(const std::string& cmd) {
    CommandResult r{0, ""};
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    return r;
}
inline std::string lamina_binary() { return LAMINA_BINARY; }

// The message of the lamina::Error that f throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// The tiny_llama fixture as an f32 engine (max_input_len 24, max_output_len 20, 4 sequences) on the CPU.
class TinyEngineTest : public ::testing::Test {
protected:
    void SetUp() override {
        build_from(data_dir() / "tiny_llama", dir.path(), DType::F32, 24, 20, /*max_batch_size=*/4);
        engine = std::make_unique<Engine>(dir.path());
        backend = make_cpu_backend();
    }
    TempDir dir;
    std::unique_ptr<Engine> engine;
    std::unique_ptr<Backend> backend;
};

}  // namespace lamina::test
