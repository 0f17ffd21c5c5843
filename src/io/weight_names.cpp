#include "io/weight_names.h"

#include <array>
#include <utility>

namespace lamina {

namespace {
// GGUF per-layer suffix -> HF per-layer suffix.
constexpr std::array<std::pair<const char*, const char*>, 16> kLayerNames{{
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.bias", "self_attn.o_proj.bias"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    {"ffn_gate.bias", "mlp.gate_proj.bias"},
    {"ffn_up.bias", "mlp.up_proj.bias"},
    {"ffn_down.bias", "mlp.down_proj.bias"},
}};
}  // namespace

std::string hf_names::layer(int64_t i, const char* suffix) {
    return "model.layers." + std::to_string(i) + "." + suffix;
}

std::optional<std::string> hf_name_from_gguf(const std::string& g) {
    if (g == "token_embd.weight") return hf_names::embed;
    if (g == "output_norm.weight") return hf_names::norm;
    if (g == "output.weight") return hf_names::lm_head;
    if (g.rfind("blk.", 0) != 0) return std::nullopt;
    const size_t dot = g.find('.', 4);
    if (dot == std::string::npos) return std::nullopt;
    const std::string index = g.substr(4, dot - 4);
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    const std::string suffix = g.substr(dot + 1);
    for (const auto& [gguf, hf] : kLayerNames)
        if (suffix == gguf) return "model.layers." + index + "." + hf;
    return std::nullopt;
}

}  // namespace lamina
