// Device-side synchronization shared by the kernels that wait on each other inside a step: shared-memory
// barriers fed by bulk copies (TMA), GPU-scope counters, and a watchdog for spin loops.
// (decode_step.cu: the persistent step's weight ring and grid barriers; out_proj.cu: o_proj waiting on the
// attention's heads.)
#pragma once

#include <cstdint>

#include "backend/cuda/common.cuh"

namespace lamina::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Counts the polls of a spin loop; after `limit` ns (0: never) it traps, so a broken protocol fails the step
// with a CUDA error instead of hanging the process.
struct Watchdog {
    uint64_t limit, start = 0;
    uint32_t polls = 0;
    __device__ __forceinline__ void tick() {
        if ((++polls & 1023u) != 0 || limit == 0) return;
        const uint64_t t = globaltimer();
        if (start == 0)
            start = t;
        else if (t - start > limit)
            __trap();
    }
};
// LAMINA_STEP_WATCHDOG_S (default 10; 0: never, for debuggers and sanitizers): how long a spin loop of a step's
// kernels may wait before it traps. A wait this long is a bug.
uint64_t watchdog_ns();

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity, uint64_t watchdog_ns) {
    Watchdog dog{watchdog_ns};
    for (;;) {
        uint32_t done;
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
            : "=r"(done)
            : "r"(smem_addr(bar)), "r"(parity)
            : "memory");
        if (done) return;
        dog.tick();
    }
}

// An L2 policy for data read once (weights): evict first.
__device__ __forceinline__ uint64_t evict_first_policy() {
    uint64_t policy;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    return policy;
}

// bytes from global src to shared dst (both 16-byte aligned, bytes a multiple of 16), completing on `bar`.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar, uint64_t policy) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::
            "r"(smem_addr(dst)),
        "l"(src), "r"(bytes), "r"(smem_addr(bar)), "l"(policy)
        : "memory");
}

// GPU-scope counters: a relaxed read (polls; follow the one that sees the value with __threadfence() to acquire
// what was released with it), and an add that releases this thread's earlier writes (and, after a barrier, the
// block's: the fence before it is cumulative).
__device__ __forceinline__ unsigned ld_relaxed(const unsigned* p) {
    unsigned v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}
__device__ __forceinline__ void st_relaxed(unsigned* p, unsigned v) {
    asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void add_release(unsigned* p, unsigned v) {
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

}  // namespace lamina::cuda
