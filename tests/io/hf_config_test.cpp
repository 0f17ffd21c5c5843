// config.json -> ModelConfig in both layouts transformers writes: 4.x (`rope_theta` and `rope_scaling` at the
// top level) and 5.x (`rope_parameters`), for LLaMA and Mistral; and every key lamina refuses, by name.
#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "core/error.h"
#include "io/hf_config.h"

namespace lamina {
namespace {

using test::TempDir;
using Kind = RopeScaling::Kind;

nlohmann::json llama_v5() { return test::tiny_llama_hf_config(); }

// The same model in the 4.x layout.
nlohmann::json llama_v4() {
    auto j = llama_v5();
    j.erase("rope_parameters");
    j["rope_theta"] = 10000.0;
    j["rope_scaling"] = nullptr;
    return j;
}

nlohmann::json mistral_v5() {
    auto j = llama_v5();
    j["architectures"] = {"MistralForCausalLM"};
    j["model_type"] = "mistral";
    return j;
}

ModelConfig read(const nlohmann::json& j) {
    TempDir dir;
    test::write_file(dir / "config.json", j.dump());
    return model_config_from_hf(dir / "config.json");
}

// The error's message for this config; fails the test when it is accepted.
std::string refusal(const nlohmann::json& j) {
    try {
        read(j);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "accepted " << j.dump();
    return "";
}

void expect_mentions(const std::string& msg, std::initializer_list<const char*> needles) {
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
    for (const char* n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "no '" << n << "' in: " << msg;
}

TEST(HfConfig, DefaultRopeInBothLayouts) {
    for (const auto& j : {llama_v4(), llama_v5()}) {
        const ModelConfig c = read(j);
        EXPECT_EQ(c.rope_scaling.kind, Kind::None);
        EXPECT_EQ(c.rope_theta, 10000.0f);
        EXPECT_EQ(c.rope_scaling.attention_factor, 1.0f);
        EXPECT_EQ(c.n_head_kv, 2);
        EXPECT_EQ(c.head_dim, 16);
        EXPECT_EQ(c.n_ctx, 256);
        EXPECT_EQ(c.sliding_window, 0);
    }
}

TEST(HfConfig, EachRopeTypeInBothLayouts) {
    struct Case {
        nlohmann::json params;  // without rope_theta
        Kind kind;
    };
    const Case cases[] = {
        {{{"rope_type", "linear"}, {"factor", 2.5}}, Kind::Linear},
        {{{"rope_type", "dynamic"}, {"factor", 2}}, Kind::Dynamic},
        {{{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
          {"original_max_position_embeddings", 32}},
         Kind::Llama3},
        {{{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 64}}, Kind::Yarn},
    };
    for (const Case& k : cases) {
        auto v5 = llama_v5();
        v5["rope_parameters"] = k.params;
        v5["rope_parameters"]["rope_theta"] = 500000.0;
        auto v4 = llama_v4();
        v4["rope_theta"] = 500000.0;
        v4["rope_scaling"] = k.params;
        auto v4_type = v4;  // the oldest spelling: "type" instead of "rope_type"
        v4_type["rope_scaling"]["type"] = v4_type["rope_scaling"]["rope_type"];
        v4_type["rope_scaling"].erase("rope_type");
        for (const auto& j : {v5, v4, v4_type}) {
            const ModelConfig c = read(j);
            SCOPED_TRACE(j.dump());
            EXPECT_EQ(c.rope_scaling.kind, k.kind);
            EXPECT_EQ(c.rope_theta, 500000.0f);
            EXPECT_EQ(c.rope_scaling.factor, k.params["factor"].get<float>());
            if (k.kind == Kind::Llama3) {
                EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
                EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
                EXPECT_EQ(c.rope_scaling.original_max_position, 32);
            }
            if (k.kind == Kind::Yarn) {
                EXPECT_EQ(c.rope_scaling.original_max_position, 64);
                EXPECT_EQ(c.rope_scaling.beta_fast, 32.0f);
                EXPECT_EQ(c.rope_scaling.beta_slow, 1.0f);
                EXPECT_TRUE(c.rope_scaling.truncate);
                EXPECT_FLOAT_EQ(c.rope_scaling.attention_factor, static_cast<float>(0.1 * std::log(4.0) + 1.0));
            }
        }
    }
}

TEST(HfConfig, YarnAttentionFactorAndDefaults) {
    auto j = llama_v5();
    j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e6}, {"factor", 2.0}, {"beta_fast", 8},
                            {"beta_slow", 2}, {"truncate", false}, {"mscale", 1.5}, {"mscale_all_dim", 0.8}};
    ModelConfig c = read(j);
    // transformers' default original context is max_position_embeddings; the factor from mscale / mscale_all_dim.
    EXPECT_EQ(c.rope_scaling.original_max_position, 256);
    EXPECT_EQ(c.rope_scaling.beta_fast, 8.0f);
    EXPECT_EQ(c.rope_scaling.beta_slow, 2.0f);
    EXPECT_FALSE(c.rope_scaling.truncate);
    EXPECT_FLOAT_EQ(c.rope_scaling.attention_factor,
                    static_cast<float>((0.15 * std::log(2.0) + 1.0) / (0.08 * std::log(2.0) + 1.0)));

    j["rope_parameters"]["attention_factor"] = 1.25;  // an explicit factor wins over mscale
    EXPECT_EQ(read(j).rope_scaling.attention_factor, 1.25f);

    // A null factor is max_position_embeddings / original; beta 0 or null takes the default, as `or` does.
    j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", nullptr}, {"original_max_position_embeddings", 64},
                            {"beta_fast", 0}, {"beta_slow", nullptr}};
    c = read(j);
    EXPECT_EQ(c.rope_scaling.factor, 4.0f);
    EXPECT_EQ(c.rope_scaling.beta_fast, 32.0f);
    EXPECT_EQ(c.rope_scaling.beta_slow, 1.0f);
    EXPECT_EQ(c.rope_theta, 10000.0f);  // neither rope_parameters nor the top level names one
}

TEST(HfConfig, WhichRopeKeysWin) {
    // As transformers 5: a non-empty rope_scaling replaces rope_parameters; rope_parameters' theta beats the top level's.
    auto j = llama_v5();
    j["rope_theta"] = 1234.0;
    j["rope_parameters"]["rope_theta"] = 5000.0;
    EXPECT_EQ(read(j).rope_theta, 5000.0f);
    j["rope_parameters"].erase("rope_theta");
    EXPECT_EQ(read(j).rope_theta, 1234.0f);
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 3.0}};
    EXPECT_EQ(read(j).rope_scaling.kind, Kind::Linear);
    j["rope_scaling"] = nlohmann::json::object();  // empty: rope_parameters is used
    EXPECT_EQ(read(j).rope_scaling.kind, Kind::None);
}

