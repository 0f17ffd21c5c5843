// GGML block formats against llama.cpp itself: tests/data/quant/ holds the bytes of llama.cpp's reference
// quantizers and the floats of its dequantizers (tools/make_quant_vectors.py, PROVENANCE.md there), and
// lamina must reproduce both bit for bit: these are file formats, and `--weights q4_k` promises the bytes
// llama-quantize writes. Round-trip properties, odd sizes and addresses, and refusals follow.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/ggml_quants.h"
#include "io/gguf.h"
#include "../refusal_util.h"
#include "../test_util.h"

namespace lamina {
namespace {

const std::vector<std::string> kTypes = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                                         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"};

std::filesystem::path quant_dir() { return test::data_dir() / "quant"; }

const nlohmann::json& manifest() {
    static const nlohmann::json m = test::read_json(quant_dir() / "manifest.json");
    return m;
}

uint32_t code_of(const std::string& type) { return manifest()["types"][type]["code"].get<uint32_t>(); }

std::vector<float> read_floats(const std::filesystem::path& p) {
    const std::string bytes = test::read_file(p);
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
}

std::vector<uint8_t> read_bytes(const std::filesystem::path& p) {
    const std::string bytes = test::read_file(p);
    return {bytes.begin(), bytes.end()};
}

int64_t row_bytes(uint32_t type, int64_t n) {
    const GgmlTypeTraits tr = ggml_type_traits(type);
    return n / static_cast<int64_t>(tr.block_elems) * static_cast<int64_t>(tr.block_bytes);
}

std::string fnv1a64(const float* x, int64_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    const auto* bytes = reinterpret_cast<const unsigned char*>(x);
    for (int64_t i = 0; i < 4 * n; ++i) h = (h ^ bytes[i]) * 0x100000001B3ull;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return hex;
}

// The first element whose bits differ, or -1: NaN and -0 compare by their bits.
int64_t first_float_difference(const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (std::memcmp(a + i, b + i, 4) != 0) return i;
    return -1;
}

// The case of the manifest holding element `e` of inputs.f32.
std::string case_of(int64_t e) {
    for (const auto& c : manifest()["cases"]) {
        if (e < c["n"].get<int64_t>()) return c["name"].get<std::string>();
        e -= c["n"].get<int64_t>();
    }
    return "past the end";
}

TEST(GgmlQuants, QuantizeIsBitIdenticalToLlamaCpp) {
    const std::vector<float> x = read_floats(quant_dir() / "inputs.f32");
    for (const std::string& type : kTypes) {
        const uint32_t code = code_of(type);
        const std::vector<uint8_t> want = read_bytes(quant_dir() / (type + ".quantized"));
        ASSERT_EQ(static_cast<int64_t>(want.size()), row_bytes(code, static_cast<int64_t>(x.size()))) << type;
        std::vector<uint8_t> got(want.size() + 1, 0xAB);  // poisoned, one byte past the row
        quantize_row(code, x.data(), got.data(), static_cast<int64_t>(x.size()));
        EXPECT_EQ(got.back(), 0xAB) << type << " wrote past the row";
        const auto block_bytes = static_cast<int64_t>(ggml_type_traits(code).block_bytes);
        const auto block_elems = static_cast<int64_t>(ggml_type_traits(code).block_elems);
        for (int64_t i = 0; i < static_cast<int64_t>(want.size()); ++i) {
            if (got[i] == want[i]) continue;
            const int64_t block = i / block_bytes;
            ADD_FAILURE() << type << ": byte " << i % block_bytes << " of block " << block << " (case "
                          << case_of(block * block_elems) << ") is " << int{got[i]} << ", llama.cpp wrote "
                          << int{want[i]};
            break;
        }
    }
}

TEST(GgmlQuants, DequantizeEqualsLlamaCppOnItsQuantizedInputs) {
    const std::vector<float> x = read_floats(quant_dir() / "inputs.f32");
    for (const std::string& type : kTypes) {
        const std::vector<uint8_t> blocks = read_bytes(quant_dir() / (type + ".quantized"));
        std::vector<float> y(x.size(), std::nanf(""));
        dequantize_row(code_of(type), blocks.data(), y.data(), static_cast<int64_t>(y.size()));
        // One hash per case (the floats themselves would make the fixture ten times larger).
        const auto& hashes = manifest()["types"][type]["dequantized_fnv1a64"];
        int64_t at = 0;
        for (size_t c = 0; c < manifest()["cases"].size(); ++c) {
            const auto n = manifest()["cases"][c]["n"].get<int64_t>();
            EXPECT_EQ(fnv1a64(y.data() + at, n), hashes[c].get<std::string>())
                << type << " case " << manifest()["cases"][c]["name"];
            at += n;
        }
    }
}

TEST(GgmlQuants, DequantizeEqualsLlamaCppOnRandomBlocks) {
    // Random bytes under finite random f16 scales: negative scales, Q3_K/Q6_K scales of every value, bit
    // patterns the quantizer never writes.
    for (const std::string& type : kTypes) {
        const std::vector<uint8_t> blocks = read_bytes(quant_dir() / (type + ".blocks"));
        const std::vector<float> want = read_floats(quant_dir() / (type + ".blocks.f32"));
        const auto n = static_cast<int64_t>(want.size());
        ASSERT_EQ(static_cast<int64_t>(blocks.size()), row_bytes(code_of(type), n)) << type;
        std::vector<float> got(want.size() + 1, std::nanf(""));
        dequantize_row(code_of(type), blocks.data(), got.data(), n);
        EXPECT_TRUE(std::isnan(got.back())) << type << " wrote past the row";
        const int64_t i = first_float_difference(got.data(), want.data(), n);
        EXPECT_EQ(i, -1) << type << ": element " << i << " is " << got[i] << ", llama.cpp gives " << want[i];
    }
}

TEST(GgmlQuants, TypeTableMatchesGgml) {
    // ggml's own ggml_blck_size / ggml_type_size for every type code it defines, lamina's table against it.
    for (const auto& t : manifest()["ggml_types"]) {
        const auto code = t["code"].get<uint32_t>();
        std::string name = t["name"].get<std::string>();
        for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        EXPECT_EQ(ggml_type_name(code), name) << "code " << code;
        const GgmlTypeTraits tr = ggml_type_traits(code);
        EXPECT_EQ(tr.block_elems, t["block_elems"].get<uint64_t>()) << name;
        EXPECT_EQ(tr.block_bytes, t["block_bytes"].get<uint64_t>()) << name;
    }
    EXPECT_EQ(sizeof(BlockQ4_1), ggml_type_traits(code_of("Q4_1")).block_bytes);
    EXPECT_EQ(sizeof(BlockQ6_K), ggml_type_traits(code_of("Q6_K")).block_bytes);
}

TEST(GgmlQuants, OneBlockAtAnOddAddressEqualsTheFixtureBlock) {
    // n = one block, written to and read from an odd address (a GGUF tensor may sit anywhere).
    const std::vector<float> x = read_floats(quant_dir() / "inputs.f32");
    for (const std::string& type : kTypes) {
        const uint32_t code = code_of(type);
        const GgmlTypeTraits tr = ggml_type_traits(code);
        const std::vector<uint8_t> want = read_bytes(quant_dir() / (type + ".quantized"));
        std::vector<unsigned char> blocks(tr.block_bytes + 2, 0xAB);  // poisoned; the block starts at byte 1
        quantize_row(code, x.data(), blocks.data() + 1, static_cast<int64_t>(tr.block_elems));
        EXPECT_EQ(std::memcmp(blocks.data() + 1, want.data(), tr.block_bytes), 0) << type;
        EXPECT_EQ(blocks.back(), 0xAB) << type;
        std::vector<float> y(tr.block_elems), y_odd(tr.block_elems);
        dequantize_row(code, want.data(), y.data(), static_cast<int64_t>(tr.block_elems));
        dequantize_row(code, blocks.data() + 1, y_odd.data(), static_cast<int64_t>(tr.block_elems));
        EXPECT_EQ(first_float_difference(y.data(), y_odd.data(), static_cast<int64_t>(tr.block_elems)), -1) << type;
    }
}

// Relative RMS error of quantize-then-dequantize on N(0, 1) rows of 27 super-blocks. Each bound is about 1.3x
// what llama.cpp's reference quantizers reach on such rows (three seeds, spread under 2%: Q8_0 0.0054, Q6_K
// 0.0178, Q5_K 0.0365, Q5_1 0.0383, Q5_0 0.0434, Q4_K 0.0727, Q4_1 0.0802, Q4_0 0.0870, Q3_K 0.151, Q2_K
// 0.300), so a packing or scale bug fails while another seed does not.
struct RoundTripBound {
    std::string type;
    double max_rel_rms;
};
const std::vector<RoundTripBound> kRoundTrip = {
    {"Q8_0", 0.007}, {"Q6_K", 0.023}, {"Q5_K", 0.047}, {"Q5_1", 0.05}, {"Q5_0", 0.056},
    {"Q4_K", 0.094}, {"Q4_1", 0.104}, {"Q4_0", 0.113}, {"Q3_K", 0.196}, {"Q2_K", 0.39},
};

TEST(GgmlQuants, RoundTripErrorIsBounded) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    const int64_t n = 27 * kQK_K;  // many blocks
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    for (const RoundTripBound& b : kRoundTrip) {
        const uint32_t code = code_of(b.type);
        std::vector<uint8_t> blocks(row_bytes(code, n));
        std::vector<float> y(n);
        quantize_row(code, x.data(), blocks.data(), n);
        dequantize_row(code, blocks.data(), y.data(), n);
        double err = 0, ref = 0;
        for (int64_t i = 0; i < n; ++i) {
            err += (y[i] - x[i]) * static_cast<double>(y[i] - x[i]);
            ref += x[i] * static_cast<double>(x[i]);
        }
        EXPECT_LT(std::sqrt(err / ref), b.max_rel_rms) << b.type;
        EXPECT_GT(std::sqrt(err / ref), 0.0) << b.type << " lost nothing: not quantizing?";
    }
}

TEST(GgmlQuants, ZerosStayZeroAndConstantsSurvive) {
    for (const std::string& type : kTypes) {
        const uint32_t code = code_of(type);
        const int64_t n = 2 * kQK_K;
        std::vector<float> zeros(n, 0.0f), y(n, 1.0f);
        std::vector<uint8_t> blocks(row_bytes(code, n));
        quantize_row(code, zeros.data(), blocks.data(), n);
        dequantize_row(code, blocks.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], 0.0f) << type << " element " << i;
        // A constant row: within an f16 rounding and one quantization step of the value.
        std::vector<float> c(n, 0.75f);
        quantize_row(code, c.data(), blocks.data(), n);
        dequantize_row(code, blocks.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], 0.75f, 0.75f * 0.07f) << type << " element " << i;
    }
}

