// Issue 24's size-arithmetic and range reproducers: config integers whose products overflow, sizes past the
// bounds of model_config.h, tensor shapes whose element or byte counts overflow, engine limits of 2^62, and
// non-finite or absurd floats. Each must be one lamina::Error naming the key (or tensor) and its value.
#include <gtest/gtest.h>

#include <cstring>

#include "../test_util.h"
#include "backend/backend.h"
#include "core/checked.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "runtime/engine.h"

namespace lamina {
namespace {

using test::TempDir;

void expect_mentions(const std::string& msg, std::initializer_list<std::string> needles) {
    EXPECT_FALSE(msg.empty()) << "accepted";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "no '" << n << "' in: " << msg;
}

TEST(CheckedArithmetic, OverflowNamesWhatWasComputed) {
    EXPECT_EQ(checked_mul(int64_t{1} << 31, int64_t{1} << 31, "x"), int64_t{1} << 62);
    EXPECT_EQ(checked_add(uint64_t{1} << 63, (uint64_t{1} << 63) - 1, "x"), ~uint64_t{0});
    expect_mentions(test::error_of([] { checked_mul(int64_t{4611686018427387910}, int64_t{16}, "n_head * head_dim"); }),
                    {"n_head * head_dim", "4611686018427387910 * 16", "overflows"});
    expect_mentions(test::error_of([] { checked_mul(uint64_t{1} << 62, uint64_t{4}, "tensor bytes"); }), {"tensor bytes"});
    expect_mentions(test::error_of([] { checked_add(INT64_MAX, int64_t{1}, "in + out"); }), {"in + out"});
    const std::vector<int64_t> big{int64_t{1} << 40, int64_t{1} << 40};
    expect_mentions(test::error_of([&] { checked_product(big, "tensor 'w' element count"); }), {"tensor 'w' element count"});
    const std::vector<int64_t> negative{4, -1};
    expect_mentions(test::error_of([&] { checked_product(negative, "shape"); }), {"shape", "-1"});
}

// The products of an unvalidated config throw rather than wrap (validate() refuses such a config first).
TEST(CheckedArithmetic, ConfigDimsAndKvBytes) {
    ModelConfig c;
    c.n_head = c.n_head_kv = 4611686018427387910;
    c.head_dim = 16;
    expect_mentions(test::error_of([&] { (void)c.q_dim(); }), {"n_head * head_dim"});
    expect_mentions(test::error_of([&] { (void)c.kv_dim(); }), {"n_head_kv * head_dim"});
    KvCache kv;
    kv.n_slot = 1, kv.n_layer = 1 << 20, kv.n_ctx = int64_t{1} << 62, kv.kv_dim = 64;
    expect_mentions(test::error_of([&] { (void)kv.bytes(); }), {"KV cache bytes"});
    kv.n_layer = 2, kv.n_ctx = 8;
    EXPECT_EQ(kv.bytes(), 2u * 2 * 8 * 64 * 4);
}

nlohmann::json llama_config() { return test::tiny_llama_hf_config(); }

std::string hf_refusal(const nlohmann::json& j) {
    TempDir dir;
    test::write_file(dir / "config.json", j.dump());
    return test::error_of([&] { model_config_from_hf(dir / "config.json"); });
}

// The reproducer: a checkpoint whose head count times head_dim overflows built, then crashed `run`.
TEST(ConfigBounds, HugeHeadCountIsRefusedAtBuild) {
    TempDir src, out;
    for (const auto& f : std::filesystem::directory_iterator(test::data_dir() / "tiny_llama"))
        std::filesystem::copy(f.path(), src / f.path().filename(), std::filesystem::copy_options::recursive);
    auto j = test::read_json(src / "config.json");
    j["num_attention_heads"] = 4611686018427387910;
    j["num_key_value_heads"] = 4611686018427387910;
    test::write_file(src / "config.json", j.dump());
    expect_mentions(test::error_of([&] { test::build_from(src.path(), out.path(), DType::F32, 16, 16); }),
                    {"config.json", "num_attention_heads = 4611686018427387910", "2^20"});
}

TEST(ConfigBounds, HfSizesAboveTheBoundsNameTheirKey) {
    struct Case {
        const char* key;
        int64_t value;
    };
    for (const Case& k : {Case{"vocab_size", (int64_t{1} << 24) + 1}, Case{"hidden_size", (int64_t{1} << 20) + 1},
                          Case{"intermediate_size", int64_t{1} << 40}, Case{"num_hidden_layers", int64_t{1} << 62},
                          Case{"num_key_value_heads", (int64_t{1} << 20) + 2}, Case{"head_dim", int64_t{1} << 21},
                          Case{"max_position_embeddings", (int64_t{1} << 24) + 1}}) {
        auto j = llama_config();
        j[k.key] = k.value;
        expect_mentions(hf_refusal(j), {std::string(k.key) + " = " + std::to_string(k.value), "exceeds"});
    }
    // At the bounds, accepted.
    auto j = llama_config();
    j["max_position_embeddings"] = int64_t{1} << 24;
    j["vocab_size"] = int64_t{1} << 24;
    EXPECT_EQ(hf_refusal(j), "");
}

TEST(ConfigBounds, ValidateNamesTheFieldAboveItsBound) {
    TempDir dir;
    test::write_file(dir / "config.json", llama_config().dump());
    const ModelConfig good = model_config_from_hf(dir / "config.json");
    struct Case {
        int64_t ModelConfig::*field;
        const char* name;
        int64_t value;
    };
    for (const Case& k : {Case{&ModelConfig::n_vocab, "n_vocab", (int64_t{1} << 24) + 1},
                          Case{&ModelConfig::n_layer, "n_layer", (int64_t{1} << 20) + 1},
                          Case{&ModelConfig::n_head, "n_head", 4611686018427387910},
                          Case{&ModelConfig::n_ff, "n_ff", int64_t{1} << 62},
                          Case{&ModelConfig::n_ctx, "n_ctx", (int64_t{1} << 24) + 1},
                          Case{&ModelConfig::sliding_window, "sliding_window", int64_t{1} << 30}}) {
        ModelConfig c = good;
        c.*k.field = k.value;
        expect_mentions(test::error_of([&] { c.validate("origin"); }),
                        {"origin", std::string(k.name) + " = " + std::to_string(k.value)});
    }
}

TEST(ConfigBounds, HfAbsurdFloatsNameTheirKey) {
    struct Case {
        nlohmann::json edit;  // merged into the config
        std::vector<std::string> needles;
    };
    const nlohmann::json yarn = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
    const nlohmann::json llama3 = {{"rope_type", "llama3"}, {"rope_theta", 10000.0}, {"factor", 8.0},
                                   {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                   {"original_max_position_embeddings", 64}};
    auto with = [](nlohmann::json base, const char* key, nlohmann::json v) {
        base[key] = std::move(v);
        return nlohmann::json{{"rope_parameters", base}};
    };
    const Case cases[] = {
        {{{"rms_norm_eps", 0.0}}, {"rms_norm_eps = 0.0", "(0, 1)"}},
        {{{"rms_norm_eps", 1.5}}, {"rms_norm_eps = 1.5", "(0, 1)"}},
        {{{"rms_norm_eps", -1e-6}}, {"rms_norm_eps", "(0, 1)"}},
        {{{"rms_norm_eps", 1e39}}, {"rms_norm_eps = 1e+39", "32-bit float"}},
        {with(yarn, "rope_theta", 1e39), {"rope_parameters.rope_theta = 1e+39", "32-bit float"}},
        {with(yarn, "rope_theta", 0.0), {"rope_theta = 0", "above 0"}},
        {with(yarn, "factor", 1e39), {"rope_parameters.factor = 1e+39", "32-bit float"}},
        {with(yarn, "factor", 1e30), {"factor = 1e+30", "[1, 2^24]"}},
        {with(yarn, "factor", 0.5), {"factor = 0.5", "[1, 2^24]"}},
        {with(yarn, "beta_fast", 1e39), {"beta_fast = 1e+39"}},
        {with(yarn, "beta_slow", -1.0), {"beta_slow = -1", "above 0"}},
        {with(yarn, "attention_factor", 1e39), {"attention_factor = 1e+39"}},
        {with(llama3, "factor", 0.25), {"factor = 0.25", "[1, 2^24]"}},
        {with(llama3, "low_freq_factor", 1e39), {"low_freq_factor = 1e+39"}},
        {with(llama3, "high_freq_factor", -4.0), {"high_freq_factor = -4", "above 0"}},
        {with(llama3, "original_max_position_embeddings", int64_t{1} << 40),
         {"original_max_position_embeddings = " + std::to_string(int64_t{1} << 40), "2^24"}},
        {{{"rope_scaling", {{"type", "linear"}, {"factor", 1e20}}}}, {"factor = 1e+20", "[1, 2^24]"}},
    };
    for (const Case& k : cases) {
        auto j = llama_config();
        j.merge_patch(k.edit);
        std::vector<std::string> needles = k.needles;
        needles.push_back("config.json");
        const std::string msg = hf_refusal(j);
        EXPECT_FALSE(msg.empty()) << "accepted " << k.edit.dump();
        for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "no '" << n << "' in: " << msg;
    }
}

// An engine of tiny_llama whose config.json the tests edit.
class EngineBounds : public ::testing::Test {
protected:
    void SetUp() override {
        test::build_from(test::data_dir() / "tiny_llama", dir.path(), DType::F32, 16, 16);
        config = test::read_json(dir / "config.json");
    }
    std::string refusal_with(const nlohmann::json& edited) {
        test::write_file(dir / "config.json", edited.dump());
        return test::error_of([&] { Engine e(dir.path()); });
    }
    TempDir dir;
    nlohmann::json config;
};

// The reproducer: limits of 2^62 crashed the model's constructor; now the engine does not open.
TEST_F(EngineBounds, HugeLimitsAreRefusedWhenOpened) {
    for (const char* key : {"max_batch_size", "max_input_len", "max_output_len"}) {
        auto j = config;
        j["limits"][key] = int64_t{1} << 62;
        expect_mentions(refusal_with(j), {"config.json", std::string("limits.") + key + " = 4611686018427387904"});
    }
    auto j = config;
    j["limits"]["max_input_len"] = 200;  // within the bounds, past the model's 256 positions
    j["limits"]["max_output_len"] = 100;
    expect_mentions(refusal_with(j), {"max_input_len + max_output_len = 300", "256"});
    EXPECT_EQ(refusal_with(config), "");
    Engine e(dir.path());
    expect_mentions(test::error_of([&] { e.set_limits({1, int64_t{1} << 62, int64_t{1} << 62}); }),
                    {"--max_input_len = 4611686018427387904"});
    expect_mentions(test::error_of([&] { e.set_limits({0, 8, 8}); }), {"--max_batch_size = 0"});
}

TEST_F(EngineBounds, ModelSizesAndFloatsAreCheckedWhenOpened) {
    struct Case {
        nlohmann::json model_edit;
        std::string needle;
    };
    const Case cases[] = {
        {{{"n_head", 4611686018427387910}}, "n_head = 4611686018427387910"},
        {{{"n_layer", int64_t{1} << 62}}, "n_layer = 4611686018427387904"},
        {{{"n_vocab", (int64_t{1} << 24) + 1}}, "n_vocab = 16777217"},
        {{{"n_ctx", int64_t{1} << 62}}, "n_ctx = 4611686018427387904"},
        {{{"rms_eps", 2.0}}, "rms_eps = 2"},
        {{{"rms_eps", 1e39}}, "rms_eps = 1e+39"},
        {{{"rope_theta", -1.0}}, "rope_theta = -1"},
        {{{"rope_theta", 1e300}}, "rope_theta = 1e+300"},
        {{{"rope_scaling", {{"type", "linear"}, {"factor", 1e39}}}}, "rope_scaling.factor = 1e+39"},
        {{{"rope_scaling", {{"type", "linear"}, {"factor", 1e30}}}}, "factor = 1e+30"},
        {{{"rope_scaling", {{"type", "yarn"}, {"beta_fast", 1e39}}}}, "rope_scaling.beta_fast = 1e+39"},
        {{{"rope_scaling", {{"type", "llama3"}, {"original_max_position", int64_t{1} << 62}}}},
         "original_max_position_embeddings = 4611686018427387904"},
    };
    for (const Case& k : cases) {
        auto j = config;
        j["model"].merge_patch(k.model_edit);
        expect_mentions(refusal_with(j), {"config.json", k.needle});
    }
}

// Tensor shapes whose element count or byte count overflows 64 bits name the tensor.
TEST(ConfigBounds, SafetensorsShapeProductsAreChecked) {
    TempDir dir;
    auto write = [&](const nlohmann::json& shape) {
        const std::string header = nlohmann::json{{"w", {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {0, 4}}}}}.dump();
        const uint64_t n = header.size();
        test::write_file(dir / "model.safetensors", std::string(reinterpret_cast<const char*>(&n), 8) + header + "abcd");
        return test::error_of([&] { SafetensorsFile f(dir / "model.safetensors"); });
    };
    expect_mentions(write({int64_t{1} << 40, int64_t{1} << 40}), {"tensor 'w'", "element count", "overflows"});
    expect_mentions(write({int64_t{1} << 40, int64_t{1} << 22}), {"tensor 'w'", "bytes", "overflows"});
    expect_mentions(write({1, 2}), {"tensor 'w'", "holds 4 bytes but its shape needs 8"});
}

// A GGUF v3 file of one F32 tensor of this shape and no metadata.
std::string gguf_with_tensor(const std::vector<uint64_t>& shape) {
    auto raw = [](auto v) { return std::string(reinterpret_cast<const char*>(&v), sizeof v); };
    std::string b = "GGUF" + raw(uint32_t{3}) + raw(uint64_t{1}) + raw(uint64_t{0});
    b += raw(uint64_t{1}) + "w" + raw(static_cast<uint32_t>(shape.size()));
    for (auto d : shape) b += raw(d);
    b += raw(uint32_t{0}) + raw(uint64_t{0});  // F32 at offset 0
    return b + std::string(64, '\0');
}

TEST(ConfigBounds, GgufElementAndByteCountsAreChecked) {
    TempDir dir;
    auto refusal = [&](const std::vector<uint64_t>& shape) {
        test::write_file(dir / "t.gguf", gguf_with_tensor(shape));
        return test::error_of([&] { GgufFile f(dir / "t.gguf"); });
    };
    expect_mentions(refusal({uint64_t{1} << 40, uint64_t{1} << 40}), {"t.gguf", "tensor 'w'", "element count", "overflows"});
    expect_mentions(refusal({uint64_t{1} << 40, uint64_t{1} << 22}), {"t.gguf", "tensor 'w'", "n_bytes", "overflows"});
    expect_mentions(refusal({32, 4}), {"tensor 'w'", "outside the file"});  // 512 bytes in 64: the range check still runs
}

}  // namespace
}  // namespace lamina
