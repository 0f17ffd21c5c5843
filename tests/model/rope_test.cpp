// rope_inv_freq against the frequencies and attention scaling transformers set up for each tiny fixture
// (reference.json's hf_rope, from tools/hf_reference.py v5), and the GGUF readings of the same models.
#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "io/gguf.h"
#include "io/hf_config.h"

namespace lamina {
namespace {

// Largest |a - b| / |b| over the frequencies.
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / std::abs(b[i]));
    return worst;
}

class RopeFrequencies : public ::testing::TestWithParam<std::string> {};

TEST_P(RopeFrequencies, MatchTransformers) {
    const auto dir = test::data_dir() / GetParam();
    const auto ref = test::read_json(dir / "reference.json").at("hf_rope");
    const ModelConfig c = model_config_from_hf(dir / "config.json");
    const auto expected = ref.at("inv_freq").get<std::vector<float>>();
    const std::vector<float> inv = rope_inv_freq(c);
    ASSERT_EQ(inv.size(), expected.size());
    // The same float32 operations as transformers; only pow, which torch vectorizes with its own (<= 1 ulp)
    // routine, may round differently: 2 ulp of float32 is 2.4e-7 relative. (Bit-equal on the x86-64 dev CPU.)
    EXPECT_LT(max_rel_diff(inv, expected), 2.4e-7) << GetParam();
    EXPECT_EQ(c.rope_scaling.attention_factor, ref.at("attention_scaling").get<float>()) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RopeFrequencies,
                         ::testing::Values("tiny_llama_v5_llama3", "tiny_llama_v5_yarn", "tiny_llama_v5_linear",
                                           "tiny_llama_v5_dynamic", "tiny_mistral_v5"));

TEST(RopeFrequencies, GgufLlama3FactorsAndYarnKeys) {
    // llama3 as the converter's rope_freqs.weight divisors: inv_freq / factor may round differently from
    // transformers' blend by an ulp or two (bit-equal for this model on the dev CPU).
    GgufFile l3(test::data_dir() / "gguf" / "tiny_llama_v5_llama3.gguf");
    const ModelConfig a = model_config_from_gguf(l3);
    EXPECT_EQ(a.rope_scaling.kind, RopeScaling::Kind::FreqFactors);
    EXPECT_EQ(a.head_dim, 24);
    EXPECT_EQ(a.rope_theta, 500000.0f);
    EXPECT_TRUE(a.block.tied_embeddings && a.block.attn_bias && a.block.mlp_bias);
    const auto ref3 = test::read_json(test::data_dir() / "tiny_llama_v5_llama3" / "reference.json").at("hf_rope");
    EXPECT_LT(max_rel_diff(rope_inv_freq(a), ref3.at("inv_freq").get<std::vector<float>>()), 1e-6);

    GgufFile y(test::data_dir() / "gguf" / "tiny_llama_v5_yarn.gguf");
    const ModelConfig b = model_config_from_gguf(y);
    const ModelConfig hf = model_config_from_hf(test::data_dir() / "tiny_llama_v5_yarn" / "config.json");
    EXPECT_EQ(b.rope_scaling.kind, RopeScaling::Kind::Yarn);
    EXPECT_EQ(b.rope_scaling.factor, hf.rope_scaling.factor);
    EXPECT_EQ(b.rope_scaling.original_max_position, hf.rope_scaling.original_max_position);
    EXPECT_EQ(b.rope_scaling.attention_factor, hf.rope_scaling.attention_factor);
    EXPECT_EQ(rope_inv_freq(b), rope_inv_freq(hf));
}

}  // namespace
}  // namespace lamina
