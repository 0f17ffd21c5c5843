// Malformed GGUF files: every failure is a lamina::Error naming the file, never a crash or a hang.
// Run under ASan/UBSan too (make test), which turns any out-of-bounds read into a failure.
#include <gtest/gtest.h>

#include <cstring>

#include "../test_util.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "tokenizer/tokenizer.h"

namespace lamina {
namespace {

using test::TempDir;

// Opens a GGUF the way `lamina build` starts: header, config, tokenizer, every tensor's bounds.
void open_fully(const std::filesystem::path& p) {
    ModelSpec spec = load_gguf_spec(p);
    Tokenizer tok(spec.vocab);
    (void)tok;
}

// Either loads, or throws lamina::Error whose message names the file.
void expect_clean_outcome(const std::filesystem::path& p) {
    try {
        open_fully(p);
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
    }
}

TEST(GgufErrors, MissingFile) {
    try {
        GgufFile f("/nonexistent/model.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
    }
}

TEST(GgufErrors, WrongMagicAndVersion) {
    TempDir dir;
    test::write_file(dir / "bad.gguf", "GGML\x03\0\0\0");
    EXPECT_THROW(GgufFile(dir / "bad.gguf"), Error);
    std::string v9("GGUF\x09\0\0\0", 8);
    v9 += std::string(16, '\0');
    test::write_file(dir / "v9.gguf", v9);
    try {
        GgufFile f(dir / "v9.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("version 9"), std::string::npos) << e.what();
    }
    test::write_file(dir / "empty.gguf", "");
    EXPECT_THROW(GgufFile(dir / "empty.gguf"), Error);
}

TEST(GgufErrors, VocabFileTruncatedAtEveryRegion) {
    // The gpt-2 vocab GGUF: 1.7 MB of metadata. Truncate at many offsets, including every one of the
    // first 64 bytes (magic, version, counts, first key).
    const auto src = test::data_dir() / "tokenizer" / "ggml-vocab-gpt-2.gguf";
    const std::string bytes = test::read_file(src);
    ASSERT_GT(bytes.size(), 1000u);
    TempDir dir;
    std::vector<size_t> offsets;
    for (size_t i = 0; i < 64; ++i) offsets.push_back(i);
    std::mt19937 rng(7);
    for (int i = 0; i < 40; ++i) offsets.push_back(std::uniform_int_distribution<size_t>(64, bytes.size() - 1)(rng));
    for (size_t off : offsets) {
        const auto p = dir / "trunc.gguf";
        test::write_file(p, bytes.substr(0, off));
        EXPECT_THROW(GgufFile{p}, Error) << "truncated at " << off;
    }
}

TEST(GgufErrors, RealModelTruncatedAtManyOffsets) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    const auto p = dir / "model.gguf";
    std::filesystem::copy_file(test::smollm2_gguf(), p);
    const auto size = std::filesystem::file_size(p);
    // From the end towards the start: one copy, then shrink it in place.
    std::vector<uintmax_t> offsets = {size - 1, size - 4096, size / 2, size / 4, 4000000, 2000000, 1500000,
                                      1000000, 100000, 10000, 1000, 100, 24, 23, 16, 8, 4, 1};
    for (uintmax_t off : offsets) {
        std::filesystem::resize_file(p, off);
        try {
            open_fully(p);
            ADD_FAILURE() << "truncated at " << off << " was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("model.gguf"), std::string::npos) << e.what();
        }
    }
}

TEST(GgufErrors, RandomlyCorruptedHeaders) {
    LAMINA_REQUIRE_SMOLLM2();
    // Corrupt a few bytes of the metadata or tensor directory at random, many times. Each attempt must
    // load or fail with a lamina::Error: no crash, no hang, no sanitizer report.
    TempDir dir;
    const std::string original = test::read_file(test::smollm2_gguf());
    // The metadata and tensor directory of this file span its first ~1.6 MB.
    const size_t span = 1600000;
    std::mt19937 rng(12345);
    const auto p = dir / "corrupt.gguf";
    test::write_file(p, original);
    auto poke = [&](size_t pos, char value) {  // edit the copy in place instead of rewriting 98 MB
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(pos));
        f.put(value);
    };
    for (int iter = 0; iter < 60; ++iter) {
        std::vector<size_t> flipped;
        const int n_flips = 1 + iter % 4;
        for (int k = 0; k < n_flips; ++k) {
            const size_t pos = std::uniform_int_distribution<size_t>(0, span - 1)(rng);
            flipped.push_back(pos);
            poke(pos, static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng)));
        }
        expect_clean_outcome(p);
        for (size_t pos : flipped) poke(pos, original[pos]);
    }
}

