// Embedding gather, SwiGLU, residual add, row gather, bias-free argmax: small memory-bound kernels.
//   embedding:  out[t] = table[ids[t]]                       (n * n_embd elements moved)
//   swiglu:     out[t, i] = silu(g[t, i]) * u[t, i], [g | u] = gate_up[t]   (3 n n_ff elements)
//   add:        acc += x
//   argmax:     ids[r] = first index of the max of logits[r] (one block per row, n_vocab reads)
// The one-block-a-row kernels (embedding, row gather, argmax) run on the decode step's critical path, one
// or a few rows each: they move 16 bytes a load where the rows allow (VEC elements) and issue a thread's
// loads together (kBatch vectors) before using any, so a row costs about one memory latency, not one a
// loop iteration (a 4096-wide fp16 row: 2 vectors a thread at 256 threads).
#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

constexpr int kBatch = 4;  // vectors a thread loads before it uses the first

// dst[0, cols) = src[0, cols), by the block: VEC elements a vector, kBatch vectors a thread in flight.
template <typename T, int VEC>
__device__ __forceinline__ void copy_row(const T* __restrict__ src, T* __restrict__ dst, int cols) {
    using Raw = cuda::Packed<T, VEC>;
    const int vecs = cols / VEC;
    for (int base = 0; base < vecs; base += kBatch * static_cast<int>(blockDim.x)) {
        Raw v[kBatch];
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
            const int i = base + k * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
            if (i < vecs) v[k] = reinterpret_cast<const Raw*>(src)[i];
        }
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
            const int i = base + k * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
            if (i < vecs) reinterpret_cast<Raw*>(dst)[i] = v[k];
        }
    }
}

template <typename T, int VEC>
__global__ void embedding_kernel(const T* table, int64_t table_stride, const int32_t* ids, T* out, int64_t out_stride,
                                 int cols) {
    LAMINA_TRACE_KERNEL(cuda::kTraceEmbedding);
    cuda::pdl_wait();
    const int64_t t = blockIdx.x;
    copy_row<T, VEC>(table + static_cast<int64_t>(ids[t]) * table_stride, out + t * out_stride, cols);
}

// VEC consecutive elements per thread (16-byte loads when VEC > 1), over a flat (token, vector) grid.
template <typename T, int VEC>
__global__ void swiglu_kernel(const T* gate_up, int64_t in_stride, T* out, int64_t out_stride, int n_ff, int64_t rows) {
    cuda::pdl_wait();
    using Raw = cuda::Packed<T, VEC>;
    const int per_row = n_ff / VEC;
    const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (gid >= rows * per_row) return;
    const int64_t t = gid / per_row;
    const int i = static_cast<int>(gid % per_row) * VEC;
    const Raw g = *reinterpret_cast<const Raw*>(gate_up + t * in_stride + i);
    const Raw u = *reinterpret_cast<const Raw*>(gate_up + t * in_stride + n_ff + i);
    Raw y;
    const T* gv = reinterpret_cast<const T*>(&g);
    const T* uv = reinterpret_cast<const T*>(&u);
    T* yv = reinterpret_cast<T*>(&y);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
        const float a = cuda::to_float(gv[j]);
        yv[j] = cuda::from_float<T>(a / (1.0f + __expf(-a)) * cuda::to_float(uv[j]));
    }
    *reinterpret_cast<Raw*>(out + t * out_stride + i) = y;
}

template <typename T>
__global__ void add_kernel(T* acc, int64_t acc_stride, const T* x, int64_t x_stride, int cols) {
    cuda::pdl_wait();
    const int64_t t = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x)
        acc[t * acc_stride + i] = cuda::from_float<T>(cuda::to_float(acc[t * acc_stride + i]) + cuda::to_float(x[t * x_stride + i]));
}

template <typename T, int VEC>
__global__ void gather_rows_kernel(const T* x, int64_t x_stride, const int32_t* rows, T* out, int64_t out_stride,
                                   int cols) {
    LAMINA_TRACE_KERNEL(cuda::kTraceGatherRows);
    cuda::pdl_wait();
    const int64_t r = blockIdx.x;
    copy_row<T, VEC>(x + static_cast<int64_t>(rows[r]) * x_stride, out + r * out_stride, cols);
}

// (v, idx) of the warp's largest value, the lowest index among equals, in every lane.
__device__ __forceinline__ void warp_argmax(float& v, int& idx) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ov > v || (ov == v && oi < idx)) {
            v = ov;
            idx = oi;
        }
    }
}

