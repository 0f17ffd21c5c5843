// GGUF metadata -> ModelConfig: the RoPE, window and head facts of the tiny GGUFs that
// tools/make_tiny_llama_v5.py converts as llama.cpp does, and edits of them that lamina must refuse by name.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "../test_util.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/hf_config.h"

namespace lamina {
namespace {

using test::TempDir;

std::filesystem::path tiny_gguf(const std::string& name) { return test::data_dir() / "gguf" / (name + ".gguf"); }

// GGUF v3 metadata records, as gguf-py writes them.
constexpr uint32_t kTypeU32 = 4, kTypeF32 = 6, kTypeString = 8, kTypeF64 = 12;
constexpr size_t kHeaderBytes = 24;  // magic, version, n_tensors (u64), n_kv (u64)
constexpr size_t kAlignment = 32;    // general.alignment's default, which the fixtures use

template <typename T>
std::string raw(const T& v) {
    return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}
std::string gguf_string(const std::string& s) { return raw(static_cast<uint64_t>(s.size())) + s; }
std::string kv_u32(const std::string& key, uint32_t v) { return gguf_string(key) + raw(kTypeU32) + raw(v); }
std::string kv_f32(const std::string& key, float v) { return gguf_string(key) + raw(kTypeF32) + raw(v); }
std::string kv_f64(const std::string& key, double v) { return gguf_string(key) + raw(kTypeF64) + raw(v); }
std::string kv_string(const std::string& key, const std::string& v) { return gguf_string(key) + raw(kTypeString) + gguf_string(v); }

// The file with these records added after the header, and one padding record so that the tensor data,
// which follows the directory at the next aligned offset, keeps its place relative to it.
std::string with_records(std::string bytes, std::vector<std::string> records) {
    size_t n = 0;
    for (const auto& r : records) n += r.size();
    const std::string pad_key = "lamina.test.padding";
    const size_t pad_overhead = kv_string(pad_key, "").size();
    records.push_back(kv_string(pad_key, std::string((kAlignment - (n + pad_overhead) % kAlignment) % kAlignment, 'x')));
    uint64_t n_kv;
    std::memcpy(&n_kv, bytes.data() + 16, 8);
    n_kv += records.size();
    std::memcpy(bytes.data() + 16, &n_kv, 8);
    std::string inserted;
    for (const auto& r : records) inserted += r;
    bytes.insert(kHeaderBytes, inserted);
    return bytes;
}

// Offset of the value of metadata key `key` (after its type field).
size_t value_offset(const std::string& bytes, const std::string& key) {
    const std::string needle = gguf_string(key);
    const size_t at = bytes.find(needle);
    EXPECT_NE(at, std::string::npos) << key;
    return at + needle.size() + 4;
}

// The file with metadata key `key` renamed (its first letter made 'X'), so a record can take its place.
std::string without_key(std::string bytes, const std::string& key) {
    const size_t at = bytes.find(gguf_string(key));
    EXPECT_NE(at, std::string::npos) << key;
    bytes[at + 8] = 'X';
    return bytes;
}

ModelConfig read_edited(const std::string& bytes, const TempDir& dir) {
    const auto p = dir / "edited.gguf";
    test::write_file(p, bytes);
    return model_config_from_gguf(GgufFile(p));
}

std::string refusal(const std::string& bytes) {
    TempDir dir;
    try {
        read_edited(bytes, dir);
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("edited.gguf"), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        return msg;
    }
    ADD_FAILURE() << "accepted the edited file";
    return "";
}

TEST(GgufConfig, TinyFixturesReadAsTheirCheckpoints) {
    for (const char* name : {"tiny_llama_v5_llama3", "tiny_llama_v5_yarn"}) {
        const ModelConfig g = model_config_from_gguf(GgufFile(tiny_gguf(name)));
        const ModelConfig h = model_config_from_hf(test::data_dir() / name / "config.json");
        SCOPED_TRACE(name);
        EXPECT_EQ(g.n_vocab, h.n_vocab);
        EXPECT_EQ(g.n_embd, h.n_embd);
        EXPECT_EQ(g.n_head, h.n_head);
        EXPECT_EQ(g.n_head_kv, h.n_head_kv);
        EXPECT_EQ(g.head_dim, h.head_dim);
        EXPECT_EQ(g.n_ff, h.n_ff);
        EXPECT_EQ(g.n_ctx, h.n_ctx);
        EXPECT_EQ(g.rope_theta, h.rope_theta);
        EXPECT_EQ(g.block.tied_embeddings, h.block.tied_embeddings);
        EXPECT_EQ(g.block.attn_bias, h.block.attn_bias);
        EXPECT_EQ(g.block.mlp_bias, h.block.mlp_bias);
        EXPECT_EQ(g.sliding_window, 0);
    }
}

TEST(GgufConfig, SlidingWindowIsReadAndLimitsTheContext) {
    const std::string bytes = with_records(test::read_file(tiny_gguf("tiny_llama_v5_yarn")),
                                           {kv_u32("llama.attention.sliding_window", 100)});
    TempDir dir;
    EXPECT_EQ(read_edited(bytes, dir).sliding_window, 100);
    try {
        test::build_from(dir / "edited.gguf", dir / "engine", DType::F32, 64, 64);
        FAIL() << "built 128 positions with a window of 100";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("sliding_window 100"), std::string::npos) << e.what();
    }
}

TEST(GgufConfig, RefusalsNameKeyAndValue) {
    const std::string yarn = test::read_file(tiny_gguf("tiny_llama_v5_yarn"));

    std::string b = yarn;
    const size_t type_at = b.find(gguf_string("yarn"));
    ASSERT_NE(type_at, std::string::npos);
    b.replace(type_at + 8, 4, "xarn");
    std::string msg = refusal(b);
    EXPECT_NE(msg.find("llama.rope.scaling.type"), std::string::npos) << msg;
    EXPECT_NE(msg.find("xarn"), std::string::npos) << msg;

    b = yarn;
    const uint32_t dims = 8;  // head_dim is 12
    std::memcpy(b.data() + value_offset(b, "llama.rope.dimension_count"), &dims, 4);
    msg = refusal(b);
    EXPECT_NE(msg.find("llama.rope.dimension_count = 8"), std::string::npos) << msg;

    msg = refusal(with_records(yarn, {kv_f32("llama.rope.scaling.yarn_ext_factor", 0.5f)}));
    EXPECT_NE(msg.find("llama.rope.scaling.yarn_ext_factor = 0.5"), std::string::npos) << msg;

    msg = refusal(with_records(yarn, {kv_f32("llama.rope.scaling.yarn_log_multiplier", 0.1f)}));
    EXPECT_NE(msg.find("yarn_log_multiplier"), std::string::npos) << msg;

    b = yarn;
    const uint32_t value_length = 16;  // key_length is 12
    std::memcpy(b.data() + value_offset(b, "llama.attention.value_length"), &value_length, 4);
    msg = refusal(b);
    EXPECT_NE(msg.find("value_length = 16"), std::string::npos) << msg;

    // Llama 3.1 factors and a scaling type at once.
    msg = refusal(with_records(test::read_file(tiny_gguf("tiny_llama_v5_llama3")),
                               {kv_string("llama.rope.scaling.type", "linear"), kv_f32("llama.rope.scaling.factor", 2.0f)}));
    EXPECT_NE(msg.find("rope_freqs.weight"), std::string::npos) << msg;

    // The mutation run's reproducer: without context_length lamina guessed 2048 (llama.cpp refuses the file).
    b = yarn;
    const size_t key_at = b.find("llama.context_length");
    ASSERT_NE(key_at, std::string::npos);
    b[key_at + std::string("llama.context_length").size() - 1] = 'x';
    msg = refusal(b);
    EXPECT_NE(msg.find("llama.context_length"), std::string::npos) << msg;
}

TEST(GgufConfig, ScalingTypeAsLlamaCppReadsIt) {
    const std::string yarn = test::read_file(tiny_gguf("tiny_llama_v5_yarn"));
    TempDir dir;
    // "none": the factor key (4) stays and means nothing.
    std::string b = yarn;
    const size_t type_at = b.find(gguf_string("yarn"));
    ASSERT_NE(type_at, std::string::npos);
    b.replace(type_at + 8, 4, "none");
    EXPECT_EQ(read_edited(b, dir).rope_scaling.kind, RopeScaling::Kind::None);
    // No type key (renamed away): llama.cpp takes the factor as linear scaling.
    b = yarn;
    const size_t key_at = b.find("llama.rope.scaling.type");
    ASSERT_NE(key_at, std::string::npos);
    b.replace(key_at, 23, "lamina.test.renamed.key");
    const ModelConfig c = read_edited(b, dir);
    EXPECT_EQ(c.rope_scaling.kind, RopeScaling::Kind::Linear);
    EXPECT_EQ(c.rope_scaling.factor, 4.0f);
}

TEST(GgufConfig, BlockCountMustMatchTheLayerTensors) {
    const std::string yarn = test::read_file(tiny_gguf("tiny_llama_v5_yarn"));  // 2 layers, block_count 2
    // Fewer: layer 1's tensors were silently dropped.
    std::string b = yarn;
    const uint32_t one = 1;
    std::memcpy(b.data() + value_offset(b, "llama.block_count"), &one, 4);
    const std::string msg = refusal(b);
    EXPECT_NE(msg.find("tensor 'blk.1."), std::string::npos) << msg;
    EXPECT_NE(msg.find("is in layer 1 but llama.block_count = 1"), std::string::npos) << msg;
    // More: the config reads, and the build names the first missing tensor.
    b = yarn;
    const uint32_t three = 3;
    std::memcpy(b.data() + value_offset(b, "llama.block_count"), &three, 4);
    TempDir dir;
    EXPECT_EQ(read_edited(b, dir).n_layer, 3);
    try {
        test::build_from(dir / "edited.gguf", dir / "engine", DType::F32, 16, 16);
        FAIL() << "built 3 layers from a file of 2";
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("edited.gguf: missing tensor 'model.layers.2."), std::string::npos) << m;
    }
}