// Finds the tensor-info record of `name` and returns the offset of its u32 type field.
size_t type_field_offset(const std::string& bytes, const std::string& name) {
    std::string needle(8, '\0');
    const uint64_t len = name.size();
    std::memcpy(needle.data(), &len, 8);
    needle += name;
    const size_t at = bytes.find(needle);
    EXPECT_NE(at, std::string::npos);
    size_t pos = at + needle.size();
    uint32_t n_dims;
    std::memcpy(&n_dims, bytes.data() + pos, 4);
    return pos + 4 + 8 * n_dims;
}

TEST(GgufErrors, UnsupportedTensorTypeNamesTheTensor) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    std::string bytes = test::read_file(test::smollm2_gguf());
    const size_t at = type_field_offset(bytes, "blk.0.attn_norm.weight");
    const uint32_t q5_1 = 7;  // a real GGML type lamina does not dequantize
    std::memcpy(bytes.data() + at, &q5_1, 4);
    const auto p = dir / "q5.gguf";
    test::write_file(p, bytes);
    try {
        open_fully(p);
        FAIL() << "accepted an unsupported tensor type";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.0.attn_norm.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("Q5_1"), std::string::npos) << msg;
    }
}

TEST(GgufErrors, UnknownArchitectureIsNamed) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    std::string bytes = test::read_file(test::smollm2_gguf());
    const size_t at = bytes.find("llama");  // general.architecture's value is the first "llama"
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 5, "gptxx");
    const auto p = dir / "arch.gguf";
    test::write_file(p, bytes);
    try {
        open_fully(p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("gptxx"), std::string::npos) << e.what();
    }
}

TEST(GgufDequant, Q4_1AndQ8_0MatchTheFormula) {
    // One Q4_1 block: d = 0.5, m = -1, nibbles 0..15 twice -> x = q * d + m.
    std::vector<uint8_t> q41(20);
    const uint16_t d = f32_to_f16(0.5f), m = f32_to_f16(-1.0f);
    std::memcpy(q41.data(), &d, 2);
    std::memcpy(q41.data() + 2, &m, 2);
    for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    std::vector<float> out(32);
    dequantize(static_cast<uint32_t>(GgmlType::Q4_1), q41.data(), out.data(), 32);
    for (int j = 0; j < 16; ++j) {
        EXPECT_EQ(out[j], j * 0.5f - 1.0f);
        EXPECT_EQ(out[j + 16], (15 - j) * 0.5f - 1.0f);
    }
    std::vector<uint8_t> q80(34);
    const uint16_t d8 = f32_to_f16(0.25f);
    std::memcpy(q80.data(), &d8, 2);
    for (int j = 0; j < 32; ++j) q80[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
    dequantize(static_cast<uint32_t>(GgmlType::Q8_0), q80.data(), out.data(), 32);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], (j - 16) * 0.25f);
}

TEST(GgufMetadata, SmolLM2Config) {
    LAMINA_REQUIRE_SMOLLM2();
    GgufFile f(test::smollm2_gguf());
    EXPECT_EQ(f.version(), 3u);
    const ModelConfig c = model_config_from_gguf(f);
    EXPECT_EQ(c.n_layer, 30);
    EXPECT_EQ(c.n_embd, 576);
    EXPECT_EQ(c.n_head, 9);
    EXPECT_EQ(c.n_head_kv, 3);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.n_ff, 1536);
    EXPECT_EQ(c.n_vocab, 49152);
    EXPECT_TRUE(c.block.tied_embeddings);
    EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
}

}  // namespace
}  // namespace lamina

namespace lamina {
namespace {

// Every supported GGML type against gguf-py's reference dequantization (tools/make_quant_fixture.py).
TEST(GgufDequant, EveryTypeMatchesGgufPy) {
    const auto dir = test::data_dir() / "gguf";
    GgufFile f(dir / "quants.gguf");
    const auto ref = test::read_json(dir / "quants_expected.json");
    int checked = 0;
    for (const auto& [name, values] : ref["expected"].items()) {
        const GgufTensorInfo* t = f.find_tensor(name);
        ASSERT_NE(t, nullptr) << name;
        std::vector<float> out(t->n_elements());
        const auto data = f.tensor_data(*t);
        dequantize(t->type, data.data(), out.data(), t->n_elements());
        const auto expected = values.get<std::vector<float>>();
        ASSERT_EQ(out.size(), expected.size());
        for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], expected[i]) << name << " element " << i;
        ++checked;
    }
    EXPECT_EQ(checked, 8);
}

}  // namespace
}  // namespace lamina
