// The LLaMA name table: both checkpoint namings find every tensor back, names outside the table are not found,
// and the engine shapes are the runtime layout's (fused q/k/v and gate/up).
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "model/weight_names.h"
#include "parallel/sharding.h"

namespace lamina {
namespace {

ModelConfig config(bool biases, bool tied) {
    ModelConfig c;
    c.n_vocab = 50, c.n_embd = 24, c.n_layer = 12, c.n_head = 6, c.n_head_kv = 2, c.head_dim = 4, c.n_ff = 40, c.n_ctx = 64;
    c.block.attn_bias = c.block.mlp_bias = biases;
    c.block.tied_embeddings = tied;
    return c;
}

TEST(WeightNames, EveryCheckpointNameIsFoundBackUnderBothNamings) {
    const FamilyNames& names = weight_names("llama");
    for (bool biases : {false, true})
        for (bool tied : {false, true}) {
            const ModelConfig c = config(biases, tied);
            const auto all = checkpoint_names(c);
            // 9 tensors a layer (+7 biases), embedding and final norm (+ the head when untied).
            EXPECT_EQ(all.size(), static_cast<size_t>(c.n_layer * (biases ? 16 : 9) + (tied ? 2 : 3)));
            std::set<std::string> hf, gguf;
            for (const CheckpointName& n : all) {
                EXPECT_TRUE(hf.insert(n.hf).second) << n.hf;
                EXPECT_TRUE(gguf.insert(n.gguf).second) << n.gguf;
                const auto by_hf = names.find_hf(n.hf), by_gguf = names.find_gguf(n.gguf);
                ASSERT_TRUE(by_hf && by_gguf) << n.hf << " / " << n.gguf;
                EXPECT_EQ(by_hf->part, by_gguf->part) << n.hf;
                EXPECT_EQ(by_hf->layer, by_gguf->layer) << n.hf;
                EXPECT_EQ(names.hf_name(*by_hf->part, by_hf->layer), n.hf);
                EXPECT_EQ(names.gguf_name(*by_gguf->part, by_gguf->layer), n.gguf);
                EXPECT_EQ(checkpoint_shape(*by_hf->tensor, *by_hf->part, c), n.shape) << n.hf;
            }
            EXPECT_TRUE(hf.count("model.layers.11.self_attn.q_proj.weight"));
            EXPECT_TRUE(gguf.count("blk.11.attn_q.weight"));
            EXPECT_EQ(hf.count("lm_head.weight"), tied ? 0u : 1u);
            EXPECT_EQ(gguf.count("blk.0.ffn_down.bias"), biases ? 1u : 0u);
        }
    const ModelConfig c = config(false, false);
    EXPECT_EQ(gguf_rope_heads(*names.find_gguf("blk.0.attn_q.weight")->part, c), 6);
    EXPECT_EQ(gguf_rope_heads(*names.find_gguf("blk.0.attn_k.bias")->part, c), 2);
    EXPECT_EQ(gguf_rope_heads(*names.find_gguf("blk.0.attn_v.weight")->part, c), 0);
}

TEST(WeightNames, NamesOutsideTheTableAreNotFound) {
    const FamilyNames& names = weight_names("llama");
    for (const char* n : {"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.01.mlp.up_proj.weight",
                          "model.layers..mlp.up_proj.weight", "model.layers.x.mlp.up_proj.weight", "layers.0.mlp.up_proj.weight",
                          "model.layers.0.mlp.up_proj.weight2", "model.layers.0mlp.up_proj.weight", "blk.0.attn_q.weight"})
        EXPECT_FALSE(names.find_hf(n)) << n;
    for (const char* n : {"rope_freqs.weight", "blk.1.attn_q", "blk.-1.attn_q.weight", "blk.99999999999.attn_q.weight",
                          "model.norm.weight"})
        EXPECT_FALSE(names.find_gguf(n)) << n;
    EXPECT_THROW(weight_names("gpt2"), Error);
}

TEST(WeightNames, EngineShapesAreTheRuntimeLayout) {
    const ModelConfig c = config(true, false);
    const FamilyNames& names = weight_names("llama");
    const TpSharding one = plan_tensor_parallel(c, 1), two = plan_tensor_parallel(c, 2);
    const ModelConfig rc = two.rank_config(c);
    auto shape = [&](const EngineTensorName& t, const TpSharding& tp) { return engine_shape(t, tp.tp_size == 1 ? c : rc, tp); };
    using Shape = std::vector<int64_t>;
    EXPECT_EQ(shape(names.layer_tensor("wqkv"), one), (Shape{c.qkv_dim(), 24}));
    EXPECT_EQ(shape(names.layer_tensor("bqkv"), one), (Shape{c.qkv_dim()}));
    EXPECT_EQ(shape(names.layer_tensor("w_gate_up"), one), (Shape{80, 24}));
    EXPECT_EQ(shape(names.layer_tensor("wo"), one), (Shape{24, 24}));
    EXPECT_EQ(shape(names.global("tok_embd"), one), (Shape{50, 24}));
    // tp 2: each rank holds 3 query heads and 1 KV head, half of n_ff, 25 vocabulary rows (+1 zero row in tok_embd).
    EXPECT_EQ(shape(names.layer_tensor("wqkv"), two), (Shape{(3 + 2) * 4, 24}));
    EXPECT_EQ(shape(names.layer_tensor("wo"), two), (Shape{24, 12}));
    EXPECT_EQ(shape(names.layer_tensor("w_down"), two), (Shape{24, 20}));
    EXPECT_EQ(shape(names.layer_tensor("bo"), two), (Shape{24}));
    EXPECT_EQ(shape(names.global("tok_embd"), two), (Shape{26, 24}));
    EXPECT_EQ(shape(names.global("output"), two), (Shape{25, 24}));
}

}  // namespace
}  // namespace lamina
