// ModelSpec: what every checkpoint becomes — hyperparameters plus named weights that can be read as
// float32, or as stored (a GGUF block type kept by `lamina build --weights keep`). Names are Hugging Face's (`model.layers.3.self_attn.q_proj.weight`); shapes are row-major
// [out, in] as in PyTorch. Nothing downstream knows whether a spec came from GGUF or safetensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model_config.h"
#include "tokenizer/vocab.h"

namespace lamina {

class GgufFile;

struct WeightSource {
    std::vector<int64_t> shape;  // row-major, PyTorch order: [rows, cols] or [n]
    std::string origin;          // file and tensor name in that file, for error messages
    // Fills `dst` (n_elements floats) with the exactly dequantized / upcast weight.
    std::function<void(float* dst)> read;
    // The type the checkpoint stores it in, and (when set) a reader of those bytes, dtype_bytes(stored,
    // n_elements) of them, rows in the order `read` gives them.
    DType stored = DType::F32;
    std::function<void(void* dst)> read_stored;
    int64_t n_elements() const;
};

struct ModelSpec {
    ModelConfig config;
    Vocab vocab;
    std::map<std::string, WeightSource> weights;
    std::string source;  // the path it was loaded from
    std::shared_ptr<const void> keep_alive;  // the mapped files the readers point into

    // The weight with this HF name, checked against the expected shape; throws lamina::Error naming
    // the tensor, the file and both shapes when it is missing or mis-shaped.
    const WeightSource& weight(const std::string& name, const std::vector<int64_t>& shape) const;
    bool has(const std::string& name) const { return weights.count(name) != 0; }
};

// A .gguf file or a Hugging Face directory (config.json + *.safetensors + tokenizer.json). With
// require_tokenizer false, a directory without tokenizer.json loads with an empty vocab (the caller
// supplies the tokenizer of another model, e.g. for random-weight checkpoints).
ModelSpec load_model_spec(const std::filesystem::path& path, bool require_tokenizer = true);
ModelSpec load_gguf_spec(const std::filesystem::path& file);
// The same from a GGUF file already opened (the GGUF fuzz harness also reads every tensor of the one it opens).
ModelSpec load_gguf_spec(std::shared_ptr<const GgufFile> gguf);
ModelSpec load_hf_spec(const std::filesystem::path& dir, bool require_tokenizer = true);

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace lamina
