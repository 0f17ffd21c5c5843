#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#ifdef __linux__
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace lamina {

namespace {

// The pool whose task this thread is running (workers: always their own pool), so that a nested
// parallel_for runs inline instead of waiting for threads that are busy running its parent.
thread_local const ThreadPool* t_pool = nullptr;
thread_local int t_thread = 0;

// Sets t_pool / t_thread for a scope and restores them after (the caller may be another pool's task).
class CurrentPoolScope {
public:
    CurrentPoolScope(const ThreadPool* pool, int thread) : saved_pool_(t_pool), saved_thread_(t_thread) {
        t_pool = pool;
        t_thread = thread;
    }
    ~CurrentPoolScope() {
        t_pool = saved_pool_;
        t_thread = saved_thread_;
    }
    CurrentPoolScope(const CurrentPoolScope&) = delete;
    CurrentPoolScope& operator=(const CurrentPoolScope&) = delete;

private:
    const ThreadPool* saved_pool_;
    int saved_thread_;
};

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
              "futex words are plain 32-bit atomics");

// Sleeps while `word` holds `expected` (returns at once if it does not, and may return spuriously).
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) {
#ifdef __linux__
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
    word.wait(expected, std::memory_order_seq_cst);
#endif
}

void futex_wake(std::atomic<uint32_t>& word, int n) {
#ifdef __linux__
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
#else
    if (n == 1) word.notify_one();
    else word.notify_all();
#endif
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// How a thread waits, for the next loop (a worker) or for the last chunks (the caller): it spins for up to
// kSpinMicroseconds while its recent waits have mostly been that short (an idle machine: a decode step
// issues its next loop within microseconds), and sleeps at once while more than kLongWaitShare of them
// have been longer (a busy machine: what it waits for was preempted, and spinning only burns the time
// slice that the preempted thread needs). Measured on a 2-core machine beside `yes > /dev/null`: always
// spinning decoded at 50-53% of the idle rate, never spinning lost 14% idle, this keeps both.
class WaitPolicy {
public:
    static constexpr float kLongWaitShare = 0.1f;

    // Returns once done(); sleep_once() blocks until woken (it may return early and is called again).
    template <class Done, class SleepOnce>
    void wait(Done done, SleepOnce sleep_once) {
        using Clock = std::chrono::steady_clock;
        const auto spin_end = Clock::now() + std::chrono::microseconds(ThreadPool::kSpinMicroseconds);
        bool ready = done();
        if (!ready && long_share_ < kLongWaitShare) {
            while (!ready && Clock::now() < spin_end) {
                for (int i = 0; i < 32 && !(ready = done()); ++i) cpu_relax();  // read the clock only now and then
            }
        }
        while (!ready) {
            sleep_once();
            ready = done();
        }
        const float long_wait = Clock::now() > spin_end ? 1.0f : 0.0f;
        long_share_ += (long_wait - long_share_) / 16;  // a moving average over the last ~16 waits
    }

private:
    float long_share_ = 0;  // of this thread's recent waits, the share longer than the spin
};

thread_local WaitPolicy t_wait;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

#ifdef __linux__
bool read_long(const std::string& path, long& value) {
    std::ifstream in(path);
    return static_cast<bool>(in >> value);
}
#endif

}  // namespace

int physical_core_count() {
    const int fallback = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#ifdef __linux__
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return fallback;
    std::set<std::pair<long, long>> cores;  // (physical_package_id, core_id)
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
        long package = 0, core = 0;
        // No topology (some containers hide /sys): every allowed CPU counts as a core.
        if (!read_long(dir + "physical_package_id", package) || !read_long(dir + "core_id", core))
            return std::max(1, CPU_COUNT(&allowed));
        cores.emplace(package, core);
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
#endif
    return fallback;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : physical_core_count()) {
    workers_.reserve(static_cast<size_t>(n_threads_ - 1));
    for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
    stop_.store(true, std::memory_order_seq_cst);
    loop_seq_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(loop_seq_, INT_MAX);
    for (std::thread& w : workers_) w.join();
}

