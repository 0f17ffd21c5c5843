// The LLaMA family's tensors (Mistral's are the same). Engine layout: wqkv = [q; k; v] and
// w_gate_up = [gate; up] fused row-wise (the matmul then yields q|k|v and gate|up side by side); norms and
// biases f32. Order: the engine file's, which is also the order `lamina build` reads the checkpoint in.
#include "model/weight_names.h"

namespace lamina {

const FamilyNames& llama_weight_names() {
    using R = WeightRole;
    using P = Presence;
    using S = TpSplit;
    static const FamilyNames names{
        "model.layers.",
        "blk.",
        {
            {{"tok_embd", R::Embedding, P::Always, S::RowsAndZeroRow, Dim::Embd,
              {{"model.embed_tokens.weight", "token_embd.weight", Dim::Vocab}}},
             &LlamaWeights::tok_embd},
            {{"output_norm", R::Norm, P::Always, S::Replicated, Dim::None, {{"model.norm.weight", "output_norm.weight", Dim::Embd}}},
             &LlamaWeights::output_norm},
            // Tied: the engine reader points the head at tok_embd's rows.
            {{"output", R::Matrix, P::UntiedHead, S::Rows, Dim::Embd, {{"lm_head.weight", "output.weight", Dim::Vocab}}},
             &LlamaWeights::output},
        },
        {
            {{"attn_norm", R::Norm, P::Always, S::Replicated, Dim::None,
              {{"input_layernorm.weight", "attn_norm.weight", Dim::Embd}}},
             &LayerWeights::attn_norm},
            {{"wqkv", R::Matrix, P::Always, S::Rows, Dim::Embd,
              {{"self_attn.q_proj.weight", "attn_q.weight", Dim::QDim, true},
               {"self_attn.k_proj.weight", "attn_k.weight", Dim::KvDim, true},
               {"self_attn.v_proj.weight", "attn_v.weight", Dim::KvDim}}},
             &LayerWeights::wqkv},
            {{"bqkv", R::Bias, P::AttnBias, S::Rows, Dim::None,
              {{"self_attn.q_proj.bias", "attn_q.bias", Dim::QDim, true},
               {"self_attn.k_proj.bias", "attn_k.bias", Dim::KvDim, true},
               {"self_attn.v_proj.bias", "attn_v.bias", Dim::KvDim}}},
             &LayerWeights::bqkv},
            {{"wo", R::Matrix, P::Always, S::Cols, Dim::QDim, {{"self_attn.o_proj.weight", "attn_output.weight", Dim::Embd}}},
             &LayerWeights::wo},
            {{"bo", R::Bias, P::AttnBias, S::Rank0, Dim::None, {{"self_attn.o_proj.bias", "attn_output.bias", Dim::Embd}}},
             &LayerWeights::bo},
            {{"ffn_norm", R::Norm, P::Always, S::Replicated, Dim::None,
              {{"post_attention_layernorm.weight", "ffn_norm.weight", Dim::Embd}}},
             &LayerWeights::ffn_norm},
            {{"w_gate_up", R::Matrix, P::Always, S::Rows, Dim::Embd,
              {{"mlp.gate_proj.weight", "ffn_gate.weight", Dim::Ff}, {"mlp.up_proj.weight", "ffn_up.weight", Dim::Ff}}},
             &LayerWeights::w_gate_up},
            {{"b_gate_up", R::Bias, P::MlpBias, S::Rows, Dim::None,
              {{"mlp.gate_proj.bias", "ffn_gate.bias", Dim::Ff}, {"mlp.up_proj.bias", "ffn_up.bias", Dim::Ff}}},
             &LayerWeights::b_gate_up},
            {{"w_down", R::Matrix, P::Always, S::Cols, Dim::Ff, {{"mlp.down_proj.weight", "ffn_down.weight", Dim::Embd}}},
             &LayerWeights::w_down},
            {{"b_down", R::Bias, P::MlpBias, S::Rank0, Dim::None, {{"mlp.down_proj.bias", "ffn_down.bias", Dim::Embd}}},
             &LayerWeights::b_down},
        },
    };
    return names;
}

}  // namespace lamina
