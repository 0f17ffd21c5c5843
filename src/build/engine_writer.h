// `lamina build`: turns a ModelSpec into an engine directory (build/engine_format.h): converts every
// weight to the engine dtype (norms and biases stay f32), fuses q/k/v and gate/up, cuts each rank's
// share when tp_size > 1, aligns, writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/dtype.h"
#include "model/model_spec.h"

namespace lamina {

struct BuildOptions {
    DType dtype = DType::F16;  // TensorRT-LLM's build.py default
    int64_t max_batch_size = 8;
    int64_t max_input_len = 2048;
    int64_t max_output_len = 512;
    bool rmsnorm_plugin = true;  // fused RMSNorm kernels (off: the unfused composition, for ablation)
    int64_t tp_size = 1;         // tensor-parallel ranks: one weights file per rank (parallel/sharding.h)
};

void build_engine(const ModelSpec& spec, const BuildOptions& opts, const std::filesystem::path& out_dir);

// A spec of a named shape ("tiny", "llama-7b") whose weights are generated from `seed` when read:
// uniform with std 0.02 for matrices, 1 for norm weights. Deterministic across runs and machines.
ModelSpec random_model_spec(const std::string& preset, uint64_t seed);

}  // namespace lamina
