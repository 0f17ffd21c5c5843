// Hugging Face config.json -> ModelConfig, and GGUF llama.* metadata -> ModelConfig.
#pragma once

#include <filesystem>

#include "model/model_config.h"

namespace lamina {

class GgufFile;

// Accepts LlamaForCausalLM / MistralForCausalLM (model_type llama or mistral); anything else is a
// lamina::Error naming the architecture.
ModelConfig model_config_from_hf(const std::filesystem::path& config_json);
ModelConfig model_config_from_gguf(const GgufFile& f);

}  // namespace lamina
