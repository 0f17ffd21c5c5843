// `lamina build --weights`: GGUF blocks kept as they are, matrices quantized at build, and engines of block formats
// refused where they cannot be right.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "../test_util.h"
#include "build/engine_writer.h"
#include "core/error.h"
#include "core/ggml_quants.h"
#include "io/gguf.h"
#include "runtime/engine.h"
#include "runtime/generator.h"

namespace lamina {
namespace {

using test::TempDir;

BuildOptions options(const std::string& weights, DType dtype = DType::F32) {
    BuildOptions o;
    o.dtype = dtype;
    o.max_input_len = 16;
    o.max_output_len = 4;
    set_weights_mode(o, weights);
    return o;
}

std::vector<float> logits_of(const std::filesystem::path& engine_dir, const std::vector<int32_t>& prompt) {
    Engine e(engine_dir);
    auto backend = make_cpu_backend(2);
    Generator gen(e, *backend, 1);
    return gen.prompt_logits(prompt);
}

// The bytes of an engine tensor in its weights file.
std::string tensor_bytes(const std::filesystem::path& dir, const std::string& name, std::string* dtype = nullptr) {
    const auto config = test::read_json(dir / "config.json");
    const std::string file = test::read_file(dir / "weights.bin");
    for (const auto& t : config["weights"]["tensors"])
        if (t["name"] == name) {
            if (dtype) *dtype = t["dtype"];
            return file.substr(t["offset"].get<size_t>(), t["bytes"].get<size_t>());
        }
    ADD_FAILURE() << "no tensor " << name;
    return {};
}

// Quantized at build: each matrix is llama.cpp's reference quantization of the float weights (row by row), the
// embedding q8_0, and the logits stay close to the float engine's.
TEST(QuantizedBuild, MatricesAreTheReferenceQuantizationAndLogitsStayClose) {
    const ModelSpec spec = random_model_spec("tiny", 5);  // n_embd 96, n_ff 256
    TempDir f32;
    build_engine(spec, options("float"), f32.path());
    const std::vector<int32_t> prompt = {1, 7, 42, 99, 3, 250};
    const auto ref = logits_of(f32.path(), prompt);
    // Relative logit error allowed per format (the weights' std is 0.02: 4-bit formats move logits by a few percent).
    const std::vector<std::pair<std::string, double>> formats = {{"q8_0", 0.02}, {"q5_0", 0.08}, {"q5_1", 0.08}, {"q4_0", 0.15},
                                                                 {"q4_1", 0.15}, {"q6_k", 0.05}, {"q4_k", 0.15}};
    for (const auto& [name, tol] : formats) {
        SCOPED_TRACE(name);
        TempDir q;
        const BuildSummary summary = build_engine(spec, options(name), q.path());
        const DType t = dtype_from_name(name);
        std::string dtype;
        const std::string down = tensor_bytes(q.path(), "blk.0.w_down", &dtype);
        EXPECT_EQ(dtype, name);  // 256 columns: whole blocks of 32 and of 256
        std::vector<float> w(96 * 256);
        spec.weight("model.layers.0.mlp.down_proj.weight", {96, 256}).read(w.data());
        std::string expected(dtype_bytes(t, 96 * 256), '\0');
        quantize_row(dtype_ggml_code(t), w.data(), expected.data(), 96 * 256);
        EXPECT_EQ(down, expected);
        // 96 columns are not whole blocks of 256: the K formats keep those matrices float, and say so.
        tensor_bytes(q.path(), "blk.0.wqkv", &dtype);
        EXPECT_EQ(dtype, dtype_block(t).elems == 256 ? "float32" : name);
        tensor_bytes(q.path(), "tok_embd", &dtype);
        EXPECT_EQ(dtype, "q8_0");
        EXPECT_TRUE(summary.bytes_by_dtype.count(t));
        const auto got = logits_of(q.path(), prompt);
        EXPECT_LT(test::rel_error(got.data(), ref.data(), ref.size()), tol);
    }
}

// Kept: the default SmolLM2 GGUF's Q4_1 and Q8_0 tensors go into the engine byte for byte (q and k rows moved back
// to Hugging Face's order), the engine is no bigger than the file, and it predicts what the float engine does.
TEST(QuantizedBuild, GgufBlocksAreKeptByteForByte) {
    LAMINA_REQUIRE_SMOLLM2();
    const auto gguf = test::smollm2_gguf();
    const ModelSpec spec = load_model_spec(gguf);
    TempDir keep, f32;
    build_engine(spec, options("keep"), keep.path());
    EXPECT_LE(std::filesystem::file_size(keep / "weights.bin"), std::filesystem::file_size(gguf));
    const GgufFile file(gguf);
    auto gguf_bytes = [&](const std::string& name) {
        const auto data = file.tensor_data(*file.find_tensor(name));
        return std::string(reinterpret_cast<const char*>(data.data()), data.size());
    };
    std::string dtype;
    EXPECT_EQ(tensor_bytes(keep.path(), "blk.3.w_down", &dtype), gguf_bytes("blk.3.ffn_down.weight"));
    EXPECT_EQ(dtype, "q4_1");
    EXPECT_EQ(tensor_bytes(keep.path(), "tok_embd", &dtype), gguf_bytes("token_embd.weight"));
    EXPECT_EQ(dtype, "q8_0");
    // wqkv = [q; k; v]: v as stored; q's rows permuted within each head, so the same bytes in another order.
    const std::string wqkv = tensor_bytes(keep.path(), "blk.0.wqkv", &dtype);
    const size_t row = dtype_bytes(DType::Q4_1, 576);
    EXPECT_EQ(wqkv.substr((576 + 192) * row), gguf_bytes("blk.0.attn_v.weight"));
    std::string q = wqkv.substr(0, 576 * row), gq = gguf_bytes("blk.0.attn_q.weight");
    EXPECT_NE(q, gq);
    std::vector<std::string> a, b;
    for (size_t r = 0; r < 576; ++r) a.push_back(q.substr(r * row, row)), b.push_back(gq.substr(r * row, row));
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b);

