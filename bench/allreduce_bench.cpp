// NCCL all-reduce latency between the GPUs of one machine, at the sizes a tensor-parallel LLaMA step
// reduces: [tokens, n_embd] fp16 after each attention output projection and each MLP down projection.
// Uses lamina's own communicators (one rank per GPU and thread, as TpRunner runs them). Prints µs per
// all-reduce and, for a decode step of `layers` layers (2 all-reduces each, plus one after the embedding),
// the all-reduce time per step.
//
//   lamina_bench_allreduce [n_gpus (default: all)] [n_embd (default 4096)] [layers (default 32)]
//
// Timing: per rank, 20 warm-up calls, then 200 calls issued back to back on the rank's stream and one
// synchronize, timed on the host (as TpRunner's uncaptured steps issue them); the slowest rank's time.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"
#include "parallel/communicator.h"

using namespace lamina;

int main(int argc, char** argv) {
    try {
        const int available = cuda_device_count();
        const int n = argc > 1 ? std::atoi(argv[1]) : available;
        const int64_t n_embd = argc > 2 ? std::atoll(argv[2]) : 4096;
        const int layers = argc > 3 ? std::atoi(argv[3]) : 32;
        if (n < 2 || n > available || n_embd <= 0 || layers <= 0) {
            std::fprintf(stderr,
                         "lamina_bench_allreduce: n_gpus must be 2..the GPUs here (%d; asked %d), n_embd and layers > 0\n",
                         available, n);
            return 2;
        }
        constexpr int kWarmup = 20, kCalls = 200;
        const std::vector<int64_t> token_counts = {1, 8, 32, 64, 512};
        std::vector<std::unique_ptr<Backend>> backends(static_cast<size_t>(n));
        std::vector<Backend*> raw(static_cast<size_t>(n));
        for (int r = 0; r < n; ++r) {
            backends[static_cast<size_t>(r)] = make_cuda_backend(DType::F16, r);
            raw[static_cast<size_t>(r)] = backends[static_cast<size_t>(r)].get();
        }
        auto comms = make_nccl_communicators(raw);
        std::printf("| tokens | bytes | us per all-reduce | all-reduce ms per step (%d layers) |\n|---|---|---|---|\n",
                    layers);
        for (int64_t tokens : token_counts) {
            const size_t bytes = static_cast<size_t>(tokens * n_embd) * 2;
            std::vector<double> seconds(static_cast<size_t>(n));
            std::vector<std::thread> threads;
            std::atomic<bool> failed{false};
            for (int r = 0; r < n; ++r) {
                threads.emplace_back([&, r] {
                    try {
                        Backend& be = *backends[static_cast<size_t>(r)];
                        if (cudaSetDevice(r) != cudaSuccess) throw Error("cudaSetDevice failed");
                        void* buf = be.alloc(bytes);
                        const TensorView x{buf, DType::F16, tokens, n_embd, n_embd};
                        Communicator& c = *comms[static_cast<size_t>(r)];
                        for (int i = 0; i < kWarmup; ++i) c.all_reduce_sum(x);
                        be.synchronize();
                        const auto t0 = std::chrono::steady_clock::now();
                        for (int i = 0; i < kCalls; ++i) c.all_reduce_sum(x);
                        be.synchronize();
                        seconds[static_cast<size_t>(r)] =
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kCalls;
                        be.free(buf);
                    } catch (const std::exception& e) {
                        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
                        failed = true;
                    }
                });
            }
            for (auto& t : threads) t.join();
            if (failed) return 1;
            const double s = *std::max_element(seconds.begin(), seconds.end());
            std::printf("| %lld | %zu | %.1f | %.3f |\n", static_cast<long long>(tokens), bytes, s * 1e6,
                        s * (2 * layers + 1) * 1e3);
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lamina_bench_allreduce: %s\n", e.what());
        return 1;
    }
}
