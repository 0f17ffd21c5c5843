// A fixed pool of threads for the data-parallel loops of the CPU backend and the engine builder.
//
// parallel_for(n, grain, fn) cuts [0, n) into equal chunks of at least `grain` indices (up to
// kChunksPerThread per thread, so a slow thread leaves its share to the others); the calling thread and
// the workers claim chunks from one atomic counter, and the call returns once every chunk is done — not
// once every worker has turned up. A worker that another process keeps off its core simply claims
// nothing, so a shared machine slows a step by the cores it lost, not by a time slice per loop (what
// OpenMP's spinning barriers cost: two threads on a busy 2-core machine decoded 5-77x slower than one).
//
// Waiting: an idle worker, or the caller waiting for chunks other threads are still running, spins for up
// to kSpinMicroseconds (a decode step issues its next loop within microseconds) while that thread's recent
// waits were mostly that short, then sleeps on a futex; on a busy machine its waits grow long and it sleeps
// at once, leaving its core to the thread it waits for (bench/results/2026-12-07-cpu-threads/).
//
// Contract:
//   - fn(begin, end) or fn(begin, end, thread) runs on disjoint ranges that cover [0, n) exactly once;
//     `thread` in [0, size()) names the running thread (0 is the caller) for per-thread scratch.
//   - A pool of one thread has no workers: every loop runs inline, fn(0, n, 0).
//   - n <= 0 calls nothing; n < 2 * grain (a single chunk) runs inline as one range.
//   - A call from inside one of this pool's tasks runs inline on that thread (same `thread` index).
//   - Calls from two outside threads at once are serialized (a mutex); a pool is meant to have one
//     driving thread (each tensor-parallel rank owns its backend and so its pool).
//   - If fn throws, chunks not yet started are skipped, the call waits for the running ones and rethrows
//     the first exception in the caller.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace lamina {

// Physical cores this process may run on: distinct (package, core) pairs among the CPUs of its affinity
// mask, from /sys/devices/system/cpu/cpu*/topology; std::thread::hardware_concurrency() (at least 1)
// when the topology cannot be read.
int physical_core_count();

class ThreadPool {
public:
    static constexpr int kChunksPerThread = 8;
    static constexpr int kSpinMicroseconds = 50;

    // n_threads counts the caller: n_threads - 1 workers are started. 0: physical_core_count().
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    template <class Fn>
    void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
        using F = std::remove_reference_t<Fn>;
        static_assert(std::is_invocable_v<F&, int64_t, int64_t, int> || std::is_invocable_v<F&, int64_t, int64_t>,
                      "fn(begin, end) or fn(begin, end, thread)");
        Task task{&call<F>, const_cast<void*>(static_cast<const void*>(&fn))};
        run(n, grain, task);
    }

private:
    // fn, type-erased without allocating (the token loop allocates nothing).
    struct Task {
        void (*invoke)(void* fn, int64_t begin, int64_t end, int thread) = nullptr;
        void* fn = nullptr;
    };
    template <class F>
    static void call(void* fn, int64_t begin, int64_t end, int thread) {
        F& f = *static_cast<F*>(fn);
        if constexpr (std::is_invocable_v<F&, int64_t, int64_t, int>) f(begin, end, thread);
        else f(begin, end);
    }

    void run(int64_t n, int64_t grain, Task task);
    void worker_main(int thread);
    // Claims and runs chunks of the current loop until none is left; counts each into done_.
    void run_chunks(int thread);
    void wait_until_done(uint32_t n_chunks);

    const int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // one loop at a time

    // The current loop, written by the caller before it publishes remaining_ (release) and read by a
    // thread only after it has claimed a chunk (the loop cannot end, nor be replaced, before that chunk
    // is counted done).
    Task task_;
    int64_t n_ = 0, chunk_ = 0;
    uint32_t n_chunks_ = 0;
    std::exception_ptr error_;  // the first exception; written once, under error_taken_

    alignas(64) std::atomic<int64_t> remaining_{0};  // chunks not yet claimed; claims take n_chunks_ - remaining
    alignas(64) std::atomic<uint32_t> done_{0};       // chunks finished (or skipped after an exception)
    std::atomic<uint32_t> caller_sleeping_{0};        // the caller sleeps on done_: wake it at the last chunk
    std::atomic<bool> error_taken_{false};
    alignas(64) std::atomic<uint32_t> loop_seq_{0};   // bumped per loop: idle workers watch it (futex word)
    std::atomic<uint32_t> sleepers_{0};               // workers asleep on loop_seq_
    std::atomic<bool> stop_{false};
};

}  // namespace lamina