    build_engine(spec, options("float"), f32.path());
    const std::vector<int32_t> prompt = {1, 9690, 281, 3240, 29, 6036, 4116, 30, 314, 3110};
    const auto kept = logits_of(keep.path(), prompt), ref = logits_of(f32.path(), prompt);
    // Same weights; only the activations' int8 rounding differs.
    EXPECT_LT(test::rel_error(kept.data(), ref.data(), ref.size()), 0.03);
    auto argmax = [](const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
    EXPECT_EQ(argmax(kept), argmax(ref));
}

TEST(QuantizedBuild, BadChoicesAndEnginesAreRefused) {
    BuildOptions o;
    EXPECT_THROW(set_weights_mode(o, "float16"), Error);  // a float type is --dtype's business
    EXPECT_THROW(set_weights_mode(o, "q9_0"), Error);
    // An engine whose block-format tensor does not hold whole blocks a row.
    TempDir dir;
    build_engine(random_model_spec("tiny", 1), options("q8_0"), dir.path());
    auto config = test::read_json(dir / "config.json");
    for (auto& t : config["weights"]["tensors"])
        if (t["name"] == "blk.0.w_down") t["shape"] = {96 * 8, 32};  // same bytes, rows of one block: fine
    std::ofstream(dir / "config.json") << config.dump();
    EXPECT_THROW(Engine{dir.path()}, Error);  // the wrong shape for the model
    for (auto& t : config["weights"]["tensors"])
        if (t["name"] == "blk.0.w_down") t["shape"] = {96, 250}, t["bytes"] = 96 * 250;
    std::ofstream(dir / "config.json") << config.dump();
    try {
        Engine e(dir.path());
        ADD_FAILURE() << "accepted rows of partial blocks";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("whole q8_0 blocks"), std::string::npos) << e.what();
    }
    config["dtype"] = "q4_0";
    std::ofstream(dir / "config.json") << config.dump();
    EXPECT_THROW(Engine{dir.path()}, Error);
}

}  // namespace
}  // namespace lamina
