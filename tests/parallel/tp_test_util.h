// Helpers for the tensor-parallel tests: a random model spec of any shape (biases, tied embeddings,
// GQA that splits or replicates over the ranks, a vocabulary that does or does not divide evenly), and
// engines built from a spec at several tp sizes.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../test_util.h"
#include "model/weight_names.h"

namespace lamina::test {

// Weights ~ N(0, 0.1) for matrices (large enough for logits far from flat), 1 + N(0, 0.1) for norms,
// N(0, 0.1) for biases; each tensor from its own seed.
inline ModelSpec random_spec(const ModelConfig& c, uint32_t seed) {
    ModelSpec spec;
    spec.config = c;
    spec.source = "test:random";
    uint32_t tensor_seed = seed;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float offset) {
        WeightSource w;
        w.shape = shape;
        w.origin = name;
        const uint32_t s = tensor_seed++;
        const size_t n = static_cast<size_t>(w.n_elements());
        w.read = [n, s, offset](float* dst) {
            const auto v = random_vec(n, s, 0.1f);
            for (size_t i = 0; i < n; ++i) dst[i] = offset + v[i];
        };
        spec.weights.emplace(name, std::move(w));
    };
    for (const CheckpointName& n : checkpoint_names(c)) add(n.hf, n.shape, n.role == WeightRole::Norm ? 1.0f : 0.0f);
    return spec;
}

// 8 query heads over 2 KV heads (split at tp 2, replicated at tp 4), n_ff 96, and a vocabulary of 390
// (195 per rank at tp 2; 98 per rank at tp 4, the last shard padded by 2), biases everywhere, tied
// embeddings.
inline ModelConfig odd_config() {
    ModelConfig c;
    c.n_vocab = 390;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 8;
    c.n_head_kv = 2;
    c.head_dim = 8;
    c.n_ff = 96;
    c.n_ctx = 128;
    c.rope_theta = 10000.0f;
    c.rms_eps = 1e-5f;
    c.block.tied_embeddings = true;
    c.block.attn_bias = true;
    c.block.mlp_bias = true;
    return c;
}

inline BuildOptions tp_build_options(int64_t tp_size, DType dtype = DType::F32) {
    BuildOptions o;
    o.dtype = dtype;
    o.max_batch_size = 2;
    o.max_input_len = 24;
    o.max_output_len = 16;
    o.tp_size = tp_size;
    return o;
}

// One model built at tp 1 and tp N from the same spec.
class TpEngines {
public:
    TpEngines(const ModelSpec& spec, int64_t tp_size, DType dtype = DType::F32) {
        build_engine(spec, tp_build_options(1, dtype), one_dir.path());
        build_engine(spec, tp_build_options(tp_size, dtype), tp_dir.path());
        one = std::make_unique<Engine>(one_dir.path());
        tp = std::make_unique<Engine>(tp_dir.path());
    }
    TempDir one_dir, tp_dir;
    std::unique_ptr<Engine> one, tp;
};

}  // namespace lamina::test