template <typename T, int VEC>
__global__ void argmax_kernel(const T* logits, int64_t stride, int cols, int32_t* ids) {
    __shared__ float best_val[32];
    __shared__ int best_idx[32];
    LAMINA_TRACE_KERNEL(cuda::kTraceArgmax);
    cuda::pdl_wait();
    using Raw = cuda::Packed<T, VEC>;
    const Raw* row = reinterpret_cast<const Raw*>(logits + static_cast<int64_t>(blockIdx.x) * stride);
    const int vecs = cols / VEC;
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int base = 0; base < vecs; base += kBatch * static_cast<int>(blockDim.x)) {
        Raw raw[kBatch];
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
            const int i = base + k * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
            if (i < vecs) raw[k] = row[i];
        }
        // In index order, with a strict compare: this thread keeps the first index of its maximum.
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
            const int i = base + k * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
            if (i >= vecs) continue;
            const T* e = reinterpret_cast<const T*>(&raw[k]);
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float x = cuda::to_float(e[j]);
                if (x > v) {
                    v = x;
                    idx = i * VEC + j;
                }
            }
        }
    }
    warp_argmax(v, idx);
    if (threadIdx.x % 32 == 0) {
        best_val[threadIdx.x / 32] = v;
        best_idx[threadIdx.x / 32] = idx;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        const int n_warps = blockDim.x / 32;
        v = threadIdx.x < n_warps ? best_val[threadIdx.x] : -INFINITY;
        idx = threadIdx.x < n_warps ? best_idx[threadIdx.x] : 0x7fffffff;
        warp_argmax(v, idx);
        if (threadIdx.x == 0) ids[blockIdx.x] = idx;
    }
}

// f.template operator()<VEC>() with 16-byte vectors (16 / sizeof(T) elements) when `vectors`, else 1.
template <typename T, typename F>
void dispatch_vec(bool vectors, F&& f) {
    if (vectors)
        f.template operator()<static_cast<int>(16 / sizeof(T))>();
    else
        f.template operator()<1>();
}

dim3 row_grid(int64_t cols, int64_t rows) {
    return dim3(static_cast<unsigned>(std::min(cuda::ceil_div(cols, 256), 64)), static_cast<unsigned>(rows));
}

}  // namespace

void CudaBackend::embedding(const TensorView& table, const StepTokens& tok, TensorView out) {
    LAMINA_CHECK(table.dtype == act_ && out.dtype == act_ && out.cols == table.cols);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        dispatch_vec<T>(vector_rows(table, 16 / sizeof(T)) && vector_rows(out, 16 / sizeof(T)), [&]<int VEC>() {
            cuda::launch_pdl(embedding_kernel<T, VEC>, static_cast<unsigned>(tok.n_tokens), 256, 0, stream_,
                             static_cast<const T*>(table.data), table.row_stride, tok.ids, static_cast<T*>(out.data),
                             out.row_stride, static_cast<int>(table.cols));
        });
    });
    CUDA_CHECK_LAUNCH();
}

void CudaBackend::swiglu(const TensorView& gate_up, TensorView out) {
    LAMINA_CHECK(gate_up.dtype == act_ && out.dtype == act_ && gate_up.cols == 2 * out.cols && gate_up.rows == out.rows);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        auto go = [&]<int VEC>() {
            const int blocks = cuda::ceil_div(out.rows * (out.cols / VEC), 256);
            cuda::launch_pdl(swiglu_kernel<T, VEC>, blocks, 256, 0, stream_, static_cast<const T*>(gate_up.data), gate_up.row_stride,
                                                              static_cast<T*>(out.data), out.row_stride,
                                                              static_cast<int>(out.cols), out.rows);
        };
        constexpr int64_t kVec = 16 / sizeof(T);
        if (vector_rows(gate_up, kVec) && vector_rows(out, kVec)) go.template operator()<kVec>();
        else go.template operator()<1>();
    });
    CUDA_CHECK_LAUNCH();
}

void CudaBackend::add(TensorView acc, const TensorView& x) {
    LAMINA_CHECK(acc.dtype == act_ && x.dtype == act_ && acc.rows == x.rows && acc.cols == x.cols);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        cuda::launch_pdl(add_kernel<T>, row_grid(acc.cols, acc.rows), 256, 0, stream_,
            static_cast<T*>(acc.data), acc.row_stride, static_cast<const T*>(x.data), x.row_stride, static_cast<int>(acc.cols));
    });
    CUDA_CHECK_LAUNCH();
}

void CudaBackend::gather_rows(const TensorView& x, const int32_t* rows, int64_t n, TensorView out) {
    LAMINA_CHECK(x.dtype == act_ && out.dtype == act_ && out.rows == n && out.cols == x.cols);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        dispatch_vec<T>(vector_rows(x, 16 / sizeof(T)) && vector_rows(out, 16 / sizeof(T)), [&]<int VEC>() {
            cuda::launch_pdl(gather_rows_kernel<T, VEC>, static_cast<unsigned>(n), 256, 0, stream_,
                             static_cast<const T*>(x.data), x.row_stride, rows, static_cast<T*>(out.data),
                             out.row_stride, static_cast<int>(x.cols));
        });
    });
    CUDA_CHECK_LAUNCH();
}

void CudaBackend::argmax_rows(const TensorView& logits, int32_t* ids) {
    LAMINA_CHECK(logits.dtype == act_);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        dispatch_vec<T>(vector_rows(logits, 16 / sizeof(T)), [&]<int VEC>() {
            cuda::launch_pdl(argmax_kernel<T, VEC>, static_cast<unsigned>(logits.rows), 1024, 0, stream_,
                             static_cast<const T*>(logits.data), logits.row_stride, static_cast<int>(logits.cols), ids);
        });
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
