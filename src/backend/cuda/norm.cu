// RMSNorm kernels — the seed's plugin, done properly.
//
//   y[r, i] = x[r, i] * rsqrt(mean_i(x[r, i]^2) + eps) * w[i]
//   fused:   residual[r] += x[r]; y[r] = rmsnorm(residual[r]) * w     (residual rounded to T first)
//   int8:    q = round(y * s) clamped to [-127, 127], s = 127 / max|y[r]| per token (scale out = 1/s),
//            or a given per-tensor s
// Shapes: x, residual, y [rows, cols] with a row stride; w [cols] f32. T = float, half or bf16;
// accumulation in f32. A block per row at a time (a persistent grid of as many blocks as fit, each
// walking rows with its slice of w held in registers, the next row's 16-byte loads issued before the
// current row is reduced); each thread holds ITEMS 16-byte vectors of the row (ITEMS chosen so a block
// has ~512 threads, the best of 64-1024 measured on the H100; ~128 for the plain norm over one wave of rows,
// see kOneWaveThreads), so the row is read once and written once.
// Roofline: bytes = rows * cols * sizeof(T) * 2 (3 reads + 2 writes for the fused form); FLOPs are
// negligible (~4 per element): memory bound, the target is the device's copy bandwidth.
#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

namespace {

constexpr int kMaxItems = 8;        // vectors per thread held in registers: cols <= 1024 * 8 * VEC
constexpr int kTargetThreads = 512;  // per row (measured on the H100: 64 to 1024 threads, 512 best)
// The plain norm over 64 rows up to one wave of 512-thread blocks (4 an SM): 128 threads a row, 4 vectors a
// thread (H200, 512 x 4096 fp16 cold: 2,432 GB/s against 2,194 at 512 threads; 1, 16 and 4096 rows and the
// fused form are no faster or slower that way).
constexpr int kOneWaveThreads = 128;

struct RowGeometry {
    int threads;
    int items;  // a power of two <= kMaxItems
};

template <int VEC>
RowGeometry row_geometry(int64_t cols, int target_threads = kTargetThreads) {
    const int64_t vecs = (cols + VEC - 1) / VEC;
    int items = 1;
    while (items < kMaxItems && vecs > static_cast<int64_t>(target_threads) * items) items *= 2;
    const int threads = static_cast<int>(std::min<int64_t>(1024, (cuda::ceil_div(vecs, items) + 31) / 32 * 32));
    return {threads, items};
}

// One thread's VEC elements as they are in memory: a 16-byte vector, or one element when VEC is 1.
template <typename T, int VEC>
using Raw = cuda::Packed<T, VEC>;

template <typename T, int VEC>
__device__ __forceinline__ void unpack(const Raw<T, VEC>& raw, float (&out)[VEC]) {
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = cuda::to_float(v[j]);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[VEC]) {
    Raw<T, VEC> raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[j] = cuda::from_float<T>(in[j]);
    *reinterpret_cast<Raw<T, VEC>*>(p) = raw;
}

// A row's loads, issued now and used later (so the next row's loads can be in flight while this one
// is reduced and written): the row (the residual, when Fused) and, when Fused, x.
template <typename T, int VEC, int ITEMS, bool Fused>
struct RowLoads {
    Raw<T, VEC> row[ITEMS];
    Raw<T, VEC> x[Fused ? ITEMS : 1];

    __device__ __forceinline__ void issue(const T* r, const T* xr, int cols) {
#pragma unroll
        for (int it = 0; it < ITEMS; ++it) {
            const int i = (it * blockDim.x + threadIdx.x) * VEC;
            if (i < cols) {
                row[it] = *reinterpret_cast<const Raw<T, VEC>*>(r + i);
                if constexpr (Fused) x[it] = *reinterpret_cast<const Raw<T, VEC>*>(xr + i);
            }
        }
    }

