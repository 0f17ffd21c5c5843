// The engine directory that `lamina build` writes and the runtime maps:
//   config.json            format + version, model config, dtype, build options, limits, tensor table
//   weights.bin            64-byte header, then every tensor 64-byte aligned in the runtime's layout
//   weights.rank<r>.bin    instead of weights.bin in a tensor-parallel engine (format version 2): rank
//                          r's shard, same layout and header (parallel/sharding.h says how it is cut)
//   tokenizer.lamina.json  the tokenizer (tokenizer/vocab.h)
// The tensors, their names, shapes and layouts (e.g. wqkv = [q; k; v] rows fused, norms and biases f32):
// the family's name table, model/weight_names.h. A layer's tensors are named "blk.<layer>.<name>".
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace lamina::engine_format {

inline constexpr const char* kFormatName = "lamina-engine";
inline constexpr int kFormatVersion = 1;    // one rank: weights.bin
inline constexpr int kFormatVersionTp = 2;  // tp_size > 1: config.json "tensor_parallel", one file per rank
inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kWeightsFile = "weights.bin";
inline constexpr const char* kTokenizerFile = "tokenizer.lamina.json";
inline constexpr uint64_t kAlignment = 64;  // bytes: a cache line, and enough for 16-byte vector loads
inline constexpr char kWeightsMagic[8] = {'L', 'A', 'M', 'I', 'N', 'A', 'W', 'T'};

// Bumped when what `lamina build` writes changes within a format version; the engine cache keys on it, so a cached
// engine of the old kind is rebuilt instead of refused. 2: weights headers record their rank and tp_size.
inline constexpr int kWriterRevision = 2;

// weights.bin starts with this header (padded to kAlignment bytes).
struct WeightsHeader {
    char magic[8];
    uint32_t version;
    // Which rank's shard the file holds, of how many: rank files swapped or mixed between engines are refused.
    // Files written before writer revision 2 hold zeros (once `uint32_t reserved`): accepted in format 1, where
    // there is one file, and refused with a "rebuild" in format 2.
    uint16_t rank;
    uint16_t tp_size;
    uint64_t file_bytes;  // the whole file; a shorter file is truncated
};
static_assert(sizeof(WeightsHeader) == 24 && sizeof(WeightsHeader) <= kAlignment, "the header's layout is the file format");

inline std::string rank_weights_file(int rank) { return "weights.rank" + std::to_string(rank) + ".bin"; }

inline std::string layer_tensor(int64_t layer, const char* name) {
    return "blk." + std::to_string(layer) + "." + name;
}

}  // namespace lamina::engine_format