TEST(HfConfig, FamiliesAndTheirDefaults) {
    auto l = llama_v5();
    l["attention_bias"] = true;
    l["mlp_bias"] = true;
    l["tie_word_embeddings"] = true;
    l["sliding_window"] = 16;  // transformers' Llama has no sliding window: the key changes nothing
    l.erase("num_key_value_heads");
    l.erase("head_dim");
    l.erase("max_position_embeddings");
    ModelConfig c = read(l);
    EXPECT_TRUE(c.block.attn_bias && c.block.mlp_bias && c.block.tied_embeddings);
    EXPECT_EQ(c.sliding_window, 0);
    // LLaMA's block: RMSNorm, SwiGLU, RoPE, full attention in every layer.
    using B = BlockDescription;
    EXPECT_EQ(c.block.norm, B::Norm::RmsNorm);
    EXPECT_EQ(c.block.activation, B::Activation::Silu);
    EXPECT_EQ(c.block.position, B::Position::Rope);
    EXPECT_FALSE(c.block.qk_norm);
    EXPECT_EQ(c.block.embedding_scale, 1.0f);
    for (int64_t l = 0; l < c.n_layer; ++l) EXPECT_EQ(c.block.attention(l), B::Attention::Full) << l;
    EXPECT_EQ(c.n_head_kv, 4);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.n_ctx, 2048);

    auto m = mistral_v5();
    m["attention_bias"] = true;  // Mistral's projections have no biases whatever the config says
    m["num_attention_heads"] = 16;
    m.erase("num_key_value_heads");
    m.erase("max_position_embeddings");
    c = read(m);
    EXPECT_FALSE(c.block.attn_bias);
    // MistralConfig's defaults for absent keys.
    EXPECT_EQ(c.sliding_window, 4096);
    for (int64_t l = 0; l < c.n_layer; ++l) EXPECT_EQ(c.block.attention(l), B::Attention::Sliding) << l;
    EXPECT_EQ(c.n_head_kv, 8);
    EXPECT_EQ(c.n_ctx, 131072);
    m["sliding_window"] = nullptr;
    EXPECT_EQ(read(m).sliding_window, 0);
    EXPECT_EQ(read(m).block.attention(0), B::Attention::Full);
    m["sliding_window"] = 128;
    EXPECT_EQ(read(m).sliding_window, 128);

    auto only_type = mistral_v5();  // config.save_pretrained writes no architectures
    only_type.erase("architectures");
    EXPECT_EQ(read(only_type).sliding_window, 4096);
}