    // The row's values in f32 (residual + x, rounded to T and written back, when Fused) and this
    // thread's sum of their squares.
    __device__ __forceinline__ float finish(T* r, int cols, float (&vals)[ITEMS][VEC]) const {
        float ss = 0.0f;
#pragma unroll
        for (int it = 0; it < ITEMS; ++it) {
            const int i = (it * blockDim.x + threadIdx.x) * VEC;
            if (i < cols) {
                unpack<T, VEC>(row[it], vals[it]);
                if constexpr (Fused) {
                    float xv[VEC];
                    unpack<T, VEC>(x[it], xv);
                    // Round the sum to T before using it, so fused == add-then-norm bit for bit.
#pragma unroll
                    for (int j = 0; j < VEC; ++j) vals[it][j] = cuda::to_float(cuda::from_float<T>(vals[it][j] + xv[j]));
                    store_vec<T, VEC>(r + i, vals[it]);
                }
#pragma unroll
                for (int j = 0; j < VEC; ++j) ss += vals[it][j] * vals[it][j];
            }
        }
        return ss;
    }
};

// The weight's slice of this thread, f32 (16-byte loads where VEC allows).
template <int VEC, int ITEMS>
__device__ __forceinline__ void load_weight(const float* w, int cols, float (&wv)[ITEMS][VEC]) {
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
        const int i = (it * blockDim.x + threadIdx.x) * VEC;
        if (i < cols) {
            if constexpr (VEC % 4 == 0) {
#pragma unroll
                for (int j = 0; j < VEC; j += 4) {
                    const float4 f = *reinterpret_cast<const float4*>(w + i + j);
                    wv[it][j] = f.x, wv[it][j + 1] = f.y, wv[it][j + 2] = f.z, wv[it][j + 3] = f.w;
                }
            } else {
#pragma unroll
                for (int j = 0; j < VEC; ++j) wv[it][j] = w[i + j];
            }
        }
    }
}

// A persistent grid: each block loads its slice of the weight once into registers, then walks rows
// r = blockIdx.x, + gridDim.x, ...; the next row's loads are issued before this row is reduced and
// written, so a block keeps memory busy through its reduction, and several blocks per SM overlap.
template <typename T, int VEC, int ITEMS, bool Fused>
__global__ void rms_norm_kernel(T* residual, int64_t res_stride, const T* x, int64_t x_stride, const float* w,
                                T* out, int64_t out_stride, int64_t rows, int cols, float eps) {
    LAMINA_TRACE_KERNEL(cuda::kTraceRmsNorm);
    int64_t r = blockIdx.x;
    if (r >= rows) return;
    float wv[ITEMS][VEC];
    load_weight<VEC, ITEMS>(w, cols, wv);  // the gains: no kernel writes them, so read before the wait
    cuda::pdl_wait();
    RowLoads<T, VEC, ITEMS, Fused> cur;
    cur.issue(residual + r * res_stride, Fused ? x + r * x_stride : nullptr, cols);
    for (; r < rows; r += gridDim.x) {
        const int64_t next = r + gridDim.x;
        RowLoads<T, VEC, ITEMS, Fused> ahead;
        if (next < rows) ahead.issue(residual + next * res_stride, Fused ? x + next * x_stride : nullptr, cols);
        float vals[ITEMS][VEC];
        const float ss = cur.finish(residual + r * res_stride, cols, vals);
        const float inv = rsqrtf(cuda::block_sum(ss) / static_cast<float>(cols) + eps);
        T* orow = out + r * out_stride;
#pragma unroll
        for (int it = 0; it < ITEMS; ++it) {
            const int i = (it * blockDim.x + threadIdx.x) * VEC;
            if (i < cols) {
                float y[VEC];
#pragma unroll
                for (int j = 0; j < VEC; ++j) y[j] = wv[it][j] * (vals[it][j] * inv);
                store_vec<T, VEC>(orow + i, y);
            }
        }
        cur = ahead;
    }
}

template <typename T, int VEC, int ITEMS, bool PerToken>
__global__ void rms_norm_quant_kernel(const T* x, int64_t x_stride, const float* w, int8_t* out, float* scales,
                                      float tensor_scale, int cols, float eps) {
    const int64_t r = blockIdx.x;
    float vals[ITEMS][VEC];
    RowLoads<T, VEC, ITEMS, false> loads;
    loads.issue(x + r * x_stride, nullptr, cols);
    const float ss = loads.finish(nullptr, cols, vals);
    const float inv = rsqrtf(cuda::block_sum(ss) / static_cast<float>(cols) + eps);
    float amax = 0.0f;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
        const int i = (it * blockDim.x + threadIdx.x) * VEC;
        if (i < cols) {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                // Round y to T first: the quantized value is of the norm's T output, as the seed's kernel.
                vals[it][j] = cuda::to_float(cuda::from_float<T>(w[i + j] * (vals[it][j] * inv)));
                amax = fmaxf(amax, fabsf(vals[it][j]));
            }
        }
    }
    float s = tensor_scale;
    if constexpr (PerToken) {
        __shared__ float block_amax[32];
        amax = cuda::warp_max(amax);
        if (threadIdx.x % 32 == 0) block_amax[threadIdx.x / 32] = amax;
        __syncthreads();
        const int lane = threadIdx.x % 32;  // every warp reduces the per-warp maxima itself
        amax = lane < static_cast<int>(blockDim.x / 32) ? block_amax[lane] : 0.0f;
        amax = cuda::warp_max(amax);
        amax = __shfl_sync(0xffffffffu, amax, 0);
        s = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (threadIdx.x == 0) scales[r] = amax > 0.0f ? amax / 127.0f : 0.0f;
    }
    int8_t* orow = out + r * cols;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
        const int i = (it * blockDim.x + threadIdx.x) * VEC;
        if (i < cols) {
#pragma unroll
            for (int j = 0; j < VEC; ++j)
                orow[i + j] = static_cast<int8_t>(fminf(127.0f, fmaxf(-127.0f, rintf(vals[it][j] * s))));
        }
    }
}

