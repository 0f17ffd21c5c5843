// Collectives between the ranks of a tensor-parallel group. Each rank drives its own handle from its
// own thread, and every rank calls the same collectives in the same order with the same shapes.
// Tensors are views in the rank's backend memory (host memory for the CPU, the rank's GPU for NCCL).
//
// Two implementations: CPU ranks simulated in one process (threads meeting at a barrier over shared
// views; sums in rank order 0..N-1, so every rank gets the same bits) and NCCL, one GPU per rank
// (backend/cuda/nccl_communicator.cu; NVLink multicast off).
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.h"

namespace lamina {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;

    // x = the sum of every rank's x, in place; x [rows, cols] contiguous, the same shape on every rank.
    virtual void all_reduce_sum(TensorView x) = 0;
    // Gathers column blocks: out[:, r * part.cols + j] = part of rank r [:, j], for the columns out has
    // (out.cols <= size * part.cols: the last rank's columns past out.cols are its padding, dropped).
    // part [rows, part.cols] contiguous and out [rows, out.cols] contiguous, both on every rank.
    virtual void all_gather_cols(const TensorView& part, TensorView out) = 0;

    // Time in this rank's collectives, waiting for the other ranks included, while timing is on: the
    // running total in seconds (host wall time on the CPU; on NCCL the GPU time between events recorded
    // around each call on the rank's stream, read when asked). Off by default: the events cost a little.
    void set_timing(bool on) { timing_ = on; }
    virtual double seconds() { return seconds_; }

protected:
    bool timing_ = false;
    double seconds_ = 0.0;
};

// n simulated ranks in one process for the CPU backend: handle r must be driven by its own thread
// (the collectives block until all n ranks have arrived). f32 tensors.
std::vector<std::unique_ptr<Communicator>> make_cpu_communicators(int n);

#ifdef LAMINA_HAS_NCCL
// One NCCL communicator per rank over GPUs 0..n-1 (ncclCommInitAll), each issuing on the stream of
// backends[r] (CUDA backends, backend r on GPU r). Sets NCCL_NVLS_ENABLE=0 before initializing.
std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(const std::vector<Backend*>& backends);
#endif

}  // namespace lamina
