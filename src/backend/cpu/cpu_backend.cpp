#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cpu/dot.h"
#include "core/error.h"

namespace lamina {

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

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
// Weight rows widened to f32 per sgemm call when the weights are f16/bf16.
constexpr int64_t kChunkRows = 256;
}  // namespace

void CpuBackend::matmul(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out) {
    LAMINA_CHECK(x.dtype == DType::F32 && out.dtype == DType::F32, "cpu activations are f32");
    LAMINA_CHECK(x.cols == w.cols && out.rows == x.rows && out.cols == w.rows,
                 "x " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + " w " + std::to_string(w.rows) + "x" +
                     std::to_string(w.cols));
    const int64_t n = x.rows, k = x.cols, m = w.rows;
    const size_t w_row_bytes = static_cast<size_t>(w.row_stride) * dtype_size(w.dtype);
    const auto* w_bytes = static_cast<const char*>(w.data);
    if (n <= kGemvMaxTokens) {
        const cpu::DotFn dot = cpu::dot_for(w.dtype);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < m; ++r) {
            const void* wr = w_bytes + r * w_row_bytes;
            for (int64_t t = 0; t < n; ++t) out.row<float>(t)[r] = dot(x.row<float>(t), wr, k);
        }
    } else if (w.dtype == DType::F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(m),
                    static_cast<int>(k), 1.0f, x.row<float>(0), static_cast<int>(x.row_stride),
                    static_cast<const float*>(w.data), static_cast<int>(w.row_stride), 0.0f, out.row<float>(0),
                    static_cast<int>(out.row_stride));
    } else {
        if (weight_chunk_.size() < static_cast<size_t>(kChunkRows * k)) weight_chunk_.resize(kChunkRows * k);
        for (int64_t r0 = 0; r0 < m; r0 += kChunkRows) {
            const int64_t rows = std::min(kChunkRows, m - r0);
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; ++r)
                convert_to_f32(w.dtype, w_bytes + (r0 + r) * w_row_bytes, weight_chunk_.data() + r * k, k);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(rows),
                        static_cast<int>(k), 1.0f, x.row<float>(0), static_cast<int>(x.row_stride),
                        weight_chunk_.data(), static_cast<int>(k), 0.0f, out.row<float>(0) + r0,
                        static_cast<int>(out.row_stride));
        }
    }
    if (bias != nullptr) {
        const auto* b = static_cast<const float*>(bias->data);
        for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < m; ++r) out.row<float>(t)[r] += b[r];
    }
}

}  // namespace lamina