// Vector width: 16 bytes when every row start, the row length and the (f32) weight allow it, else one
// element.
template <typename T>
bool can_vectorize(const TensorView& a, const TensorView* b, const TensorView& c, const TensorView& w) {
    constexpr int64_t v = 16 / sizeof(T);
    return vector_rows(a, v) && vector_rows(c, v) && (b == nullptr || vector_rows(*b, v)) &&
           reinterpret_cast<uintptr_t>(w.data) % 16 == 0;
}

// Blocks of `kernel` that fit on the whole device at once (the persistent grid's size), looked up once
// per kernel and device.
template <typename K>
int64_t resident_blocks(K kernel, int threads) {
    static std::mutex mutex;
    static std::map<std::tuple<const void*, int, int>, int64_t> known;
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    const auto key = std::make_tuple(reinterpret_cast<const void*>(kernel), threads, device);
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = known.find(key); it != known.end()) return it->second;
    int per_sm = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0));
    return known[key] = static_cast<int64_t>(std::max(per_sm, 1)) * cuda::sm_count();
}

// Calls f.template operator()<ITEMS>() with the geometry's compile-time item count.
template <typename F>
void dispatch_items(int items, F&& f) {
    switch (items) {
        case 1: f.template operator()<1>(); return;
        case 2: f.template operator()<2>(); return;
        case 4: f.template operator()<4>(); return;
        case 8: f.template operator()<8>(); return;
    }
    throw Error("rms_norm: row too long for one block");
}

template <typename T, bool Fused>
void launch_rms_norm(TensorView residual, const TensorView* x, const TensorView& w, float eps, TensorView out,
                     cudaStream_t stream) {
    const int cols = static_cast<int>(residual.cols);
    static const int64_t one_wave_rows = 4 * static_cast<int64_t>(cuda::sm_count());  // 512-thread blocks, 4 an SM
    const bool one_wave = !Fused && residual.rows >= 64 && residual.rows <= one_wave_rows;
    const int target_threads = one_wave ? kOneWaveThreads : kTargetThreads;
    auto go = [&]<int VEC>() {
        const RowGeometry g = row_geometry<VEC>(cols, target_threads);
        if (g.threads * g.items * VEC < cols) throw Error("rms_norm: row of " + std::to_string(cols) + " elements is too long");
        dispatch_items(g.items, [&]<int ITEMS>() {
            auto kernel = rms_norm_kernel<T, VEC, ITEMS, Fused>;
            const int64_t grid = std::min<int64_t>(residual.rows, resident_blocks(kernel, g.threads));
            cuda::launch_pdl(kernel, static_cast<unsigned>(grid), g.threads, 0, stream,
                static_cast<T*>(residual.data), residual.row_stride, x ? static_cast<const T*>(x->data) : nullptr,
                x ? x->row_stride : 0, static_cast<const float*>(w.data), static_cast<T*>(out.data), out.row_stride,
                residual.rows, cols, eps);
        });
    };
    if (can_vectorize<T>(residual, x, out, w)) go.template operator()<16 / sizeof(T)>();
    else go.template operator()<1>();
    CUDA_CHECK_LAUNCH();
}

template <bool PerToken>
void launch_rms_norm_quant(DType act, const TensorView& x, const TensorView& w, float eps, float tensor_scale,
                           int8_t* out, float* scales, cudaStream_t stream) {
    cuda::dispatch_dtype(act, [&]<typename T>() {
        auto go = [&]<int VEC>() {
            const RowGeometry g = row_geometry<VEC>(x.cols);
            LAMINA_CHECK(g.threads * g.items * VEC >= x.cols, "rms_norm: row too long");
            dispatch_items(g.items, [&]<int ITEMS>() {
                rms_norm_quant_kernel<T, VEC, ITEMS, PerToken><<<static_cast<unsigned>(x.rows), g.threads, 0, stream>>>(
                    static_cast<const T*>(x.data), x.row_stride, static_cast<const float*>(w.data), out, scales,
                    tensor_scale, static_cast<int>(x.cols), eps);
            });
        };
        if (can_vectorize<T>(x, nullptr, x, w)) go.template operator()<16 / sizeof(T)>();
        else go.template operator()<1>();
    });
    CUDA_CHECK_LAUNCH();
}

