// An engine directory opened for running: config parsed and checked, weights.bin (or one
// weights.rank<r>.bin per tensor-parallel rank) mapped, every tensor resolved into the declared
// LlamaWeights struct, the tokenizer loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/mmap_file.h"
#include "core/tensor.h"
#include "model/llama_weights.h"
#include "model/model_config.h"
#include "parallel/sharding.h"
#include "tokenizer/tokenizer.h"

namespace lamina {

class JsonFields;

// One tensor-parallel rank's share of the engine (the whole model when tp_size is 1).
struct EngineRank {
    ModelConfig config;       // the rank's n_head, n_head_kv and n_ff; the whole n_vocab
    int64_t vocab_begin = 0;  // tok_embd / output row i is token id vocab_begin + i
    MappedFile file;
    LlamaWeights weights;     // views into `file`
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
    // True when a matrix or the embedding is in a block format (quantized).
    bool has_block_weights() const;
    const EngineLimits& limits() const { return limits_; }
    // This run's limits in place of the built ones (the weights do not depend on them; an engine built on
    // the fly from a checkpoint is cached once and opened with each run's limits). Throws lamina::Error
    // when a limit is below 1 or max_input_len + max_output_len exceeds the model's context.
    void set_limits(const EngineLimits& limits);
    bool rmsnorm_plugin() const { return rmsnorm_plugin_; }
    // Tensor parallelism: tp_size ranks, cut as sharding() says; rank(0) is the whole model at tp_size 1.
    int tp_size() const { return sharding_.tp_size; }
    const TpSharding& sharding() const { return sharding_; }
    const EngineRank& rank(int r) const { return ranks_.at(static_cast<size_t>(r)); }
    const LlamaWeights& weights() const { return ranks_[0].weights; }  // rank 0's views into its mapped file
    const MappedFile& weights_file() const { return ranks_[0].file; }
    bool has_tokenizer() const { return tokenizer_ != nullptr; }
    const Tokenizer& tokenizer() const;  // throws when the engine was built without one

private:
    // Maps rank r's weights file (described by `wj`, its object of config.json) and resolves its tensors.
    void load_rank(const JsonFields& wj, int r, int64_t version);

    std::filesystem::path dir_;
    ModelConfig config_;
    DType dtype_ = DType::F32;
    EngineLimits limits_;
    bool rmsnorm_plugin_ = true;
    TpSharding sharding_;
    std::vector<EngineRank> ranks_;
    std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace lamina
