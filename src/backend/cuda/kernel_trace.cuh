// An in-pipeline kernel timeline, for development builds only (cmake -DLAMINA_KERNEL_TRACE=ON; without
// it every macro here is empty and no kernel changes).
//
// ncu times a kernel alone, with the kernels before and after it finished, and the device machine has no
// nsys. So it cannot show what a kernel costs inside a decode step, where programmatic dependent launch
// (PDL) overlaps each kernel with the one before it. Here each traced block records, from thread 0:
//   start   globaltimer (ns) at block entry;
//   waited  ns from start until cuda::pdl_wait() returned (UINT32_MAX: the block never waited);
//   end     ns from start until thread 0 left the kernel;
// with its kernel's tag, its launch (%gridid, unique per launch), linear block index, grid size (blocks) and SM.
// One graph replay is recorded (CudaBackend::graph_replay: LAMINA_KERNEL_TRACE=path.csv,
// LAMINA_KERNEL_TRACE_REPLAY=N, default 100), and bench/trace_summary.py turns the blocks into launches and a
// per-kernel table of the step's critical path.
// Cost when on: per block, one atomicAdd and one 40-byte store (about 18 MB a step at LLaMA-7B batch 1: 442,000
// blocks); the traced step measured about 12% slower than the untraced one on the H200.
#pragma once

#include <cstdint>
#include <vector>

namespace lamina::cuda {

struct TraceRecord {
    uint32_t tag, block, grid, sm;
    uint64_t launch, start;
    uint32_t waited, end;
};
struct TraceBuffer {
    unsigned long long count, capacity;
    TraceRecord* records;
};

// Kernel tags (bench/trace_summary.py names them). A GEMV's tag adds 16 * its epilogue and 256 when it
// normalizes x in its prologue.
enum TraceTag : uint32_t {
    kTraceEmbedding = 1,
    kTraceRmsNorm = 2,
    kTraceGemv = 3,
    kTraceAttention = 4,
    kTraceGatherRows = 5,
    kTraceArgmax = 6,
};

#ifdef LAMINA_KERNEL_TRACE
// Each translation unit has its own copy of the device pointer (no relocatable device code), and adds a
// setter for it here at static initialization; CudaBackend arms and disarms them all around one replay.
using TraceArm = void (*)(TraceBuffer*);
std::vector<TraceArm>& trace_arms();

namespace {
__device__ TraceBuffer* g_trace = nullptr;
struct TraceArmRegistrar {
    TraceArmRegistrar() {
        trace_arms().push_back([](TraceBuffer* b) { check(cudaMemcpyToSymbol(g_trace, &b, sizeof b), "trace arm", __FILE__, __LINE__); });
    }
};
const TraceArmRegistrar trace_arm_registrar;
}  // namespace

// When this block's pdl_wait() returned (0: not yet), per block.
__device__ __forceinline__ uint64_t& trace_waited_at() {
    __shared__ uint64_t t;
    return t;
}

struct TraceScope {
    uint32_t tag;
    uint64_t start = 0;
    __device__ explicit TraceScope(uint32_t t) : tag(t) {
        if (threadIdx.x == 0 && g_trace != nullptr) {
            start = globaltimer();
            trace_waited_at() = 0;
        }
    }
    __device__ ~TraceScope() {
        TraceBuffer* b = g_trace;
        if (threadIdx.x != 0 || b == nullptr || start == 0) return;  // start 0: entered before the trace was armed
        const uint64_t end = globaltimer(), waited = trace_waited_at();
        const unsigned long long i = atomicAdd(&b->count, 1ull);
        if (i >= b->capacity) return;
        uint32_t sm;
        uint64_t launch;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        asm volatile("mov.u64 %0, %%gridid;" : "=l"(launch));
        b->records[i] = {tag,
                         (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x,
                         gridDim.x * gridDim.y * gridDim.z,
                         sm,
                         launch,
                         start,
                         waited == 0 ? UINT32_MAX : static_cast<uint32_t>(waited - start),
                         static_cast<uint32_t>(end - start)};
    }
};
#define LAMINA_TRACE_KERNEL(tag) const ::lamina::cuda::TraceScope lamina_trace_scope_(tag)
#define LAMINA_TRACE_WAITED()                                                                                      \
    do {                                                                                                           \
        if (threadIdx.x == 0 && ::lamina::cuda::g_trace != nullptr) ::lamina::cuda::trace_waited_at() = ::lamina::cuda::globaltimer(); \
    } while (0)
#else
#define LAMINA_TRACE_KERNEL(tag) ((void)0)
#define LAMINA_TRACE_WAITED() ((void)0)
#endif

}  // namespace lamina::cuda
