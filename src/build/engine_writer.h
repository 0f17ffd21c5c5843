// `lamina build`: turns a ModelSpec into an engine directory (build/engine_format.h): converts every
// weight to the engine dtype (norms and biases stay f32), fuses q/k/v and gate/up, cuts each rank's
// share when tp_size > 1, aligns, writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
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
    int threads = 0;             // threads converting weights, the caller's included (0: one per physical core)
};

// How far a build is: checkpoint tensors converted and engine bytes written so far, of the totals.
struct BuildProgress {
    int64_t tensors_done = 0, tensors_total = 0;
    uint64_t bytes_done = 0, bytes_total = 0;
};
using BuildProgressFn = std::function<void(const BuildProgress&)>;

// Writes the engine directory; calls `progress` after each checkpoint tensor is converted and written.
void build_engine(const ModelSpec& spec, const BuildOptions& opts, const std::filesystem::path& out_dir,
                  const BuildProgressFn& progress = {});

// A spec of a named shape ("tiny", "llama-7b") whose weights are generated from `seed` when read:
// uniform with std 0.02 for matrices, 1 for norm weights. Deterministic across runs, machines and thread
// counts; n_threads generate them (0: one per physical core).
ModelSpec random_model_spec(const std::string& preset, uint64_t seed, int n_threads = 0);

}  // namespace lamina
