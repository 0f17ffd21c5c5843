// Issue 24: a tokenizer that does not match the embedding. More tokens than embedding rows (an id the
// model cannot embed) is refused by `lamina build` before it writes anything, naming both sizes. Fewer
// tokens than rows is a padded embedding, as many HF checkpoints have: the build used to accept it and
// `run` then failed after generating ("token id 355 is outside the vocab (0..299)"); the engine's vocab
// is now padded to the embedding, so every id the model can produce decodes.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "../test_util.h"

namespace lamina {
namespace {

namespace fs = std::filesystem;
using test::run_command;

// tiny_llama (vocab_size 384) with its tokenizer.json changed by `edit`.
fs::path tiny_with_tokenizer(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
    const fs::path out = dir / "ckpt";
    fs::create_directories(out);
    for (const auto& e : fs::directory_iterator(test::data_dir() / "tiny_llama")) fs::copy_file(e.path(), out / e.path().filename());
    nlohmann::json tok = test::read_json(out / "tokenizer.json");
    edit(tok);
    test::write_file(out / "tokenizer.json", tok.dump());
    return out;
}

TEST(BuildVocab, TokenizerLargerThanTheEmbeddingIsRefusedBeforeWriting) {
    test::TempDir dir;
    const fs::path ckpt = tiny_with_tokenizer(dir.path(), [](nlohmann::json& t) { t["model"]["vocab"]["zzz"] = 500; });
    const fs::path engine = dir / "engine";
    const auto r = run_command(test::lamina_binary() + " build --model_dir " + ckpt.string() + " --output_dir " + engine.string());
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("the tokenizer has 501 tokens but the model's embedding has 384 rows"), std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find("build: "), std::string::npos) << "converted weights before refusing: " << r.output;
    EXPECT_FALSE(fs::exists(engine)) << "wrote into the output dir before refusing";
}

TEST(BuildVocab, TokenizerSmallerThanTheEmbeddingIsPadded) {
    test::TempDir dir;
    constexpr int kTokens = 300;  // of the embedding's 384 rows
    const fs::path ckpt = tiny_with_tokenizer(dir.path(), [](nlohmann::json& t) {
        nlohmann::json vocab = nlohmann::json::object();
        for (const auto& [piece, id] : t["model"]["vocab"].items())
            if (id.get<int>() < kTokens) vocab[piece] = id;
        nlohmann::json merges = nlohmann::json::array();
        for (const auto& m : t["model"]["merges"]) {
            const std::string a = m[0], b = m[1];
            if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(m);
        }
        t["model"]["vocab"] = vocab;
        t["model"]["merges"] = merges;
    });
    const fs::path engine = dir / "engine";
    const auto built = run_command(test::lamina_binary() + " build --dtype float32 --model_dir " + ckpt.string() +
                                   " --output_dir " + engine.string());
    ASSERT_EQ(built.status, 0) << built.output;
    EXPECT_EQ(test::read_json(engine / "tokenizer.lamina.json")["tokens"].size(), 384u);

    // The reproducer: greedy from "hello world" reaches an id past the tokenizer's 300 within 40 tokens.
    const auto r = run_command(test::lamina_binary() + " run --device cpu --engine_dir " + engine.string() +
                               " --input_text 'hello world' --max_output_len 40 --output_json " + (dir / "out.json").string());
    ASSERT_EQ(r.status, 0) << r.output;
    const auto ids = test::read_json(dir / "out.json")["results"][0]["outputs"][0]["ids"].get<std::vector<int>>();
    EXPECT_TRUE(std::any_of(ids.begin(), ids.end(), [](int id) { return id >= kTokens; }))
        << "no padded id generated: the test no longer exercises the padding";
}

}  // namespace
}  // namespace lamina