TEST(GgufConfig, FloatKeysMustFitAFloat) {
    const std::string yarn = test::read_file(tiny_gguf("tiny_llama_v5_yarn"));
    // An f64 past the float range once became rope_theta = inf.
    std::string msg =
        refusal(with_records(without_key(yarn, "llama.rope.freq_base"), {kv_f64("llama.rope.freq_base", 1e300)}));
    EXPECT_NE(msg.find("'llama.rope.freq_base' = 1e+300 is beyond the range of a 32-bit float"), std::string::npos)
        << msg;
    // One that flushes to zero as a float.
    msg = refusal(with_records(without_key(yarn, "llama.attention.layer_norm_rms_epsilon"),
                               {kv_f64("llama.attention.layer_norm_rms_epsilon", 1e-60)}));
    EXPECT_NE(msg.find("'llama.attention.layer_norm_rms_epsilon' = 1e-60 underflows"), std::string::npos) << msg;
    // Non-finite f32 values, named by key rather than as the config field they would have become.
    std::string b = yarn;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data() + value_offset(b, "llama.rope.scaling.factor"), &nan, 4);
    msg = refusal(b);
    EXPECT_NE(msg.find("'llama.rope.scaling.factor'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("is not a finite number"), std::string::npos) << msg;
    // An f64 that fits is read as any f32 is.
    TempDir dir;
    EXPECT_EQ(
        read_edited(with_records(without_key(yarn, "llama.rope.freq_base"), {kv_f64("llama.rope.freq_base", 5e5)}), dir)
            .rope_theta,
        5e5f);
}

}  // namespace
}  // namespace lamina