TEST(GgmlQuants, RequantizingTheSimpleTypesIsAFixedPoint) {
    // For the absmax and min-max types, dequantized values quantize back to the same bytes: the block's
    // extreme comes back as a multiple of d, so d (and m) come out the same. llama.cpp's quantizers do the
    // same (20k random blocks of scales 1e-3 to 1e3, none changed).
    std::mt19937 rng(11);
    std::normal_distribution<float> normal;
    const int64_t n = 9 * kQK;
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    for (const char* type : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}) {
        const uint32_t code = code_of(type);
        std::vector<uint8_t> once(row_bytes(code, n)), twice(once.size());
        std::vector<float> y(n);
        quantize_row(code, x.data(), once.data(), n);
        dequantize_row(code, once.data(), y.data(), n);
        quantize_row(code, y.data(), twice.data(), n);
        EXPECT_EQ(once, twice) << type;
    }
}

TEST(GgmlQuants, FloatTypesConvertElementwise) {
    const std::vector<float> x = {1.0f, -2.5f, 65504.0f, 1e-7f, 0.1f};
    for (auto type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
        const auto code = static_cast<uint32_t>(type);
        std::vector<uint8_t> bytes(row_bytes(code, 5));
        std::vector<float> y(5);
        quantize_row(code, x.data(), bytes.data(), 5);
        dequantize_row(code, bytes.data(), y.data(), 5);
        for (size_t i = 0; i < x.size(); ++i) {
            uint16_t h;
            std::memcpy(&h, bytes.data() + 2 * i, 2);
            const float want = type == GgmlType::F32 ? x[i] : type == GgmlType::F16 ? f16_to_f32(f32_to_f16(x[i]))
                                                                                     : bf16_to_f32(f32_to_bf16(x[i]));
            EXPECT_EQ(y[i], want) << ggml_type_name(code) << " element " << i;
        }
    }
}

