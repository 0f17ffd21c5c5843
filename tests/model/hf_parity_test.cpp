// Lamina against Hugging Face transformers (fixtures from tools/hf_reference.py; see tools/README.md).
#include <gtest/gtest.h>

#include "../test_util.h"
#include "backend/backend.h"
#include "runtime/generator.h"

namespace lamina {
namespace {

using test::TempDir;

// fp32 everywhere; only summation order differs from PyTorch, which moves logits by ~1e-6 relative.
constexpr double kLogitRelTol = 1e-4;

// Builds `model` (a tiny HF dir or GGUF) and checks it against `reference_dir`'s reference.json: the
// logits of every prompt position, the greedy ids, and the HF tokenizer's ids.
void expect_parity(const std::filesystem::path& model, const std::filesystem::path& reference_dir) {
    const auto ref = test::read_json(reference_dir / "reference.json");
    const std::string name = model.filename().string();
    TempDir dir;
    test::build_from(model, dir.path(), DType::F32, 64, 64);
    Engine engine(dir.path());
    auto backend = make_cpu_backend();
    Generator gen(engine, *backend, 1);
    const int64_t n_vocab = engine.config().n_vocab;
    for (const auto& c : ref["cases"]) {
        const auto ids = c["input_ids"].get<std::vector<int32_t>>();
        const auto expected = c["logits"].get<std::vector<std::vector<float>>>();
        const std::vector<float> logits = gen.prompt_logits(ids);
        ASSERT_EQ(expected.size(), ids.size());
        for (size_t p = 0; p < ids.size(); ++p) {
            const double err = test::rel_error(logits.data() + p * n_vocab, expected[p].data(), static_cast<size_t>(n_vocab));
            EXPECT_LT(err, kLogitRelTol) << name << " prompt length " << ids.size() << " position " << p;
        }
        GenerationParams params;
        params.max_new_tokens = static_cast<int64_t>(c["greedy_ids"].size());
        params.sampling.temperature = 0.0f;  // the fixture disabled EOS stopping: no stop ids
        const auto out = gen.generate({ids}, params);
        EXPECT_EQ(out[0], c["greedy_ids"].get<std::vector<int32_t>>()) << name << " prompt length " << ids.size();
    }
    // The HF tokenizer of the tiny model, through lamina's tokenizer.json (or GGUF vocabulary) reader.
    for (const auto& c : ref["tokenizer_cases"])
        EXPECT_EQ(engine.tokenizer().encode(c["text"].get<std::string>(), true, false),
                  c["input_ids"].get<std::vector<int32_t>>())
            << name << ": " << c["text"];
}

class TinyParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyParity, LogitsAndGreedyMatchTransformers) {
    expect_parity(test::data_dir() / GetParam(), test::data_dir() / GetParam());
}

// tiny_llama{,_b,_c}: config.json in the transformers 4.x layout (rope_theta / rope_scaling), written by
// tools/make_tiny_llama.py. The _v5 ones and tiny_mistral_v5: saved by transformers 5 (rope_parameters),
// tools/make_tiny_llama_v5.py; between them llama3, yarn (default and mscale attention factors), linear and
// dynamic RoPE, GQA, MHA, biases, tied embeddings, head_dim != hidden / heads, Mistral with a sliding window.
INSTANTIATE_TEST_SUITE_P(Fixtures, TinyParity,
                         ::testing::Values("tiny_llama", "tiny_llama_b", "tiny_llama_c", "tiny_llama_v5_llama3",
                                           "tiny_llama_v5_yarn", "tiny_llama_v5_linear", "tiny_llama_v5_dynamic",
                                           "tiny_mistral_v5"));

// The same models converted to GGUF as llama.cpp's converter does (tools/make_tiny_llama_v5.py): llama3 as a
// rope_freqs.weight tensor, yarn as rope.scaling.* keys. Checked against the source directory's reference.
class TinyGgufParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyGgufParity, LogitsAndGreedyMatchTransformers) {
    expect_parity(test::data_dir() / "gguf" / (GetParam() + ".gguf"), test::data_dir() / GetParam());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TinyGgufParity, ::testing::Values("tiny_llama_v5_llama3", "tiny_llama_v5_yarn"));

TEST(TinyParity, DecodeStepLogitsMatchTransformers) {
    // step_logits are HF's logits at each cached generate step: they test the decode path with a KV cache.
    const auto model_dir = test::data_dir() / "tiny_llama";
    const auto ref = test::read_json(model_dir / "reference.json");
    TempDir dir;
    test::build_from(model_dir, dir.path(), DType::F32, 64, 64);
    Engine engine(dir.path());
    auto backend = make_cpu_backend();
    Generator gen(engine, *backend, 1);
    const auto& c = ref["cases"][2];
    std::vector<int32_t> seq = c["input_ids"].get<std::vector<int32_t>>();
    const auto greedy = c["greedy_ids"].get<std::vector<int32_t>>();
    const auto steps = c["step_logits"].get<std::vector<std::vector<float>>>();
    for (size_t s = 0; s < 4; ++s) {  // logits of the last position of the growing sequence
        const auto all = gen.prompt_logits(seq);
        const float* last = all.data() + (seq.size() - 1) * engine.config().n_vocab;
        EXPECT_LT(test::rel_error(last, steps[s].data(), steps[s].size()), kLogitRelTol) << "step " << s;
        seq.push_back(greedy[s]);
    }
}

TEST(SmolLM2Parity, GreedyContinuationsMatchTransformers) {
    LAMINA_REQUIRE_SMOLLM2();
    const auto ref = test::read_json(test::data_dir() / "smollm2_greedy.json");
    TempDir dir;
    test::build_from(test::smollm2_gguf(), dir.path(), DType::F32, 256, 64);
    Engine engine(dir.path());
    auto backend = make_cpu_backend();
    Generator gen(engine, *backend, 1);
    const Tokenizer& tok = engine.tokenizer();
    int identical = 0;
    for (const auto& c : ref["cases"]) {
        const std::string text = c["text"];
        const bool chat = c["chat"];
        const auto ids = tok.encode(text, true, chat);
        ASSERT_EQ(ids, c["input_ids"].get<std::vector<int32_t>>()) << text;
        if (chat) {
            std::vector<std::pair<std::string, std::string>> messages;
            for (const auto& m : c["messages"]) messages.emplace_back(m["role"], m["content"]);
            EXPECT_EQ(apply_chat_template(tok.vocab(), messages, true), text);
        }
        GenerationParams params;
        params.max_new_tokens = ref["n_new_tokens"];
        params.sampling.temperature = 0.0f;
        params.stop_ids = {ref["eos_token_id"].get<int32_t>()};
        const auto out = gen.generate({ids}, params);
        EXPECT_EQ(out[0], c["greedy_ids"].get<std::vector<int32_t>>()) << text;
        EXPECT_EQ(tok.decode(out[0]), c["greedy_text"].get<std::string>()) << text;
        identical += out[0] == c["greedy_ids"].get<std::vector<int32_t>>();
    }
    EXPECT_EQ(identical, static_cast<int>(ref["cases"].size()));
}

}  // namespace
}  // namespace lamina
