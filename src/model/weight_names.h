// One name table per model family: for every engine tensor, the checkpoint tensors it is made of (their
// Hugging Face and GGUF names, fused row-wise in order), its role, when the model has it, how tensor
// parallelism cuts it, and the LlamaWeights field its view goes to. The GGUF and safetensors loaders
// (model_spec.cpp), `lamina build` (build/engine_writer.cpp) and the engine reader (runtime/engine.cpp) all
// resolve names here and nowhere else; a new family is a config reader plus one table (names_<family>.cpp).
//
// Names: a global tensor's names are whole ("model.embed_tokens.weight", "token_embd.weight"); a layer
// tensor's are suffixes under the family's layer prefixes ("model.layers.3." + "self_attn.q_proj.weight",
// "blk.3." + "attn_q.weight"), and the engine's under "blk.3." (build/engine_format.h, layer_tensor).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "model/llama_weights.h"
#include "model/model_config.h"

namespace lamina {

struct TpSharding;

// A tensor dimension in the glossary's terms; its size comes from a ModelConfig (dim_size).
enum class Dim {
    None,   // the columns of a vector: it has one dimension
    Vocab,  // n_vocab
    Embd,   // n_embd
    QDim,   // n_head * head_dim
    KvDim,  // n_head_kv * head_dim
    Ff,     // n_ff
};
int64_t dim_size(Dim d, const ModelConfig& c);

// What a tensor is. Norms and biases are stored f32; embeddings and matrices take the build's dtype. A
// random-weight spec fills norms with ones.
enum class WeightRole { Embedding, Norm, Matrix, Bias };

// When a model has the tensor (ModelConfig::block).
enum class Presence { Always, AttnBias, MlpBias, UntiedHead };

// How tensor parallelism cuts the engine tensor over the ranks (parallel/sharding.h).
enum class TpSplit {
    Replicated,      // every rank holds all of it (norms)
    Rows,            // column-parallel: each part's rows cut to the rank's share of its row dimension (the
                     // rank's query heads, KV heads, n_ff columns or vocabulary shard)
    RowsAndZeroRow,  // Rows, plus one zero row (tp_size > 1) that the ids of other ranks map to (the embedding)
    Cols,            // row-parallel: the columns of the rank's share of the column dimension
    Rank0,           // the bias of a row-parallel projection: rank 0 only, so the all-reduce adds it once
};

// One tensor of a checkpoint, [rows, cols] in PyTorch order ([rows] for a vector).
struct CheckpointTensor {
    const char* hf;
    const char* gguf;
    Dim rows;
    // convert_hf_to_gguf interleaves the rows of each head for llama.cpp's adjacent-pair RoPE (q and k, weights
    // and biases); the GGUF loader undoes it so a spec is in Hugging Face's layout.
    bool gguf_rope_rows = false;
};

// One tensor of the engine: its parts' rows concatenated in order ([q; k; v], [gate; up]); every part has the
// tensor's column dimension.
struct EngineTensorName {
    const char* name;
    WeightRole role;
    Presence presence;
    TpSplit split;
    Dim cols;
    std::vector<CheckpointTensor> parts;
};
struct GlobalTensorName : EngineTensorName {
    TensorView LlamaWeights::*field;
};
struct LayerTensorName : EngineTensorName {
    TensorView LayerWeights::*field;
};

struct FamilyNames {
    std::string hf_layer_prefix;            // "model.layers."
    std::string gguf_layer_prefix;          // "blk."
    std::vector<GlobalTensorName> globals;  // in the engine file's order
    std::vector<LayerTensorName> layer;     // each layer's, in the engine file's order

    // A part's name in a checkpoint; layer -1 for a global tensor.
    std::string hf_name(const CheckpointTensor& part, int64_t layer = -1) const;
    std::string gguf_name(const CheckpointTensor& part, int64_t layer = -1) const;
    // The table entry, part and layer (-1: global) a checkpoint tensor's name refers to; nullopt for a name
    // outside the table.
    struct Found {
        const EngineTensorName* tensor;
        const CheckpointTensor* part;
        int64_t layer;
    };
    std::optional<Found> find_hf(std::string_view name) const;
    std::optional<Found> find_gguf(std::string_view name) const;
    // The entry of an engine tensor (a broken invariant when the table has none).
    const GlobalTensorName& global(std::string_view engine_name) const;
    const LayerTensorName& layer_tensor(std::string_view engine_name) const;
};

// The table of a family (ModelConfig::arch); lamina::Error naming it when lamina has none.
const FamilyNames& weight_names(const std::string& arch);
const FamilyNames& llama_weight_names();  // LLaMA and Mistral (names_llama.cpp)

bool is_present(const EngineTensorName& t, const ModelConfig& c);
// A part's shape in the checkpoint of a model with config c.
std::vector<int64_t> checkpoint_shape(const EngineTensorName& t, const CheckpointTensor& part, const ModelConfig& c);
// The size of `d` in one rank's share: the rank config's (its heads and n_ff), the vocabulary shard when
// the vocabulary is split (tp_size > 1).
int64_t rank_dim_size(Dim d, const ModelConfig& rank_config, const TpSharding& tp);
// The tensor's shape in one rank's weights file (the whole model's at tp_size 1).
std::vector<int64_t> engine_shape(const EngineTensorName& t, const ModelConfig& rank_config, const TpSharding& tp);

// The heads GGUF interleaved the rows of (q: n_head, k: n_head_kv); 0 for a part it stores as Hugging Face does.
int64_t gguf_rope_heads(const CheckpointTensor& part, const ModelConfig& c);

// A checkpoint tensor of one model with both names resolved.
struct CheckpointName {
    std::string hf, gguf;
    std::vector<int64_t> shape;
    WeightRole role;
};
// Every checkpoint tensor a model with config c is built from, in the order `lamina build` reads them.
std::vector<CheckpointName> checkpoint_names(const ModelConfig& c);

}  // namespace lamina
