#include "parallel/tp_runner.h"

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

#ifdef LAMINA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace lamina {

namespace {

// A backend of the same kind as rank 0's for rank r (called on rank r's thread).
std::unique_ptr<Backend> make_rank_backend(const Backend& rank0, [[maybe_unused]] int rank, int tp_size) {
    if (const auto* cpu = dynamic_cast<const CpuBackend*>(&rank0)) {
        // Ranks share the cores rank 0 was given: ranks 1.. get an equal share each (rank 0 keeps its pool).
        return make_cpu_backend(std::max(1, cpu->threads() / tp_size), cpu->kv_cache_dtype());
    }
#ifdef LAMINA_HAS_CUDA
    if (rank0.name() == "cuda") {
        const int n_gpu = cuda_device_count();
        if (n_gpu < tp_size)
            throw Error("the engine has tp_size " + std::to_string(tp_size) + " (one GPU per rank) but " +
                        std::to_string(n_gpu) + " CUDA device(s) are visible");
        return make_cuda_backend(rank0.activation_dtype(), rank);  // on the rank's own thread
    }
#endif
    throw Error("the " + rank0.name() + " backend cannot run a tensor-parallel engine (tp_size " +
                std::to_string(tp_size) + ")");
}

}  // namespace

TpRunner::TpRunner(const Engine& engine, Backend& rank0_backend, const ModelLimits& limits)
    : engine_(engine), limits_(limits) {
    const int n = engine.tp_size();
    LAMINA_CHECK(n > 1);
    ranks_.resize(static_cast<size_t>(n));
    errors_.resize(static_cast<size_t>(n));
    ranks_[0].backend = &rank0_backend;
    for (int r = 1; r < n; ++r) threads_.emplace_back([this, r] { worker(r); });
    try {
        run_on_ranks([&](int r) {
            if (r == 0) return;
            ranks_[r].own_backend = make_rank_backend(rank0_backend, r, n);
            ranks_[r].backend = ranks_[r].own_backend.get();
        });
        std::vector<std::unique_ptr<Communicator>> comms;
        if (rank0_backend.name() == "cpu") {
            comms = make_cpu_communicators(n);
        } else {
#ifdef LAMINA_HAS_NCCL
            std::vector<Backend*> backends;
            for (const Rank& r : ranks_) backends.push_back(r.backend);
            comms = make_nccl_communicators(backends);
#else
            throw Error("tensor parallelism on " + rank0_backend.name() +
                        " needs NCCL (this lamina was built without it)");
#endif
        }
        for (int r = 0; r < n; ++r) ranks_[r].comm = std::move(comms[r]);
        run_on_ranks([&](int r) {
            ranks_[r].runner = std::make_unique<ModelRunner>(engine, *ranks_[r].backend, limits, ranks_[r].comm.get());
        });
    } catch (...) {
        shutdown();
        throw;
    }
}

TpRunner::~TpRunner() {
    shutdown();
}

void TpRunner::shutdown() {
    if (threads_.empty()) return;
    // Each rank's state goes on its own thread (CUDA frees belong to the rank's device).
    try {
        run_on_ranks([&](int r) {
            ranks_[r].runner.reset();
            ranks_[r].comm.reset();
            ranks_[r].own_backend.reset();
        });
    } catch (...) {  // teardown errors are not worth a second exception in flight
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    task_ready_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
}

void TpRunner::worker(int rank) {
    uint64_t seen = 0;
    for (;;) {
        std::unique_lock<std::mutex> lock(mutex_);
        task_ready_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        const std::function<void(int)>* task = task_;
        lock.unlock();
        try {
            (*task)(rank);
        } catch (...) {
            errors_[rank] = std::current_exception();
        }
        lock.lock();
        if (--pending_ == 0) task_done_.notify_one();
    }
}

void TpRunner::run_on_ranks(const std::function<void(int)>& task) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        task_ = &task;
        pending_ = static_cast<int>(threads_.size());
        ++generation_;
        std::fill(errors_.begin(), errors_.end(), nullptr);
    }
    task_ready_.notify_all();
    try {
        task(0);
    } catch (...) {
        errors_[0] = std::current_exception();
    }
    {
        std::unique_lock<std::mutex> lock(mutex_);
        task_done_.wait(lock, [&] { return pending_ == 0; });
        task_ = nullptr;
    }
    for (const std::exception_ptr& e : errors_)
        if (e) std::rethrow_exception(e);
}

void TpRunner::shard_ids(std::span<const int32_t> ids) {
    const TpSharding& s = engine_.sharding();
    for (int32_t id : ids) LAMINA_CHECK(id >= 0 && id < engine_.config().n_vocab, "token id " + std::to_string(id));
    for (int r = 0; r < tp_size(); ++r) {
        const int64_t first = engine_.rank(r).vocab_begin;
        std::vector<int32_t>& out = ranks_[r].ids;
        out.resize(ids.size());
        for (size_t t = 0; t < ids.size(); ++t) {
            const int64_t local = ids[t] - first;
            out[t] = static_cast<int32_t>(local >= 0 && local < s.n_vocab_shard ? local : s.zero_row());
        }
    }
}

void TpRunner::forward(const StepInput& step, float* logits) {
    shard_ids(step.ids);
    const size_t n_out = step.logit_rows.size() * static_cast<size_t>(engine_.config().n_vocab);
    for (int r = 1; r < tp_size(); ++r) ranks_[r].logits.resize(n_out);
    run_on_ranks([&](int r) {
        StepInput rank_step = step;
        rank_step.ids = ranks_[r].ids;
        ranks_[r].runner->forward(rank_step, r == 0 ? logits : ranks_[r].logits.data());
    });
}

void TpRunner::forward_argmax(const StepInput& step, int32_t* next_ids) {
    step_to_ids(step, step.logit_rows.size(), next_ids,
                [&](ModelRunner& m, const StepInput& rank_step, int32_t* out) { m.forward_argmax(rank_step, out); });
}

void TpRunner::forward_sample(const StepInput& step, std::span<const SampleRowParams> params,
                              std::span<const double> uniforms, int32_t* next_ids) {
    step_to_ids(step, step.logit_rows.size(), next_ids, [&](ModelRunner& m, const StepInput& rank_step, int32_t* out) {
        m.forward_sample(rank_step, params, uniforms, out);
    });
}

void TpRunner::step_to_ids(const StepInput& step, size_t n_out, int32_t* next_ids,
                           const std::function<void(ModelRunner&, const StepInput&, int32_t*)>& run) {
    shard_ids(step.ids);
    for (int r = 1; r < tp_size(); ++r) ranks_[r].next_ids.resize(n_out);
    run_on_ranks([&](int r) {
        StepInput rank_step = step;
        rank_step.ids = ranks_[r].ids;
        run(*ranks_[r].runner, rank_step, r == 0 ? next_ids : ranks_[r].next_ids.data());
    });
}

void TpRunner::copy_slot(int64_t src, int64_t dst, int64_t n_positions) {
    run_on_ranks([&](int r) { ranks_[r].runner->copy_slot(src, dst, n_positions); });
}

void TpRunner::set_collective_timing(bool on) {
    ranks_[0].comm->set_timing(on);  // only rank 0's time is read (between steps: its thread is this one)
}

double TpRunner::collective_seconds() {
    return ranks_[0].comm->seconds();  // rank 0 runs on this thread
}

const ModelConfig& TpRunner::config() const { return engine_.config(); }

}  // namespace lamina
