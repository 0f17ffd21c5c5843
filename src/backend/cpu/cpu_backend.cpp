#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "backend/cpu/dot.h"
#include "backend/cpu/quant_dot.h"
#include "core/error.h"

namespace lamina {

std::unique_ptr<Backend> make_cpu_backend(int n_threads, DType kv_cache_dtype) {
    return std::make_unique<CpuBackend>(n_threads, kv_cache_dtype);
}

namespace {
// Every sgemm runs single-threaded on a pool thread, over its own block of weight rows: OpenBLAS's own
// threads (OpenMP ones in the openmp build) would spin in barriers beside the pool. Its thread count is
// process-wide, and setting it frees per-thread buffers, so it is set once, before any backend computes.
void use_single_threaded_blas() {
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
}
// OpenBLAS's OpenMP build (Debian's 0.3.21) sizes each call by the calling thread's omp_get_max_threads()
// instead: a thread that has not said 1 runs its sgemm on an OpenMP team, and two such calls at once ran
// 4x slower than one alone. The setting is per thread and cheap, so each sgemm task makes it.
void single_threaded_blas_on_this_thread() { omp_set_num_threads(1); }
}  // namespace

CpuBackend::CpuBackend(int n_threads, DType kv_cache_dtype) : pool_(n_threads), kv_dtype_(kv_cache_dtype) {
    LAMINA_CHECK(kv_cache_dtype == DType::F32 || kv_cache_dtype == DType::F16, std::string(dtype_name(kv_cache_dtype)));
    use_single_threaded_blas();
}

void* CpuBackend::alloc(size_t bytes) {
    constexpr size_t kAlign = 64;
    void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    if (p == nullptr && bytes > 0) throw Error("cpu: out of memory allocating " + std::to_string(bytes >> 20) + " MiB");
    return p;
}
void CpuBackend::free(void* p) { std::free(p); }
void CpuBackend::to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::copy_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

namespace {
// Up to this many tokens, a weight row is streamed once per token from cache (decode is bandwidth
// bound: reading the weights once is the whole cost). Beyond it, sgemm's blocking wins.
constexpr int64_t kGemvMaxTokens = 4;
// A GEMV chunk reads at least this many weight bytes: claiming a chunk costs ~0.1 us, streaming 16 KiB
// ~1 us per core.
constexpr int64_t kGemvChunkBytes = 16 << 10;
// A GEMM chunk has at least this many weight rows: each sgemm call packs all of x again (n * k values
// for n * k * rows FMAs), which stays a few percent at 128 rows.
constexpr int64_t kGemmChunkRows = 128;
// f16/bf16 weight rows are widened to f32 this many at a time, into the thread's scratch, for sgemm.
constexpr int64_t kWidenRows = 128;
}  // namespace

// GEMV (n <= kGemvMaxTokens): the pool splits the weight rows; each row is read once for all n tokens.
// GEMM: the pool splits the weight rows into blocks; each block is one single-threaded sgemm
// out[:, block] = x @ w[block]^T, f16/bf16 rows widened to f32 kWidenRows at a time first.
void CpuBackend::matmul(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out) {
    LAMINA_CHECK(x.dtype == DType::F32 && out.dtype == DType::F32, "cpu activations are f32");
    LAMINA_CHECK(x.cols == w.cols && out.rows == x.rows && out.cols == w.rows,
                 "x " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + " w " + std::to_string(w.rows) + "x" +
                     std::to_string(w.cols));
    if (dtype_is_block(w.dtype)) {
        matmul_quantized(x, w, bias, out);
        return;
    }
    const int64_t n = x.rows, k = x.cols, m = w.rows;
    const size_t w_row_bytes = static_cast<size_t>(w.row_stride) * dtype_size(w.dtype);
    const auto* w_bytes = static_cast<const char*>(w.data);
    const float* b = bias != nullptr ? static_cast<const float*>(bias->data) : nullptr;
    if (n <= kGemvMaxTokens) {
        const cpu::DotFn dot = cpu::dot_for(w.dtype);
        const int64_t grain = std::max<int64_t>(1, kGemvChunkBytes / static_cast<int64_t>(k * dtype_size(w.dtype)));
        pool_.parallel_for(m, grain, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const void* wr = w_bytes + r * w_row_bytes;
                for (int64_t t = 0; t < n; ++t) out.row<float>(t)[r] = dot(x.row<float>(t), wr, k) + (b ? b[r] : 0.0f);
            }
        });
        return;
    }
    if (w.dtype != DType::F32 && weight_scratch_.size() < static_cast<size_t>(pool_.size() * kWidenRows * k))
        weight_scratch_.resize(static_cast<size_t>(pool_.size() * kWidenRows * k));
    auto sgemm = [&](int64_t r0, int64_t rows, const float* wf, int64_t ldw) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(rows),
                    static_cast<int>(k), 1.0f, x.row<float>(0), static_cast<int>(x.row_stride), wf,
                    static_cast<int>(ldw), 0.0f, out.row<float>(0) + r0, static_cast<int>(out.row_stride));
    };
    auto gemm_block = [&](int64_t r0, int64_t r1, int thread) {
        if (w.dtype == DType::F32) {
            sgemm(r0, r1 - r0, reinterpret_cast<const float*>(w_bytes + r0 * w_row_bytes), w.row_stride);
        } else {
            float* wf = weight_scratch_.data() + static_cast<size_t>(thread * kWidenRows * k);
            for (int64_t s0 = r0; s0 < r1; s0 += kWidenRows) {
                const int64_t rows = std::min(kWidenRows, r1 - s0);
                for (int64_t r = 0; r < rows; ++r) convert_to_f32(w.dtype, w_bytes + (s0 + r) * w_row_bytes, wf + r * k, k);
                sgemm(s0, rows, wf, k);
            }
        }
        if (b != nullptr)
            for (int64_t t = 0; t < n; ++t)
                for (int64_t r = r0; r < r1; ++r) out.row<float>(t)[r] += b[r];
    };
    // Blocks at fixed rows (multiples of kGemmChunkRows), whatever the thread count: sgemm rounds a row
    // the same way only within the same block shape, and results must not depend on --threads.
    const int64_t n_blocks = (m + kGemmChunkRows - 1) / kGemmChunkRows;
    pool_.parallel_for(n_blocks, 1, [&](int64_t b0, int64_t b1, int thread) {
        single_threaded_blas_on_this_thread();
        for (int64_t blk = b0; blk < b1; ++blk) gemm_block(blk * kGemmChunkRows, std::min(m, (blk + 1) * kGemmChunkRows), thread);
    });
}

