// Tensor-parallel execution of one engine: tp_size rank models (a LlamaModel on the rank's shard, with
// its own backend and communicator), each driven by its own thread. A step runs on every rank at once;
// the ranks meet in all-reduces after the embedding, each attention output projection and each MLP
// down projection, and in an all-gather of the vocabulary-split logits; rank 0's result comes back.
//
// LlamaModel owns one of these when its engine has tp_size > 1, so the generator, beam search and the
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

#include "model/llama.h"
#include "parallel/communicator.h"

namespace lamina {

class TpModel {
public:
    // Rank 0 runs on `rank0_backend` from the calling thread; ranks 1.. get backends of the same kind
    // (cpu: simulated ranks; cuda: GPU r), each made on the rank's own thread. Throws lamina::Error when
    // the backend cannot run tp_size ranks (e.g. fewer GPUs than ranks).
    TpModel(const Engine& engine, Backend& rank0_backend, const ModelLimits& limits);
    ~TpModel();
    TpModel(const TpModel&) = delete;
    TpModel& operator=(const TpModel&) = delete;

    using IntermediateHook = std::function<void(const std::string&, const TensorView&)>;
    // LlamaModel::forward / forward_argmax / forward_sample over all ranks (every rank gathers the whole
    // logits and samples the same ids from the same uniforms); `on_intermediate` sees rank 0's intermediates.
    void forward(std::span<const int32_t> ids, std::span<const int32_t> positions, std::span<const int32_t> slots,
                 std::span<const int32_t> logit_rows, float* logits, const IntermediateHook& on_intermediate);
    void forward_argmax(std::span<const int32_t> ids, std::span<const int32_t> positions,
                        std::span<const int32_t> slots, std::span<const int32_t> logit_rows, int32_t* next_ids,
                        const IntermediateHook& on_intermediate);
    void forward_sample(std::span<const int32_t> ids, std::span<const int32_t> positions,
                        std::span<const int32_t> slots, std::span<const int32_t> logit_rows,
                        std::span<const SampleRowParams> params, std::span<const double> uniforms, int32_t* next_ids,
                        const IntermediateHook& on_intermediate);
    void copy_slot(int64_t src, int64_t dst, int64_t n_positions);
    // Timing of rank 0's collectives (Communicator::set_timing) and their running total.
    void set_collective_timing(bool on);
    double collective_seconds();

    int tp_size() const { return static_cast<int>(ranks_.size()); }
    LlamaModel& rank_model(int r) { return *ranks_.at(static_cast<size_t>(r)).model; }

private:
    struct Rank {
        Backend* backend = nullptr;
        std::unique_ptr<Backend> own_backend;  // ranks > 0
        std::unique_ptr<Communicator> comm;
        std::unique_ptr<LlamaModel> model;
        std::vector<int32_t> ids;       // the step's token ids in the rank's vocabulary shard
        std::vector<float> logits;      // ranks > 0: their copy of the gathered logits, unused
        std::vector<int32_t> next_ids;  // ranks > 0: their copy of the argmax, unused
    };

    // Token ids as rank r's tok_embd rows: its own vocabulary range, or the zero row for other ranks'.
    void shard_ids(std::span<const int32_t> ids);
    // A step whose result is n_out token ids per rank (argmax or sampled): `step` runs on every rank with
    // its shard's ids; rank 0's ids go to next_ids (every rank computes the same ones).
    void step_to_ids(std::span<const int32_t> ids, size_t n_out, int32_t* next_ids,
                     const IntermediateHook& on_intermediate,
                     const std::function<void(LlamaModel&, std::span<const int32_t>, int32_t*)>& step);
    // Runs task(r) for every rank on the rank's thread (rank 0 on the caller's) and waits for all;
    // rethrows the first rank's exception.
    void run_on_ranks(const std::function<void(int)>& task);
    void worker(int rank);
    void shutdown();

    const Engine& engine_;
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
