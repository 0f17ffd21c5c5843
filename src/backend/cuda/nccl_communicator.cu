// Tensor-parallel collectives over NCCL, one GPU per rank (parallel/communicator.h). The group is made
// by ncclCommInitAll over GPUs 0..n-1; rank r then issues its collectives from its own thread on the
// stream of its CudaBackend, so they order with the rank's kernels without host synchronization.
//
//   all_reduce_sum:  ncclAllReduce in place (every rank receives the same bits: NCCL's reduction
//                    result is broadcast, not recomputed per rank)
//   all_gather_cols: ncclAllGather of the [rows, part_cols] blocks into a scratch [n][rows][part_cols],
//                    then one cudaMemcpy2DAsync per rank places block r at columns r * part_cols of out
//
// NVLink SHARP (multicast) stays off: NCCL_NVLS_ENABLE=0 is set before the communicators are made.
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_backend_impl.h"
#include "parallel/communicator.h"

namespace lamina {

namespace {

void nccl_check(ncclResult_t r, const char* what) {
    if (r != ncclSuccess) throw Error(std::string("nccl: ") + what + ": " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(DType t) {
    switch (t) {
        case DType::F32: return ncclFloat32;
        case DType::F16: return ncclFloat16;
        case DType::BF16: return ncclBfloat16;
        default: break;
    }
    LAMINA_CHECK(false, std::string("nccl collectives take f32/f16/bf16, not ") + std::string(dtype_name(t)));
    return ncclFloat32;
}

class NcclCommunicator final : public Communicator {
public:
    NcclCommunicator(ncclComm_t comm, int rank, int size, int device, cudaStream_t stream)
        : comm_(comm), rank_(rank), size_(size), device_(device), stream_(stream) {}
    ~NcclCommunicator() override {
        cudaSetDevice(device_);
        for (auto [begin, end] : events_) {
            cudaEventDestroy(begin);
            cudaEventDestroy(end);
        }
        if (scratch_) cudaFree(scratch_);
        ncclCommDestroy(comm_);
    }
    int rank() const override { return rank_; }
    int size() const override { return size_; }

    void all_reduce_sum(TensorView x) override {
        LAMINA_CHECK(x.row_stride == x.cols, "all_reduce_sum takes a contiguous tensor");
        const Timed timed(*this);
        nccl_check(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.n_elements()), nccl_type(x.dtype), ncclSum, comm_,
                                 stream_),
                   "ncclAllReduce");
    }

    void all_gather_cols(const TensorView& part, TensorView out) override {
        LAMINA_CHECK(part.dtype == out.dtype && part.row_stride == part.cols && out.row_stride == out.cols &&
                     part.rows == out.rows && out.cols <= size_ * part.cols);
        const size_t elem = dtype_size(part.dtype);
        const size_t block = static_cast<size_t>(part.n_elements()) * elem;
        if (block * static_cast<size_t>(size_) > scratch_bytes_) {
            // Grows once to the largest gather (graphs are off for tensor-parallel steps).
            if (scratch_) CUDA_CHECK(cudaFree(scratch_));
            CUDA_CHECK(cudaMalloc(&scratch_, block * static_cast<size_t>(size_)));
            scratch_bytes_ = block * static_cast<size_t>(size_);
        }
        const Timed timed(*this);
        nccl_check(ncclAllGather(part.data, scratch_, static_cast<size_t>(part.n_elements()), nccl_type(part.dtype), comm_,
                                 stream_),
                   "ncclAllGather");
        for (int r = 0; r < size_; ++r) {
            const int64_t first = r * part.cols, width = std::min(part.cols, out.cols - first);
            if (width <= 0 || part.rows == 0) continue;
            CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(out.data) + static_cast<size_t>(first) * elem,
                                         static_cast<size_t>(out.row_stride) * elem,
                                         static_cast<const char*>(scratch_) + static_cast<size_t>(r) * block,
                                         static_cast<size_t>(part.cols) * elem, static_cast<size_t>(width) * elem,
                                         static_cast<size_t>(part.rows), cudaMemcpyDeviceToDevice, stream_));
        }
    }

    double seconds() override {
        drain();
        return seconds_;
    }

private:
    static constexpr size_t kMaxPending = 4096;  // event pairs recorded before they are read back

    // While timing is on, a pair of events around one collective: the begin recorded when made, the end
    // when destroyed (also when the collective throws, so every pending pair has both).
    struct Timed {
        explicit Timed(NcclCommunicator& c) : c(c), on(c.timing_) {
            if (!on) return;
            if (c.pending_ >= kMaxPending) c.drain();  // nobody has read the time for a while
            if (c.pending_ == c.events_.size()) {
                cudaEvent_t b = nullptr, e = nullptr;
                CUDA_CHECK(cudaEventCreate(&b));
                CUDA_CHECK(cudaEventCreate(&e));
                c.events_.emplace_back(b, e);
            }
            CUDA_CHECK(cudaEventRecord(c.events_[c.pending_].first, c.stream_));
            ++c.pending_;
        }
        ~Timed() {
            if (on) cudaEventRecord(c.events_[c.pending_ - 1].second, c.stream_);
        }
        NcclCommunicator& c;
        bool on;
    };
    // Adds the elapsed time of every recorded pair (waiting for the last to complete).
    void drain() {
        for (size_t i = 0; i < pending_; ++i) {
            CUDA_CHECK(cudaEventSynchronize(events_[i].second));
            float ms = 0.0f;
            CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i].first, events_[i].second));
            seconds_ += ms * 1e-3;
        }
        pending_ = 0;
    }

    std::vector<std::pair<cudaEvent_t, cudaEvent_t>> events_;  // pool of (begin, end) pairs
    size_t pending_ = 0;                                       // pairs recorded and not yet read
    ncclComm_t comm_;
    int rank_, size_, device_;
    cudaStream_t stream_;
    void* scratch_ = nullptr;
    size_t scratch_bytes_ = 0;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(const std::vector<Backend*>& backends) {
    const int n = static_cast<int>(backends.size());
    LAMINA_CHECK(n >= 1);
    // NVLink multicast (NVLS) off: on shared multi-GPU hosts a program using it can take the GPUs out
    // of service; overwrite whatever the environment says.
    ::setenv("NCCL_NVLS_ENABLE", "0", 1);
    std::vector<ncclComm_t> comms(static_cast<size_t>(n));
    std::vector<int> devices(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) devices[r] = r;
    nccl_check(ncclCommInitAll(comms.data(), n, devices.data()), "ncclCommInitAll");
    std::vector<std::unique_ptr<Communicator>> out;
    for (int r = 0; r < n; ++r) {
        auto* cuda = dynamic_cast<CudaBackend*>(backends[r]);
        LAMINA_CHECK(cuda != nullptr, "NCCL ranks need CUDA backends");
        out.push_back(std::make_unique<NcclCommunicator>(comms[r], r, n, r, cuda->stream()));
    }
    return out;
}

}  // namespace lamina