void check_norm_args(const TensorView& x, const TensorView& w, const TensorView& out, DType act) {
    LAMINA_CHECK(x.dtype == act && out.dtype == act, "rms_norm: activations must be the backend dtype");
    LAMINA_CHECK(w.dtype == DType::F32 && w.n_elements() == x.cols, "rms_norm: weight must be f32 [cols]");
    LAMINA_CHECK(out.rows == x.rows && out.cols == x.cols);
}

// --- the unfused composition: one kernel per step of the formula ---
template <typename T>
__global__ void square_kernel(const T* x, int64_t stride, float* sq, int cols) {
    const int64_t r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x) {
        const float v = cuda::to_float(x[r * stride + i]);
        sq[r * cols + i] = v * v;
    }
}
__global__ void mean_kernel(const float* sq, float* m, int cols) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) s += sq[blockIdx.x * static_cast<int64_t>(cols) + i];
    s = cuda::block_sum(s);
    if (threadIdx.x == 0) m[blockIdx.x] = s / static_cast<float>(cols);
}
__global__ void add_eps_kernel(float* m, int rows, float eps) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < rows) m[r] += eps;
}
__global__ void sqrt_kernel(float* m, int rows) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < rows) m[r] = sqrtf(m[r]);
}
template <typename T>
__global__ void divide_kernel(const T* x, int64_t stride, const float* m, float* tmp, int cols) {
    const int64_t r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x)
        tmp[r * cols + i] = cuda::to_float(x[r * stride + i]) / m[r];
}
template <typename T>
__global__ void mul_weight_kernel(const float* tmp, const float* w, T* out, int64_t stride, int cols) {
    const int64_t r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x)
        out[r * stride + i] = cuda::from_float<T>(w[i] * tmp[r * cols + i]);
}

}  // namespace

void CudaBackend::rms_norm(const TensorView& x, const TensorView& w, float eps, TensorView out) {
    check_norm_args(x, w, out, act_);
    // Unfused-in-place is not needed: the plain norm reads x and writes out.
    cuda::dispatch_dtype(act_, [&]<typename T>() { launch_rms_norm<T, false>(x, nullptr, w, eps, out, stream_); });
}

void CudaBackend::rms_norm_fused_add(TensorView residual, const TensorView& x, const TensorView& w, float eps,
                                     TensorView out) {
    check_norm_args(residual, w, out, act_);
    LAMINA_CHECK(x.rows == residual.rows && x.cols == residual.cols && x.dtype == act_);
    cuda::dispatch_dtype(act_, [&]<typename T>() { launch_rms_norm<T, true>(residual, &x, w, eps, out, stream_); });
}

void CudaBackend::rms_norm_unfused(const TensorView& x, const TensorView& w, float eps, TensorView out) {
    check_norm_args(x, w, out, act_);
    const int rows = static_cast<int>(x.rows), cols = static_cast<int>(x.cols);
    float* sq = scratch_f32(static_cast<size_t>(rows) * cols + rows);
    float* m = sq + static_cast<size_t>(rows) * cols;
    const dim3 grid(static_cast<unsigned>(cuda::ceil_div(cols, 256)), static_cast<unsigned>(rows));
    const int row_blocks = cuda::ceil_div(rows, 256);
    cuda::dispatch_dtype(act_, [&]<typename T>() {
        square_kernel<T><<<grid, 256, 0, stream_>>>(static_cast<const T*>(x.data), x.row_stride, sq, cols);
        mean_kernel<<<rows, 256, 0, stream_>>>(sq, m, cols);
        add_eps_kernel<<<row_blocks, 256, 0, stream_>>>(m, rows, eps);
        sqrt_kernel<<<row_blocks, 256, 0, stream_>>>(m, rows);
        divide_kernel<T><<<grid, 256, 0, stream_>>>(static_cast<const T*>(x.data), x.row_stride, m, sq, cols);
        mul_weight_kernel<T><<<grid, 256, 0, stream_>>>(sq, static_cast<const float*>(w.data),
                                                        static_cast<T*>(out.data), out.row_stride, cols);
    });
    CUDA_CHECK_LAUNCH();
}

void CudaBackend::rms_norm_quant_per_token(const TensorView& x, const TensorView& w, float eps, int8_t* out,
                                           float* scales) {
    LAMINA_CHECK(x.dtype == act_ && w.dtype == DType::F32);
    launch_rms_norm_quant<true>(act_, x, w, eps, 0.0f, out, scales, stream_);
    CUDA_CHECK_LAUNCH();
}

void CudaBackend::rms_norm_quant_per_tensor(const TensorView& x, const TensorView& w, float eps, float scale,
                                            int8_t* out) {
    LAMINA_CHECK(x.dtype == act_ && w.dtype == DType::F32);
    launch_rms_norm_quant<false>(act_, x, w, eps, scale, out, nullptr, stream_);
    CUDA_CHECK_LAUNCH();
}

}  // namespace lamina
