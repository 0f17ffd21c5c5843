// An engine directory opened for running: config parsed and checked, weights.bin mapped, every
// tensor resolved into the declared LlamaWeights struct, the tokenizer loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mmap_file.h"
#include "core/tensor.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

namespace lamina {

struct LayerWeights {
    TensorView attn_norm;  // [n_embd] f32
    TensorView wqkv;       // [q_dim + 2 kv_dim, n_embd]
    TensorView bqkv;       // [q_dim + 2 kv_dim] f32, empty without attention bias
    TensorView wo;         // [n_embd, q_dim]
    TensorView bo;         // [n_embd] f32, optional
    TensorView ffn_norm;   // [n_embd] f32
    TensorView w_gate_up;  // [2 n_ff, n_embd]: gate rows, then up rows
    TensorView b_gate_up;  // [2 n_ff] f32, optional
    TensorView w_down;     // [n_embd, n_ff]
    TensorView b_down;     // [n_embd] f32, optional
};

struct LlamaWeights {
    TensorView tok_embd;     // [n_vocab, n_embd]
    TensorView output_norm;  // [n_embd] f32
    TensorView output;       // [n_vocab, n_embd]; == tok_embd when embeddings are tied
    std::vector<LayerWeights> layers;
};

struct EngineLimits {
    int64_t max_batch_size = 1;
    int64_t max_input_len = 0;
    int64_t max_output_len = 0;
};

class Engine {
public:
    // Throws lamina::Error naming the file and field for a missing, wrong-version or corrupt engine.
    explicit Engine(const std::filesystem::path& dir);

    const std::filesystem::path& dir() const { return dir_; }
    const ModelConfig& config() const { return config_; }
    DType dtype() const { return dtype_; }
    const EngineLimits& limits() const { return limits_; }
    bool rmsnorm_plugin() const { return rmsnorm_plugin_; }
    const LlamaWeights& weights() const { return weights_; }  // views into the mapped file (host memory)
    const MappedFile& weights_file() const { return weights_file_; }
    bool has_tokenizer() const { return tokenizer_ != nullptr; }
    const Tokenizer& tokenizer() const;  // throws when the engine was built without one

private:
    std::filesystem::path dir_;
    ModelConfig config_;
    DType dtype_ = DType::F32;
    EngineLimits limits_;
    bool rmsnorm_plugin_ = true;
    MappedFile weights_file_;
    LlamaWeights weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace lamina
