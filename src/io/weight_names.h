// The one name table between GGUF tensor names and Hugging Face names for the LLaMA family.
#pragma once

#include <optional>
#include <string>

namespace lamina {

// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"; nullopt for names not in the table.
std::optional<std::string> hf_name_from_gguf(const std::string& gguf_name);

// Hugging Face weight names the LLaMA model uses (layer-indexed ones take the layer).
namespace hf_names {
inline const std::string embed = "model.embed_tokens.weight";
inline const std::string norm = "model.norm.weight";
inline const std::string lm_head = "lm_head.weight";
std::string layer(int64_t i, const char* suffix);  // layer(3, "self_attn.q_proj.weight")
}  // namespace hf_names

}  // namespace lamina
