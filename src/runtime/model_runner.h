// One rank's runner: the forward pass (model/llama.h) over weights shared with every other runner of the process
// (runtime/shared_weights.h), its own KV pool (runtime/kv_pool.h) and the activation buffers of one step of up
// to max_step_tokens tokens, all allocated once from the limits. Steps are uploaded in one copy and replayed from
// captured graphs on backends that have them. With a communicator it is one rank of a tensor-parallel engine
// (its shard of the weights; parallel/tp_runner.h drives the ranks).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>

#include "backend/backend.h"
#include "model/llama.h"
#include "runtime/engine.h"
#include "runtime/kv_pool.h"
#include "runtime/shared_weights.h"
#include "runtime/step_runner.h"

namespace lamina {

class Communicator;

class ModelRunner final : public StepRunner {
public:
    // comm: this runner is rank comm->rank() of the engine's tensor-parallel group; without one the engine
    // must have tp_size 1.
    ModelRunner(const Engine& engine, Backend& backend, const ModelLimits& limits, Communicator* comm = nullptr);
    ~ModelRunner() override;
    ModelRunner(const ModelRunner&) = delete;
    ModelRunner& operator=(const ModelRunner&) = delete;

    void forward(const StepInput& step, float* logits) override;
    void forward_argmax(const StepInput& step, int32_t* next_ids) override;
    void forward_sample(const StepInput& step, std::span<const SampleRowParams> params,
                        std::span<const double> uniforms, int32_t* next_ids) override;
    void copy_slot(int64_t src, int64_t dst, int64_t n_positions) override { kv_.copy_slot(src, dst, n_positions); }
    void set_on_intermediate(IntermediateHook hook) override { pass_.on_intermediate = std::move(hook); }
    const ModelConfig& config() const override { return config_; }
    const ModelLimits& limits() const override { return limits_; }

    Backend& backend() { return backend_; }
    KvPool& kv_pool() { return kv_; }

private:
    // Uploads the step's token metadata; returns the StepTokens view of it.
    StepTokens upload_step(const StepInput& step);
    // Runs the forward pass, from a captured graph on a graph backend (decode steps; prefill shapes seen before),
    // then argmax into next_ids_ if asked.
    void run_step(const StepTokens& tok, int64_t n_logits, bool argmax);
    void step_ops(const StepTokens& tok, int64_t n_logits, bool argmax);
    // Copies the first n ids of next_ids_ (the step's argmax or sampled ids) to the host, once they are there.
    void read_next_ids(int32_t* next_ids, size_t n);
    TensorView activation(int64_t cols, int64_t rows);

    ModelConfig config_;  // the rank's shapes (parallel/sharding.h) when comm is set
    Backend& backend_;
    ModelLimits limits_;
    std::shared_ptr<const SharedWeights> weights_;
    KvPool kv_;
    std::vector<void*> buffers_;
    TensorView rope_cos_sin_;
    LlamaBuffers buf_;
    LlamaPass pass_;
    // A step's token metadata, packed (upload_step); logit_rows_ points at this step's rows inside it.
    int32_t* meta_ = nullptr;
    int32_t* logit_rows_ = nullptr;
    int32_t* next_ids_ = nullptr;  // argmax (or sampled) results
    // Page-locked host buffers: step metadata staged for its copy (rewritten once upload_fence_ is passed),
    // and the argmax ids read back.
    int32_t* upload_ = nullptr;
    uint64_t upload_fence_ = 0;
    int32_t* readback_ = nullptr;
    std::map<int64_t, int> prefill_shapes_seen_;  // run_step's graph keys of prefill steps, and how often
};

}  // namespace lamina
