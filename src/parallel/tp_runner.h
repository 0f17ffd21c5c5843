// Tensor-parallel execution of one engine: tp_size rank runners (a ModelRunner on the rank's shard, with
// its own backend and communicator), each driven by its own thread. A step runs on every rank at once;
// the ranks meet in all-reduces after the embedding, each attention output projection and each MLP
// down projection, and in an all-gather of the vocabulary-split logits; rank 0's result comes back.
//
// make_step_runner (runtime/step_runner.h) makes one for an engine with tp_size > 1, so the step loop and the
// commands drive a tensor-parallel engine exactly as a single-rank one.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/model_runner.h"

namespace lamina {

class TpRunner final : public StepRunner {
public:
    // Rank 0 runs on `rank0_backend` from the calling thread; ranks 1.. get backends of the same kind
    // (cpu: simulated ranks; cuda: GPU r), each made on the rank's own thread. Throws lamina::Error when
    // the backend cannot run tp_size ranks (e.g. fewer GPUs than ranks).
    TpRunner(const Engine& engine, Backend& rank0_backend, const ModelLimits& limits);
    ~TpRunner() override;
    TpRunner(const TpRunner&) = delete;
    TpRunner& operator=(const TpRunner&) = delete;

    // The StepRunner steps over all ranks (every rank gathers the whole logits and samples the same ids from the
    // same uniforms); the intermediates are rank 0's.
    void forward(const StepInput& step, float* logits) override;
    void forward_argmax(const StepInput& step, int32_t* next_ids) override;
    void forward_sample(const StepInput& step, std::span<const SampleRowParams> params,
                        std::span<const double> uniforms, int32_t* next_ids) override;
    void copy_slot(int64_t src, int64_t dst, int64_t n_positions) override;
    void set_on_intermediate(IntermediateHook hook) override { ranks_[0].runner->set_on_intermediate(std::move(hook)); }
    // Timing of rank 0's collectives (Communicator::set_timing) and their running total.
    void set_collective_timing(bool on) override;
    double collective_seconds() override;
    const ModelConfig& config() const override;
    const ModelLimits& limits() const override { return limits_; }

    int tp_size() const { return static_cast<int>(ranks_.size()); }
    ModelRunner& rank_runner(int r) { return *ranks_.at(static_cast<size_t>(r)).runner; }

private:
    struct Rank {
        Backend* backend = nullptr;
        std::unique_ptr<Backend> own_backend;  // ranks > 0
        std::unique_ptr<Communicator> comm;
        std::unique_ptr<ModelRunner> runner;
        std::vector<int32_t> ids;       // the step's token ids in the rank's vocabulary shard
        std::vector<float> logits;      // ranks > 0: their copy of the gathered logits, unused
        std::vector<int32_t> next_ids;  // ranks > 0: their copy of the argmax, unused
    };

    // Token ids as rank r's tok_embd rows: its own vocabulary range, or the zero row for other ranks'.
    void shard_ids(std::span<const int32_t> ids);
    // A step whose result is n_out token ids per rank (argmax or sampled): `step` runs on every rank with
    // its shard's ids; rank 0's ids go to next_ids (every rank computes the same ones).
    void step_to_ids(const StepInput& step, size_t n_out, int32_t* next_ids,
                     const std::function<void(ModelRunner&, const StepInput&, int32_t*)>& run);
    // Runs task(r) for every rank on the rank's thread (rank 0 on the caller's) and waits for all;
    // rethrows the first rank's exception.
    void run_on_ranks(const std::function<void(int)>& task);
    void worker(int rank);
    void shutdown();

    const Engine& engine_;
    ModelLimits limits_;
    std::vector<Rank> ranks_;

    std::vector<std::thread> threads_;  // ranks 1..tp_size-1
    std::mutex mutex_;
    std::condition_variable task_ready_, task_done_;
    const std::function<void(int)>* task_ = nullptr;
    uint64_t generation_ = 0;  // bumped for each task
    int pending_ = 0;          // worker ranks still running the current task
    bool stop_ = false;
    std::vector<std::exception_ptr> errors_;
};

}  // namespace lamina