TEST(HfConfig, RefusalsNameKeyAndValue) {
    auto j = llama_v5();
    j["rope_parameters"]["rope_type"] = "longrope";
    expect_mentions(refusal(j), {"rope_parameters.rope_type", "longrope"});

    j = llama_v4();
    j["rope_scaling"] = {{"type", "su"}, {"factor", 2.0}};
    expect_mentions(refusal(j), {"rope_scaling.type", "su"});

    j = llama_v5();
    j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
    expect_mentions(refusal(j), {"quantization_config", "gptq"});

    j = llama_v5();
    j["rope_parameters"]["partial_rotary_factor"] = 0.5;
    expect_mentions(refusal(j), {"rope_parameters.partial_rotary_factor", "0.5"});
    j = llama_v4();
    j["partial_rotary_factor"] = 0.25;
    expect_mentions(refusal(j), {"partial_rotary_factor", "0.25"});

    j = llama_v5();
    j["rope_parameters"] = {{"rope_type", "linear"}};
    expect_mentions(refusal(j), {"rope_parameters.factor", "missing"});
    j["rope_parameters"]["factor"] = "2";
    expect_mentions(refusal(j), {"rope_parameters.factor", "\"2\""});
    j["rope_parameters"]["factor"] = -2.0;
    expect_mentions(refusal(j), {"factor"});

    j = llama_v5();
    j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}}, {"sliding_attention", {{"rope_type", "default"}}}};
    expect_mentions(refusal(j), {"rope_parameters.full_attention"});

    j = llama_v5();
    j["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}};
    expect_mentions(refusal(j), {"rope_parameters.high_freq_factor"});

    j = llama_v5();
    j["hidden_act"] = "gelu";
    expect_mentions(refusal(j), {"hidden_act", "gelu"});

    j = llama_v5();
    j["num_attention_heads"] = 4.5;
    expect_mentions(refusal(j), {"num_attention_heads", "4.5"});

    j = llama_v5();
    j["model_type"] = "mistral";
    expect_mentions(refusal(j), {"LlamaForCausalLM", "mistral"});

    j = mistral_v5();
    j["sliding_window"] = "4096";
    expect_mentions(refusal(j), {"sliding_window", "\"4096\""});
}

// Issue 24. The reproducers: hidden_size 72.9 read as 72 (nlohmann's get<int64_t> truncates), 2^64 - 1 read as -1,
// and rope_scaling = [] or {"factor": 2.0} silently read as no scaling.
TEST(HfConfig, IntegersMustBeJsonIntegers) {
    struct Case {
        const char* key;
        nlohmann::json value;
        const char* why;
    };
    const Case cases[] = {
        {"hidden_size", 72.9, "expected an integer"},
        {"num_hidden_layers", 2.5, "expected an integer"},
        {"hidden_size", 64.0, "expected an integer"},
        {"num_attention_heads", nlohmann::json::parse("4e0"), "expected an integer"},
        {"intermediate_size", "96", "expected an integer"},
        {"num_hidden_layers", true, "expected an integer"},
        {"vocab_size", nlohmann::json::array({384}), "expected an integer"},
        {"max_position_embeddings", nlohmann::json::parse("18446744073709551615"), "beyond the range of a 64-bit integer"},
        {"num_key_value_heads", nlohmann::json::parse("18446744073709551616"), "expected an integer"},
        {"hidden_size", -64, "must be positive"},
        {"num_hidden_layers", 0, "must be positive"},
        {"head_dim", -16, "must be positive"},
        // Special ids come from the tokenizer files, but a damaged value here is not taken silently either
        // (the mutation run's accepted-what-transformers-refuses cases).
        {"eos_token_id", 2.5, "expected an integer"},
        {"eos_token_id", nlohmann::json::array({2, true}), "element 1"},
        {"bos_token_id", "", "expected an integer"},
        {"pad_token_id", nlohmann::json::parse("1e308"), "expected an integer"},
    };
    for (const Case& k : cases) {
        auto j = llama_v5();
        j[k.key] = k.value;
        SCOPED_TRACE(j.dump());
        expect_mentions(refusal(j), {k.key, k.why});
    }
}

