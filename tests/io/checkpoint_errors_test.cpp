// Malformed Hugging Face checkpoints: config.json, safetensors, missing tensors, wrong shapes.
#include <gtest/gtest.h>

#include <cstring>

#include "../test_util.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace lamina {
namespace {

using test::TempDir;

// A copy of the tiny_llama checkpoint that a test may damage.
std::filesystem::path copy_tiny(const TempDir& dir) {
    const auto dst = dir / "ckpt";
    std::filesystem::copy(test::data_dir() / "tiny_llama", dst, std::filesystem::copy_options::recursive);
    return dst;
}

void expect_error_mentioning(const std::filesystem::path& model, const std::string& needle) {
    TempDir out;
    try {
        test::build_from(model, out.path(), DType::F32, 16, 16);
        ADD_FAILURE() << "build accepted a bad checkpoint; expected an error mentioning " << needle;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

// Rewrites model.safetensors through `edit`, which may change the header JSON and the data bytes.
void rewrite_safetensors(const std::filesystem::path& file,
                         const std::function<void(nlohmann::json&, std::string&)>& edit) {
    const std::string bytes = test::read_file(file);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
    std::string data = bytes.substr(8 + n);
    edit(header, data);
    const std::string h = header.dump();
    std::string out(8, '\0');
    const uint64_t len = h.size();
    std::memcpy(out.data(), &len, 8);
    test::write_file(file, out + h + data);
}

TEST(CheckpointErrors, MissingTensorIsNamed) {
    TempDir dir;
    const auto ckpt = copy_tiny(dir);
    // The tensor and its bytes go (the tensors still cover the data section exactly).
    rewrite_safetensors(ckpt / "model.safetensors", [](nlohmann::json& h, std::string& data) {
        const std::string name = "model.layers.1.mlp.up_proj.weight";
        const uint64_t begin = h[name]["data_offsets"][0], end = h[name]["data_offsets"][1];
        h.erase(name);
        data.erase(begin, end - begin);
        for (auto& [key, t] : h.items()) {
            if (key == "__metadata__" || t["data_offsets"][0].get<uint64_t>() < end) continue;
            t["data_offsets"] = {t["data_offsets"][0].get<uint64_t>() - (end - begin),
                                 t["data_offsets"][1].get<uint64_t>() - (end - begin)};
        }
    });
    expect_error_mentioning(ckpt, "model.layers.1.mlp.up_proj.weight");
}

TEST(CheckpointErrors, ShapeMismatchShowsBothShapes) {
    TempDir dir;
    const auto ckpt = copy_tiny(dir);
    rewrite_safetensors(ckpt / "model.safetensors", [](nlohmann::json& h, std::string&) {
        auto& t = h["model.layers.0.self_attn.o_proj.weight"];
        t["shape"] = {24, 216};  // same element count as [72, 72], wrong shape
    });
    expect_error_mentioning(ckpt, "has shape [24, 216], expected [72, 72]");
}

TEST(CheckpointErrors, OffsetsOutOfRangeAndTruncation) {
    TempDir dir;
    const auto ckpt = copy_tiny(dir);
    rewrite_safetensors(ckpt / "model.safetensors", [](nlohmann::json& h, std::string&) {
        h["model.norm.weight"]["data_offsets"] = {0, 1ull << 40};
    });
    expect_error_mentioning(ckpt, "model.norm.weight");
    // Truncate the real file at several offsets: header length, header, data.
    const std::string good = test::read_file(test::data_dir() / "tiny_llama" / "model.safetensors");
    for (size_t off : {size_t{0}, size_t{5}, size_t{8}, size_t{100}, good.size() / 2, good.size() - 1}) {
        test::write_file(ckpt / "model.safetensors", good.substr(0, off));
        EXPECT_THROW(SafetensorsFile(ckpt / "model.safetensors"), Error) << "truncated at " << off;
    }
}

TEST(CheckpointErrors, UnsupportedDtypeIsNamed) {
    TempDir dir;
    const auto ckpt = copy_tiny(dir);
    rewrite_safetensors(ckpt / "model.safetensors",
                        [](nlohmann::json& h, std::string&) { h["model.norm.weight"]["dtype"] = "F64"; });
    expect_error_mentioning(ckpt, "F64");
}

TEST(CheckpointErrors, ConfigProblems) {
    TempDir dir;
    const auto ckpt = copy_tiny(dir);
    auto cfg = test::read_json(ckpt / "config.json");

    auto arch = cfg;
    arch["architectures"] = {"GPT2LMHeadModel"};
    test::write_file(ckpt / "config.json", arch.dump());
    expect_error_mentioning(ckpt, "GPT2LMHeadModel");

    test::write_file(ckpt / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
    expect_error_mentioning(ckpt, "config.json");

    auto missing = cfg;
    missing.erase("hidden_size");
    test::write_file(ckpt / "config.json", missing.dump());
    expect_error_mentioning(ckpt, "hidden_size");

    auto gqa = cfg;
    gqa["num_key_value_heads"] = 4;  // 6 heads are not a multiple of 4
    test::write_file(ckpt / "config.json", gqa.dump());
    expect_error_mentioning(ckpt, "n_head_kv");

    std::filesystem::remove(ckpt / "config.json");
    expect_error_mentioning(ckpt, "config.json");
}

TEST(CheckpointErrors, ShardedIndexProblems) {
    TempDir dir;
    const auto dst = dir / "b";
    std::filesystem::copy(test::data_dir() / "tiny_llama_b", dst, std::filesystem::copy_options::recursive);
    auto index = test::read_json(dst / "model.safetensors.index.json");
    const std::string shard = index["weight_map"].begin()->get<std::string>();
    std::filesystem::remove(dst / shard);
    expect_error_mentioning(dst, shard);
}

// Issue 24. The reproducer: num_hidden_layers 2 over tiny_llama's three layers built a two-layer model and dropped
// layer 2's weights without a word (transformers, too, only warns).
TEST(CheckpointErrors, LayersPastNumHiddenLayersAreRefused) {
    TempDir dir;
    const auto ckpt = copy_tiny(dir);
    auto cfg = test::read_json(ckpt / "config.json");
    cfg["num_hidden_layers"] = 2;
    test::write_file(ckpt / "config.json", cfg.dump());
    expect_error_mentioning(ckpt, "tensor 'model.layers.2.");
    expect_error_mentioning(ckpt, "is of layer 2, but num_hidden_layers = 2");
}

// A tensor the name table knows but the config leaves out means the two describe different models: refused.
// A name outside the table (an old rotary_emb.inv_freq buffer) or the stored copy of a tied head is skipped.
TEST(CheckpointErrors, TensorsTheConfigLeavesOut) {
    TempDir dir;
    const auto b = dir / "b";  // tiny_llama_b: biases everywhere, tied embeddings
    std::filesystem::copy(test::data_dir() / "tiny_llama_b", b, std::filesystem::copy_options::recursive);
    auto cfg = test::read_json(b / "config.json");
    cfg["attention_bias"] = false;
    test::write_file(b / "config.json", cfg.dump());
    expect_error_mentioning(b, "self_attn.k_proj.bias' is a bias, but the config gives the model no attention biases");
    cfg["attention_bias"] = true;
    cfg["mlp_bias"] = false;
    test::write_file(b / "config.json", cfg.dump());
    expect_error_mentioning(b, "no MLP biases");

    const auto ckpt = copy_tiny(dir);
    rewrite_safetensors(ckpt / "model.safetensors", [](nlohmann::json& h, std::string& data) {
        const uint64_t at = data.size();
        data += std::string(24, '\0');
        h["model.layers.0.self_attn.rotary_emb.inv_freq"] = {{"dtype", "F32"}, {"shape", {6}}, {"data_offsets", {at, at + 24}}};
    });
    auto tied = test::read_json(ckpt / "config.json");
    tied["tie_word_embeddings"] = true;  // lm_head.weight stays in the file
    test::write_file(ckpt / "config.json", tied.dump());
    TempDir out;
    EXPECT_NO_THROW(test::build_from(ckpt, out.path(), DType::F32, 16, 16));
}

TEST(CheckpointErrors, ShardsOutsideTheDirectoryAreRefused) {
    TempDir dir;
    const auto dst = dir / "b";
    std::filesystem::copy(test::data_dir() / "tiny_llama_b", dst, std::filesystem::copy_options::recursive);
    auto index = test::read_json(dst / "model.safetensors.index.json");
    const std::string shard = index["weight_map"].begin()->get<std::string>();
    // A copy of the shard one level up: before, only '/' and ".." anywhere in the name were refused; now the
    // name must be a plain file name whatever it holds.
    std::filesystem::copy(dst / shard, dir / shard);
    index["weight_map"].begin().value() = "../" + shard;
    test::write_file(dst / "model.safetensors.index.json", index.dump());
    expect_error_mentioning(dst, "not a plain file name");
    index["weight_map"].begin().value() = (dir / shard).string();
    test::write_file(dst / "model.safetensors.index.json", index.dump());
    expect_error_mentioning(dst, "not a plain file name");
}

TEST(CheckpointErrors, CorruptTokenizerJson) {
    TempDir dir;
    const auto ckpt = copy_tiny(dir);
    const std::string tok = test::read_file(ckpt / "tokenizer.json");
    test::write_file(ckpt / "tokenizer.json", tok.substr(0, tok.size() / 2));
    expect_error_mentioning(ckpt, "tokenizer.json");
}

TEST(CheckpointErrors, NotADirectoryOrFile) {
    expect_error_mentioning("/nonexistent/model", "/nonexistent/model");
}

}  // namespace
}  // namespace lamina