// Block-format weights: x quantized to int8 blocks once (cpu/quant_dot.h), then the pool splits the weight
// rows. Within a chunk of rows, tokens go kMaxDotRows at a time and each weight block is decoded once for them;
// a chunk's weights (a few KB) and a tile's activations stay in L1 while the tile walks the chunk's rows.
void CpuBackend::matmul_quantized(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out) {
    const int64_t n = x.rows, k = x.cols, m = w.rows;
    LAMINA_CHECK(k % cpu::kActBlock == 0, "k " + std::to_string(k));
    const int64_t nb = k / cpu::kActBlock;
    if (act_scratch_.size() < static_cast<size_t>(n * nb)) act_scratch_.resize(static_cast<size_t>(n * nb));
    cpu::ActBlock* act = act_scratch_.data();
    auto quantize = [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) cpu::quantize_activations(x.row<float>(t), k, act + t * nb);
    };
    // A decode step's few rows take well under a microsecond: not worth waking the pool for.
    if (n <= cpu::kMaxDotRows) quantize(0, n);
    else pool_.parallel_for(n, std::max<int64_t>(1, 4096 / k), quantize);
    const cpu::QuantDotFn dot = cpu::quant_dot_for(w.dtype);
    const float* b = bias != nullptr ? static_cast<const float*>(bias->data) : nullptr;
    const int64_t grain = std::max<int64_t>(1, kGemvChunkBytes / static_cast<int64_t>(dtype_bytes(w.dtype, k)));
    pool_.parallel_for(m, grain, [&](int64_t r0, int64_t r1) {
        for (int64_t t0 = 0; t0 < n; t0 += cpu::kMaxDotRows) {
            const int tile = static_cast<int>(std::min<int64_t>(cpu::kMaxDotRows, n - t0));
            const cpu::ActBlock* xs[cpu::kMaxDotRows];
            const float* xf[cpu::kMaxDotRows];
            for (int t = 0; t < tile; ++t) xs[t] = act + (t0 + t) * nb, xf[t] = x.row<float>(t0 + t);
            float dots[cpu::kMaxDotRows];
            for (int64_t r = r0; r < r1; ++r) {
                dot(w.row<void>(r), xs, xf, k, tile, dots);
                for (int t = 0; t < tile; ++t) out.row<float>(t0 + t)[r] = dots[t] + (b ? b[r] : 0.0f);
            }
        }
    });
}

}  // namespace lamina
