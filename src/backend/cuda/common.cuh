// Shared CUDA helpers: checked calls, element types, 16-byte vectors, warp/block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>

#include "core/dtype.h"
#include "core/env.h"
#include "core/error.h"

namespace lamina::cuda {

// Every CUDA runtime call goes through this: a failure is a lamina::Error with the call site.
inline void check(cudaError_t e, const char* what, const char* file, int line) {
    if (e != cudaSuccess)
        throw Error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what +
                    " at " + file + ":" + std::to_string(line));
}
#define CUDA_CHECK(call) ::lamina::cuda::check((call), #call, __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations at once.
#define CUDA_CHECK_LAUNCH() ::lamina::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// The GPU's nanosecond clock (kernel traces, watchdogs).
__device__ __forceinline__ uint64_t globaltimer() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

}  // namespace lamina::cuda

#include "backend/cuda/kernel_trace.cuh"

namespace lamina::cuda {

// Element type <-> float, for the three activation/weight types.
template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float x) {
    __shared__ float partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    x = warp_sum(x);
    __syncthreads();  // partial[] may still be read by a previous call
    if (lane == 0) partial[warp] = x;
    __syncthreads();
    const int n_warps = blockDim.x / 32;
    x = lane < n_warps ? partial[lane] : 0.0f;
    return warp_sum(x);
}

// Online softmax over keys (flash attention): folds K keys' scores sc (-INFINITY for masked keys) into a
// running max m, sum l and accumulator acc (a lane's E elements of the weighted value rows):
// acc = acc * exp(m - m') + sum_u exp(sc[u] - m') v_u, with value(u, v) writing key u's E value elements.
template <int K, int E, typename Value>
__device__ __forceinline__ void online_softmax(const float (&sc)[K], float& m, float& l, float (&acc)[E], Value&& value) {
    float m_new = m;
#pragma unroll
    for (int u = 0; u < K; ++u) m_new = fmaxf(m_new, sc[u]);
    const float corr = __expf(m - m_new);
    l *= corr;
#pragma unroll
    for (int j = 0; j < E; ++j) acc[j] *= corr;
#pragma unroll
    for (int u = 0; u < K; ++u) {
        const float w = __expf(sc[u] - m_new);  // 0 for masked keys
        float v[E];
        value(u, v);
        l += w;
#pragma unroll
        for (int j = 0; j < E; ++j) acc[j] += w * v[j];
    }
    m = m_new;
}

// Calls f.template operator()<T>() with T the CUDA type of dtype.
template <typename F>
void dispatch_dtype(DType t, F&& f) {
    switch (t) {
        case DType::F32: f.template operator()<float>(); return;
        case DType::F16: f.template operator()<__half>(); return;
        case DType::BF16: f.template operator()<__nv_bfloat16>(); return;
    }
}

// N elements of T as one word, for a single vector load or store of N * sizeof(T) bytes (2, 4, 8, 16, or
// 32 as two 16-byte words).
struct Bytes32 {
    uint4 a, b;
};
template <typename T, int N>
using Packed = std::conditional_t<
    N * sizeof(T) == 32, Bytes32,
    std::conditional_t<N * sizeof(T) == 16, uint4,
                       std::conditional_t<N * sizeof(T) == 8, uint2, std::conditional_t<N * sizeof(T) == 4, uint32_t, uint16_t>>>>;

// Programmatic dependent launch (PDL). The kernels of a step are launched with launch_pdl, so that a
// kernel's blocks start while the kernel before it runs: each does what reads no earlier kernel's output
// (a GEMV issues its first weight loads), then pdl_wait() — which returns once every earlier kernel has
// finished and its writes are visible — and lets the next kernel launch at once (which therefore
// overlaps at most this one). A kernel launched so must call pdl_wait() before it reads or writes
// anything an earlier kernel touches, in every block that does; a block that does neither may return
// without it. Without the attribute (a plain <<<>>> launch) the wait returns at once.
// Two rules that the early reads rely on, as long as at least one block of every kernel waits (so only the
// kernel just before can still be running when a kernel starts): before its wait, a kernel reads only what
// that kernel cannot be writing: weights, and in the decode attention of a one-token step (attention.cu)
// the KV cache rows of earlier positions. So the kernel just before that attention (RoPE with the cache
// write, or the fused qkv GEMV) may write no cache row but each token's own.
__device__ __forceinline__ void pdl_wait() {
    cudaGridDependencySynchronize();
    LAMINA_TRACE_WAITED();
    cudaTriggerProgrammaticLaunchCompletion();
}

template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    check(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), "cudaLaunchKernelEx", __FILE__, __LINE__);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// An L2 policy for data read once (weights): evict first.
__device__ __forceinline__ uint64_t evict_first_policy() {
    uint64_t policy;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    return policy;
}

inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// Streaming multiprocessors of the current device.
inline int sm_count() {
    int device = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    return n;
}

}  // namespace lamina::cuda