void ThreadPool::run(int64_t n, int64_t grain, Task task) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    if (t_pool == this) {  // nested inside one of our tasks: the other threads may all be busy with its siblings
        task.invoke(task.fn, 0, n, t_thread);
        return;
    }
    // Up to kChunksPerThread chunks per thread, of at least `grain` indices each; a multiple of the thread
    // count, all of one size but the last, so that the threads' shares come out even when all of them run.
    int64_t chunks_wanted = std::min({int64_t{n_threads_} * kChunksPerThread, n / grain, int64_t{1} << 30});
    if (chunks_wanted > n_threads_) chunks_wanted -= chunks_wanted % n_threads_;
    if (n_threads_ == 1 || chunks_wanted <= 1) {
        CurrentPoolScope scope(this, 0);
        task.invoke(task.fn, 0, n, 0);
        return;
    }
    std::lock_guard<std::mutex> lock(call_mutex_);
    const int64_t chunk = ceil_div(n, chunks_wanted);
    const auto n_chunks = static_cast<uint32_t>(ceil_div(n, chunk));

    task_ = task;
    n_ = n;
    chunk_ = chunk;
    n_chunks_ = n_chunks;
    error_ = nullptr;
    error_taken_.store(false, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    caller_sleeping_.store(0, std::memory_order_relaxed);
    remaining_.store(n_chunks, std::memory_order_release);  // publishes the fields above to claimers
    loop_seq_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake(loop_seq_, n_threads_ - 1);

    {
        CurrentPoolScope scope(this, 0);
        run_chunks(0);
    }
    wait_until_done(n_chunks);
    if (error_) {
        std::exception_ptr e = std::exchange(error_, nullptr);
        std::rethrow_exception(e);
    }
}

void ThreadPool::run_chunks(int thread) {
    for (;;) {
        const int64_t unclaimed = remaining_.fetch_sub(1, std::memory_order_acq_rel);
        if (unclaimed <= 0) return;
        // Claimed: the loop's fields stay valid until this chunk is counted done.
        const uint32_t n_chunks = n_chunks_;
        const int64_t begin = static_cast<int64_t>(n_chunks - static_cast<uint32_t>(unclaimed)) * chunk_;
        const int64_t end = std::min(n_, begin + chunk_);
        uint32_t finished = 1;
        try {
            task_.invoke(task_.fn, begin, end, thread);
        } catch (...) {
            if (!error_taken_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
            const int64_t skipped = remaining_.exchange(0, std::memory_order_acq_rel);
            if (skipped > 0) finished += static_cast<uint32_t>(skipped);
        }
        // Past this add the caller may return and start the next loop: touch no field of this one after it.
        const uint32_t done = done_.fetch_add(finished, std::memory_order_seq_cst) + finished;
        if (done == n_chunks && caller_sleeping_.load(std::memory_order_seq_cst) != 0) futex_wake(done_, 1);
    }
}

void ThreadPool::wait_until_done(uint32_t n_chunks) {
    t_wait.wait([&] { return done_.load(std::memory_order_acquire) == n_chunks; },
                [&] {
                    caller_sleeping_.store(1, std::memory_order_seq_cst);
                    const uint32_t done = done_.load(std::memory_order_seq_cst);
                    if (done != n_chunks) futex_wait(done_, done);
                });
}

void ThreadPool::worker_main(int thread) {
    t_pool = this;
    t_thread = thread;
    uint32_t seen = 0;  // loop_seq_'s value at construction: no loop can have been missed
    for (;;) {
        t_wait.wait([&] { return loop_seq_.load(std::memory_order_acquire) != seen; },
                    [&] {
                        sleepers_.fetch_add(1, std::memory_order_seq_cst);
                        if (loop_seq_.load(std::memory_order_seq_cst) == seen) futex_wait(loop_seq_, seen);
                        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
                    });
        seen = loop_seq_.load(std::memory_order_acquire);
        if (stop_.load(std::memory_order_acquire)) return;
        run_chunks(thread);
    }
}

}  // namespace lamina
