// RMSNorm kernel benchmark on the GPU: fused (the plugin), fused residual-add, and the unfused
// composition (square, mean, +eps, sqrt, divide, *w as separate kernels), fp16, [tokens x 4096].
// Reports effective GB/s: the minimum bytes the op must move (read x, write y; the fused-add form also
// reads and writes the residual) over the time per launch, and that as % of the copy ceiling if given.
//
// Timing: the launches are captured in a CUDA graph (as the decode step runs them) and the graph is
// replayed; each launch of a graph works on its own set of buffers, and the sets together are larger
// than the 50 MB L2, so every launch reads its input from HBM ("cold"). A second column reuses one
// set ("warm": the input was just written, as inside the model, and may be served from L2).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"

using namespace lamina;

namespace {

constexpr size_t kColdBytes = 160u << 20;  // buffer sets cycled through: over 3x the H100's L2
constexpr int kMaxSets = 64;
constexpr int kMinLaunches = 32;  // launches per graph

// Seconds per launch of op(set) over `sets` buffer sets, captured in a graph and replayed.
double seconds_per_launch(Backend& be, int sets, const std::function<void(int)>& op) {
    static int64_t key = 1 << 20;
    const int launches = std::max(kMinLaunches, sets);
    be.graph_begin();
    for (int i = 0; i < launches; ++i) op(i % sets);
    be.graph_end(&be, ++key);
    for (int i = 0; i < 3; ++i) be.graph_replay(&be, key);
    std::vector<double> times;
    constexpr int kReplays = 10;
    for (int r = 0; r < 9; ++r) {
        be.synchronize();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < kReplays; ++i) be.graph_replay(&be, key);
        be.synchronize();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / (kReplays * launches));
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

struct BufferSet {
    void *x, *res, *y;
};

}  // namespace

// Usage: lamina_bench_rmsnorm [COPY_GBPS [TOKENS ...]] (default tokens 1 16 512 4096).
int main(int argc, char** argv) {
    const double copy_gbps = argc > 1 ? std::atof(argv[1]) : 0.0;
    std::vector<int64_t> token_counts;
    for (int i = 2; i < argc; ++i) {
        char* end = nullptr;
        const long long t = std::strtoll(argv[i], &end, 10);
        if (*end != '\0' || t < 1 || t > (1 << 20)) {
            std::fprintf(stderr, "lamina_bench_rmsnorm: token count '%s' is not an integer in 1..1048576\n", argv[i]);
            return 2;
        }
        token_counts.push_back(t);
    }
    if (token_counts.empty()) token_counts = {1, 16, 512, 4096};
    auto be = make_cuda_backend(DType::F16);
    const int64_t cols = 4096;
    auto pct = [&](double gbps) { return copy_gbps > 0 ? std::to_string(static_cast<int>(100 * gbps / copy_gbps)) + "%" : std::string("-"); };
    std::printf("| tokens | fused GB/s cold | %% of copy | fused GB/s warm | fused+residual cold | %% of copy | unfused cold | "
                "same-size copy cold | fused %% of same-size copy |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int64_t tokens : token_counts) {
        const size_t n = static_cast<size_t>(tokens * cols);
        const int sets = static_cast<int>(std::clamp<size_t>(kColdBytes / (3 * n * 2) + 1, 2, kMaxSets));
        std::vector<uint16_t> host(n);
        std::mt19937 rng(1);
        std::normal_distribution<float> d;
        for (auto& h : host) h = f32_to_f16(d(rng));
        std::vector<float> w(cols, 1.0f);
        std::vector<BufferSet> bufs(static_cast<size_t>(sets));
        for (auto& b : bufs) {
            b = {be->alloc(n * 2), be->alloc(n * 2), be->alloc(n * 2)};
            be->to_device(b.x, host.data(), n * 2);
            be->to_device(b.res, host.data(), n * 2);
        }
        void* wd = be->alloc(cols * 4);
        be->to_device(wd, w.data(), cols * 4);
        const TensorView wv = make_view(wd, DType::F32, 1, cols);
        auto view = [&](void* p) { return make_view(p, DType::F16, tokens, cols); };
        auto norm = [&](int i) { be->rms_norm(view(bufs[i].x), wv, 1e-5f, view(bufs[i].y)); };
        const double bytes = 2.0 * n * 2;  // read x, write y
        const double fused = bytes / seconds_per_launch(*be, sets, norm) / 1e9;
        const double warm = bytes / seconds_per_launch(*be, 1, norm) / 1e9;
        const double fused_add = 2 * bytes / seconds_per_launch(*be, sets, [&](int i) {
            be->rms_norm_fused_add(view(bufs[i].res), view(bufs[i].x), wv, 1e-5f, view(bufs[i].y));
        }) / 1e9;
        const double unfused = bytes / seconds_per_launch(*be, sets, [&](int i) {
            be->rms_norm_unfused(view(bufs[i].x), wv, 1e-5f, view(bufs[i].y));
        }) / 1e9;
        // The same bytes moved by a device-to-device copy, timed the same way: the ceiling at this size,
        // where launch and ramp-up latency dominate small tensors.
        const double copy_same = bytes / seconds_per_launch(*be, sets, [&](int i) { be->copy_device(bufs[i].y, bufs[i].x, n * 2); }) / 1e9;
        std::printf("| %lld | %.0f | %s | %.0f | %.0f | %s | %.0f | %.0f | %d%% |\n", static_cast<long long>(tokens), fused,
                    pct(fused).c_str(), warm, fused_add, pct(fused_add).c_str(), unfused, copy_same,
                    static_cast<int>(100 * fused / copy_same));
        for (auto& b : bufs)
            for (void* p : {b.x, b.res, b.y}) be->free(p);
        be->free(wd);
    }
    return 0;
}
