// RMSNorm kernel benchmark on the GPU: fused (the plugin), fused residual-add, and the unfused
// composition (square, mean, +eps, sqrt, divide, *w as separate kernels), fp16, [tokens x 4096].
// Reports effective GB/s: the minimum bytes the op must move (read x, write y; the fused-add form also
// reads and writes the residual) over the median time, and that as % of --copy_GBps if given.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"

using namespace lamina;

namespace {
double median_seconds(Backend& be, const std::function<void()>& op) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 5; ++i) op();
    std::vector<double> times;
    constexpr int kBatch = 20;  // launches per timing, so launch overhead is amortized as in a graph
    for (int r = 0; r < 15; ++r) {
        be.synchronize();
        cudaEventRecord(a, nullptr);
        for (int i = 0; i < kBatch; ++i) op();
        be.synchronize();
        cudaEventRecord(b, nullptr);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        times.push_back(ms / 1e3 / kBatch);
    }
    std::sort(times.begin(), times.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return times[times.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
    const double copy_gbps = argc > 1 ? std::atof(argv[1]) : 0.0;
    auto be = make_cuda_backend(DType::F16);
    const int64_t cols = 4096;
    std::printf("| tokens | fused GB/s | fused+residual GB/s | unfused GB/s | fused %% of copy | same-size copy GB/s | fused %% of same-size copy |\n|---|---|---|---|---|---|---|\n");
    for (int64_t tokens : {1, 16, 512, 4096}) {
        const size_t n = static_cast<size_t>(tokens * cols);
        std::vector<uint16_t> host(n);
        std::mt19937 rng(1);
        std::normal_distribution<float> d;
        for (auto& h : host) h = f32_to_f16(d(rng));
        std::vector<float> w(cols, 1.0f);
        void* x = be->alloc(n * 2);
        void* res = be->alloc(n * 2);
        void* y = be->alloc(n * 2);
        void* wd = be->alloc(cols * 4);
        be->to_device(x, host.data(), n * 2);
        be->to_device(res, host.data(), n * 2);
        be->to_device(wd, w.data(), cols * 4);
        const TensorView xv = make_view(x, DType::F16, tokens, cols), rv = make_view(res, DType::F16, tokens, cols);
        const TensorView yv = make_view(y, DType::F16, tokens, cols), wv = make_view(wd, DType::F32, 1, cols);
        const double bytes = 2.0 * n * 2;  // read x, write y
        const double fused = bytes / median_seconds(*be, [&] { be->rms_norm(xv, wv, 1e-5f, yv); }) / 1e9;
        const double fused_add = 2 * bytes / median_seconds(*be, [&] { be->rms_norm_fused_add(rv, xv, wv, 1e-5f, yv); }) / 1e9;
        const double unfused = bytes / median_seconds(*be, [&] { be->rms_norm_unfused(xv, wv, 1e-5f, yv); }) / 1e9;
        // The same bytes moved by a device-to-device copy, timed the same way: the ceiling at this size,
        // where launch and ramp-up latency dominate small tensors.
        const double copy_same = bytes / median_seconds(*be, [&] { be->copy_device(y, x, n * 2); }) / 1e9;
        std::printf("| %lld | %.0f | %.0f | %.0f | %s | %.0f | %d%% |\n", static_cast<long long>(tokens), fused, fused_add,
                    unfused, copy_gbps > 0 ? (std::to_string(static_cast<int>(100 * fused / copy_gbps)) + "%").c_str() : "-",
                    copy_same, static_cast<int>(100 * fused / copy_same));
        for (void* p : {x, res, y, wd}) be->free(p);
    }
    return 0;
}