TEST(GgmlQuants, GgufDequantizeDelegates) {
    // io/gguf.h's dequantize serves every supported type, the K-quants it used to refuse included.
    const std::vector<uint8_t> blocks = read_bytes(quant_dir() / "Q5_K.blocks");
    const std::vector<float> want = read_floats(quant_dir() / "Q5_K.blocks.f32");
    std::vector<float> got(want.size());
    dequantize(code_of("Q5_K"), blocks.data(), got.data(), got.size());
    EXPECT_EQ(first_float_difference(got.data(), want.data(), static_cast<int64_t>(want.size())), -1);
}

TEST(GgmlQuants, UnsupportedTypesAreRefusedByName) {
    const std::vector<float> x(kQK_K, 1.0f);
    std::vector<uint8_t> blocks(1024);
    std::vector<float> y(kQK_K);
    for (const auto& [code, name] : std::vector<std::pair<uint32_t, std::string>>{
             {17, "IQ2_XS"}, {9, "Q8_1"}, {15, "Q8_K"}, {99, "type#99"}}) {
        EXPECT_FALSE(ggml_type_supported(code)) << name;
        test::expect_refusal([&] { dequantize_row(code, blocks.data(), y.data(), kQK_K); },
                             {"tensor type " + name, "not supported", "Q4_K"});
        test::expect_refusal([&] { quantize_row(code, x.data(), blocks.data(), kQK_K); }, {name, "not supported"});
        test::expect_refusal([&] { dequantize(code, blocks.data(), y.data(), kQK_K); }, {name, "not supported"});
    }
    for (const std::string& type : kTypes) EXPECT_TRUE(ggml_type_supported(code_of(type))) << type;
}

}  // namespace
}  // namespace lamina