TEST(HfConfig, RopeScalingIsNullOrAnObjectWithAType) {
    for (const nlohmann::json& bad : {nlohmann::json("linear"), nlohmann::json::array({"linear", 2.0}), nlohmann::json::array(),
                                      nlohmann::json(2.0), nlohmann::json(false)}) {
        auto j = llama_v4();
        j["rope_scaling"] = bad;
        SCOPED_TRACE(bad.dump());
        expect_mentions(refusal(j), {"rope_scaling = ", "expected an object"});
    }
    // transformers 4 fails on a rope_scaling without a type, and 5 reads it as "default", dropping the factor.
    auto j = llama_v4();
    j["rope_scaling"] = {{"factor", 2.0}};
    expect_mentions(refusal(j), {"rope_scaling = {\"factor\":2.0}", "names no rope_type"});
    // null or absent: no scaling; {}: rope_parameters (transformers 5's `rope_scaling or rope_parameters`).
    j["rope_scaling"] = nullptr;
    EXPECT_EQ(read(j).rope_scaling.kind, Kind::None);
    j.erase("rope_scaling");
    EXPECT_EQ(read(j).rope_scaling.kind, Kind::None);
    auto v5 = llama_v5();
    v5["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}};
    v5["rope_scaling"] = nlohmann::json::object();
    EXPECT_EQ(read(v5).rope_scaling.kind, Kind::Linear);
    v5["rope_parameters"] = {{"rope_theta", 5000.0}};  // a 5.x rope_parameters without a type is the default RoPE
    EXPECT_EQ(read(v5).rope_scaling.kind, Kind::None);
    EXPECT_EQ(read(v5).rope_theta, 5000.0f);
    v5["rope_parameters"] = "default";
    expect_mentions(refusal(v5), {"rope_parameters = \"default\"", "expected an object"});
}

TEST(HfConfig, HostileValuesGiveOneLineNamingTheKey) {
    auto j = llama_v5();
    j["quantization_config"] = {{"quant_method", 4}};  // was nlohmann's type_error from json::value()
    expect_mentions(refusal(j), {"quantization_config", "not supported"});
    j = llama_v5();
    j["quantization_config"] = "gptq";
    expect_mentions(refusal(j), {"quantization_config", "not supported"});
    j = llama_v5();
    j["architectures"] = {"Evil\nModel"};
    expect_mentions(refusal(j), {"Evil\\nModel"});
    j = llama_v5();
    j["rms_norm_eps"] = "1e-6";
    expect_mentions(refusal(j), {"rms_norm_eps = \"1e-6\"", "expected a number"});
    j = llama_v5();
    j["tie_word_embeddings"] = "false";
    expect_mentions(refusal(j), {"tie_word_embeddings = \"false\"", "expected true or false"});
    TempDir dir;
    test::write_file(dir / "config.json", std::string(200, '[') + std::string(200, ']'));
    expect_mentions(test::error_of([&] { model_config_from_hf(dir / "config.json"); }), {"nests deeper than 64 levels"});
    test::write_file(dir / "config.json", R"({"hidden_size": 64, "hidden_size": 72})");
    expect_mentions(test::error_of([&] { model_config_from_hf(dir / "config.json"); }), {"repeats the key \"hidden_size\""});
    test::write_file(dir / "config.json", "[1, 2]");
    expect_mentions(test::error_of([&] { model_config_from_hf(dir / "config.json"); }), {"the top level is not a JSON object"});
}

// The mutation run's `attention_bias: null` (2026-12-07): lamina read null as absent (no bias) while transformers 5
// refuses null for every key it types `bool`, and reads yarn's `truncate: null` as false where lamina defaulted to
// true. Each is refused naming the key; a JSON true/false or an absent key still reads as before.
TEST(HfConfig, BooleanKeysRefuseNullAndNonBooleans) {
    for (const char* key : {"tie_word_embeddings", "attention_bias", "mlp_bias", "use_cache"}) {
        for (const nlohmann::json& bad : {nlohmann::json(nullptr), nlohmann::json(1), nlohmann::json("true")}) {
            auto j = llama_v5();
            j[key] = bad;
            expect_mentions(refusal(j), {key, "expected true or false"});
        }
        auto j = llama_v5();
        j.erase(key);
        EXPECT_NO_THROW(read(j)) << key;
    }
    auto y = llama_v5();
    y["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 64}, {"truncate", nullptr}};
    expect_mentions(refusal(y), {"rope_parameters.truncate = null", "expected true or false"});
    y["rope_parameters"].erase("truncate");
    EXPECT_TRUE(read(y).rope_scaling.truncate);
}

// The mutation run's other nulls (2026-12-07, #1598 and #1799): `model_type: null` (transformers' AutoConfig refuses
// the directory, and so it does without the key) and rope_parameters `{"type": null}` (transformers 5 keeps None as the
// rope type and finds no RoPE function for it). lamina read both as absent: the family from architectures, default RoPE.
TEST(HfConfig, ModelTypeIsRequiredAndARopeTypeIsNeverNull) {
    auto j = llama_v5();
    j["model_type"] = nullptr;
    expect_mentions(refusal(j), {"model_type = null", "expected the model type"});
    j.erase("model_type");
    expect_mentions(refusal(j), {"model_type = absent", "expected the model type"});
    j = llama_v5();
    j.erase("architectures");  // model_type alone names the family, as in transformers
    EXPECT_EQ(read(j).arch, "llama");

    for (const char* key : {"rope_type", "type"}) {
        j = llama_v4();
        j["rope_parameters"] = {{key, nullptr}, {"low_freq_factor", 1.0}};
        expect_mentions(refusal(j), {(std::string("rope_parameters.") + key + " = null").c_str(), "expected a rope type name"});
    }
    j = llama_v4();
    j["rope_parameters"] = {{"rope_type", "linear"}, {"type", nullptr}, {"factor", 2.0}};  // rope_type decides
    EXPECT_EQ(read(j).rope_scaling.kind, Kind::Linear);
}

TEST(HfConfig, ContextAskedAgainstWindowAndDynamicRope) {
    auto m = mistral_v5();
    m["sliding_window"] = 128;
    const ModelConfig c = read(m);
    EXPECT_NO_THROW(c.check_context(128, "m"));
    try {
        c.check_context(129, "m");
        FAIL();
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("sliding_window 128"), std::string::npos) << msg;
        EXPECT_NE(msg.find("129"), std::string::npos) << msg;
    }

    auto d = llama_v5();
    d["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
    const ModelConfig dyn = read(d);
    EXPECT_NO_THROW(dyn.check_context(256, "d"));
    try {
        dyn.check_context(257, "d");
        FAIL();
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("rope_type 'dynamic'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("256"), std::string::npos) << msg;
        EXPECT_NE(msg.find("257"), std::string::npos) << msg;
    }
    EXPECT_THROW(read(llama_v5()).check_context(257, "l"), Error);  // past n_ctx for every model
    EXPECT_EQ(read(llama_v5()).max_exact_context(), 256);
}

TEST(HfConfig, BuildRefusesAContextLongerThanTheWindow) {
    // tiny_mistral_v5 has sliding_window 128 and max_position_embeddings 256.
    TempDir dir;
    try {
        test::build_from(test::data_dir() / "tiny_mistral_v5", dir.path(), DType::F32, 100, 29);
        FAIL() << "built 129 positions with a window of 128";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("tiny_mistral_v5"), std::string::npos) << msg;
        EXPECT_NE(msg.find("sliding_window 128"), std::string::npos) << msg;
    }
    EXPECT_NO_THROW(test::build_from(test::data_dir() / "tiny_mistral_v5", dir.path(), DType::F32, 100, 28));
    // A run's own limits on a built engine (Engine::set_limits) are held to the same rule.
    Engine engine(dir.path());
    EXPECT_EQ(engine.config().max_exact_context(), 128);
    EXPECT_NO_THROW(engine.set_limits({1, 64, 64}));
    try {
        engine.set_limits({1, 64, 65});
        FAIL() << "ran 129 positions with a window of 128";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("sliding_window 128"), std::string::npos) << e.what();
    }
}

// Every field of the engine's config.json survives to_json / from_json, and an engine written before the
// yarn / dynamic / frequency-factor / sliding-window fields reads as what it ran.
TEST(ModelConfigJson, RoundTripsEveryField) {
    ModelConfig c;
    c.n_vocab = 384, c.n_embd = 64, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_ff = 96;
    c.n_ctx = 256, c.rope_theta = 123456.0f, c.rms_eps = 1e-5f, c.block.tied_embeddings = true, c.block.attn_bias = true;
    c.block.mlp_bias = true, c.sliding_window = 200, c.block.attention_pattern = {BlockDescription::Attention::Sliding};
    RopeScaling& s = c.rope_scaling;
    s.kind = Kind::Yarn, s.factor = 3.5f, s.low_freq_factor = 0.5f, s.high_freq_factor = 3.0f;
    s.original_max_position = 77, s.beta_fast = 16.0f, s.beta_slow = 0.5f, s.truncate = false;
    s.attention_factor = 1.2345f, s.freq_factors = {1.0f, 2.5f, 8.0f};
    const ModelConfig back = nlohmann::json(c).get<ModelConfig>();
    EXPECT_EQ(nlohmann::json(back), nlohmann::json(c));
    EXPECT_EQ(back.sliding_window, 200);
    EXPECT_TRUE(back.block.tied_embeddings && back.block.attn_bias && back.block.mlp_bias);
    EXPECT_EQ(back.block.attention(1), BlockDescription::Attention::Sliding);
    EXPECT_EQ(back.rope_scaling.kind, Kind::Yarn);
    EXPECT_EQ(back.rope_scaling.freq_factors, s.freq_factors);
    EXPECT_EQ(back.rope_scaling.attention_factor, 1.2345f);
    EXPECT_FALSE(back.rope_scaling.truncate);
    for (Kind k : {Kind::None, Kind::Linear, Kind::Llama3, Kind::Dynamic, Kind::Yarn, Kind::FreqFactors}) {
        s.kind = k;
        EXPECT_EQ(nlohmann::json(c).get<ModelConfig>().rope_scaling.kind, k);
    }

    nlohmann::json old = nlohmann::json(c);
    old.erase("sliding_window");
    old["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                           {"original_max_position", 8192}};
    const ModelConfig o = old.get<ModelConfig>();
    EXPECT_EQ(o.sliding_window, 0);
    EXPECT_EQ(o.block.attention(1), BlockDescription::Attention::Full);
    EXPECT_EQ(o.rope_scaling.kind, Kind::Llama3);
    EXPECT_EQ(o.rope_scaling.attention_factor, 1.0f);
    EXPECT_TRUE(o.rope_scaling.freq_factors.empty());

    old["rope_scaling"]["type"] = "longrope";
    EXPECT_THROW(old.get<ModelConfig>(), Error);
}

TEST(ModelConfigJson, EnginesKeepTheCheckpointsConfig) {
    // A sliding window and yarn from a transformers-5 config.json; per-dimension factors from a GGUF.
    for (const auto& model : {test::data_dir() / "tiny_mistral_v5", test::data_dir() / "gguf" / "tiny_llama_v5_llama3.gguf"}) {
        TempDir dir;
        test::build_from(model, dir.path(), DType::F32, 16, 16);
        EXPECT_EQ(nlohmann::json(Engine(dir.path()).config()), nlohmann::json(load_model_spec(model).config)) << model;
    }
}

}  // namespace
}  // namespace lamina
