// Tensor-parallel collectives for ranks simulated by threads of one process: each collective is two
// barriers around reads of the other ranks' buffers (published as views in shared state).
//
//   all_reduce_sum:  publish x | barrier | sum all x in rank order 0..N-1 into a private buffer |
//                    barrier (nobody reads x any more) | copy the sum into x
//   all_gather_cols: publish part | barrier | copy every part into out | barrier
//
// Every rank adds the same values in the same order, so the results are bit-identical across ranks.
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "parallel/communicator.h"

namespace lamina {

namespace {

struct CpuGroup {
    explicit CpuGroup(int n) : size(n), sync(n), views(static_cast<size_t>(n)) {}
    int size;
    std::barrier<> sync;
    std::vector<TensorView> views;  // views[r]: what rank r published for the current collective
};

class CpuCommunicator final : public Communicator {
public:
    CpuCommunicator(std::shared_ptr<CpuGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return group_->size; }

    void all_reduce_sum(TensorView x) override {
        LAMINA_CHECK(x.dtype == DType::F32 && x.row_stride == x.cols, "cpu all_reduce_sum takes contiguous f32");
        const Timed timed(*this);
        const size_t n = static_cast<size_t>(x.n_elements());
        publish(x);
        for (int r = 0; r < size(); ++r)
            LAMINA_CHECK(group_->views[r].n_elements() == x.n_elements(), "all_reduce_sum shapes differ across ranks");
        sum_.assign(n, 0.0f);
        for (int r = 0; r < size(); ++r) {
            const float* src = static_cast<const float*>(group_->views[r].data);
            for (size_t i = 0; i < n; ++i) sum_[i] += src[i];
        }
        group_->sync.arrive_and_wait();
        std::memcpy(x.data, sum_.data(), n * sizeof(float));
    }

    void all_gather_cols(const TensorView& part, TensorView out) override {
        LAMINA_CHECK(part.dtype == DType::F32 && out.dtype == DType::F32 && part.row_stride == part.cols &&
                     out.row_stride == out.cols && part.rows == out.rows && out.cols <= size() * part.cols);
        const Timed timed(*this);
        publish(part);
        for (int r = 0; r < size(); ++r) {
            const TensorView& p = group_->views[r];
            LAMINA_CHECK(p.rows == part.rows && p.cols == part.cols, "all_gather_cols shapes differ across ranks");
            const int64_t first = r * p.cols, width = std::min(p.cols, out.cols - first);
            for (int64_t row = 0; row < out.rows && width > 0; ++row)
                std::memcpy(out.row<float>(row) + first, p.row<float>(row), static_cast<size_t>(width) * sizeof(float));
        }
        group_->sync.arrive_and_wait();
    }

private:
    // Adds a collective's wall time to seconds_ when timing is on.
    struct Timed {
        explicit Timed(CpuCommunicator& c) : c(c), t0(std::chrono::steady_clock::now()) {}
        ~Timed() {
            if (c.timing_) c.seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        CpuCommunicator& c;
        std::chrono::steady_clock::time_point t0;
    };

    // Makes v visible to the other ranks and waits until every rank has published its own.
    void publish(const TensorView& v) {
        group_->views[rank_] = v;
        group_->sync.arrive_and_wait();
    }

    std::shared_ptr<CpuGroup> group_;
    int rank_;
    std::vector<float> sum_;  // grows to the largest reduced tensor, then is reused
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_cpu_communicators(int n) {
    LAMINA_CHECK(n >= 1);
    auto group = std::make_shared<CpuGroup>(n);
    std::vector<std::unique_ptr<Communicator>> comms;
    for (int r = 0; r < n; ++r) comms.push_back(std::make_unique<CpuCommunicator>(group, r));
    return comms;
}

}  // namespace lamina
