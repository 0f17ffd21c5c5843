// `lamina build`: turns a ModelSpec into an engine directory (build/engine_format.h): stores every matrix
// and embedding in the format BuildOptions::weights chooses (norms and biases stay f32), fuses q/k/v and
// gate/up, cuts each rank's share when tp_size > 1, aligns, writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "core/dtype.h"
#include "model/model_spec.h"

namespace lamina {

// How a build stores the matrices and embeddings.
enum class WeightsMode {
    Float,     // all at BuildOptions::dtype
    Keep,      // each as the checkpoint stores it (a GGUF's block types, a safetensors file's float type); a
               // fused tensor whose parts the checkpoint stores differently (Q4_K_M's q and v) at `dtype`
    Quantize,  // matrices quantized to BuildOptions::quant at build, embeddings and the head to q8_0
};

struct BuildOptions {
    DType dtype = DType::F16;  // TensorRT-LLM's build.py default
    WeightsMode weights = WeightsMode::Float;
    DType quant = DType::Q8_0;  // a block type, for WeightsMode::Quantize
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

// The --weights value that makes this choice: "float", "keep" or the quantized type's name ("q4_k").
std::string weights_mode_name(const BuildOptions& opts);

// Sets opts.weights (and opts.quant) from such a name; lamina::Error for an unknown one.
void set_weights_mode(BuildOptions& opts, const std::string& name);

// What a build wrote: bytes per engine dtype (every rank's files together).
struct BuildSummary {
    std::map<DType, uint64_t> bytes_by_dtype;
    std::string text() const;  // "q4_1 75.2 MB, q8_0 29.9 MB, float32 0.1 MB"
};

// Writes the engine directory; calls `progress` after each checkpoint tensor is converted and written.
BuildSummary build_engine(const ModelSpec& spec, const BuildOptions& opts, const std::filesystem::path& out_dir,
                          const BuildProgressFn& progress = {});

// A spec of a named shape ("tiny", "llama-7b") whose weights are generated from `seed` when read:
// uniform with std 0.02 for matrices, 1 for norm weights. Deterministic across runs, machines and thread
// counts; n_threads generate them (0: one per physical core).
ModelSpec random_model_spec(const std::string& preset, uint64_t seed, int n_threads = 0);

}  // namespace lamina
