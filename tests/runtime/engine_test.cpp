// Engine directories: round trip of build + load, and refusal of wrong-version or corrupt engines.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/generator.h"

namespace lamina {
namespace {

using test::TempDir;

void expect_refused(const std::filesystem::path& dir, const std::string& needle) {
    try {
        Engine e(dir);
        ADD_FAILURE() << "engine accepted; expected an error mentioning " << needle;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

class EngineFiles : public ::testing::Test {
protected:
    void SetUp() override { test::build_from(test::data_dir() / "tiny_llama", dir.path(), DType::F16, 32, 16); }
    TempDir dir;
};

TEST_F(EngineFiles, LoadsWithLimitsAndLayout) {
    Engine e(dir.path());
    EXPECT_EQ(e.dtype(), DType::F16);
    EXPECT_EQ(e.limits().max_input_len, 32);
    EXPECT_EQ(e.limits().max_output_len, 16);
    EXPECT_EQ(e.weights().layers.size(), 3u);
    EXPECT_EQ(e.weights().layers[0].wqkv.rows, 72 + 2 * 24);
    EXPECT_EQ(e.weights().layers[0].w_gate_up.rows, 2 * 200);
    for (const auto& L : e.weights().layers)
        EXPECT_EQ(reinterpret_cast<uintptr_t>(L.wqkv.data) % 64, 0u) << "tensors are 64-byte aligned";
}

TEST_F(EngineFiles, WrongFormatVersionIsRefused) {
    auto cfg = test::read_json(dir / "config.json");
    cfg["format_version"] = 99;
    test::write_file(dir / "config.json", cfg.dump());
    expect_refused(dir.path(), "format version 99");
}

TEST_F(EngineFiles, TruncatedWeightsAreRefused) {
    const auto w = dir / "weights.bin";
    std::filesystem::resize_file(w, std::filesystem::file_size(w) - 100);
    expect_refused(dir.path(), "truncated");
    std::filesystem::resize_file(w, 10);
    expect_refused(dir.path(), "weights.bin");
}

TEST_F(EngineFiles, BadMagicIsRefused) {
    std::string bytes = test::read_file(dir / "weights.bin");
    bytes[0] = 'X';
    test::write_file(dir / "weights.bin", bytes);
    expect_refused(dir.path(), "bad magic");
}

TEST_F(EngineFiles, CorruptConfigIsRefused) {
    const std::string cfg = test::read_file(dir / "config.json");
    test::write_file(dir / "config.json", cfg.substr(0, cfg.size() / 3));
    expect_refused(dir.path(), "config.json");
    auto j = nlohmann::json::parse(cfg);
    j["weights"]["tensors"][3]["offset"] = 7;  // misaligned and inconsistent
    test::write_file(dir / "config.json", j.dump());
    expect_refused(dir.path(), "inconsistent");
    j = nlohmann::json::parse(cfg);
    j["model"]["n_embd"] = 80;
    test::write_file(dir / "config.json", j.dump());
    expect_refused(dir.path(), "wrong shape");
}

TEST_F(EngineFiles, MissingDirectoryAndConfig) {
    expect_refused("/nonexistent/engine", "/nonexistent/engine");
    std::filesystem::remove(dir / "config.json");
    expect_refused(dir.path(), "config.json");
}

TEST(EngineBuild, LimitsBeyondContextAreRefused) {
    TempDir dir;
    try {
        test::build_from(test::data_dir() / "tiny_llama", dir.path(), DType::F32, 200, 100);  // n_ctx is 256
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("context length 256"), std::string::npos) << e.what();
    }
}

TEST(EngineBuild, RandomTinyEngineRunsAndIsDeterministic) {
    TempDir a, b;
    BuildOptions o;
    o.dtype = DType::BF16;
    o.max_input_len = 16;
    o.max_output_len = 8;
    build_engine(random_model_spec("tiny", 42), o, a.path());
    build_engine(random_model_spec("tiny", 42), o, b.path());
    EXPECT_EQ(test::read_file(a / "weights.bin"), test::read_file(b / "weights.bin"));
    Engine e(a.path());
    EXPECT_FALSE(e.has_tokenizer());
    EXPECT_THROW(e.tokenizer(), Error);
    auto backend = make_cpu_backend();
    Generator gen(e, *backend, 1);
    GenerationParams p;
    p.max_new_tokens = 8;
    p.sampling.temperature = 0.0f;
    EXPECT_EQ(gen.generate({{1, 2, 3}}, p)[0].size(), 8u);
    EXPECT_THROW(random_model_spec("llama-13b", 0), Error);
}

}  // namespace
}  // namespace lamina
