// RMSNorm on the CPU: y = x * rsqrt(mean(x^2) + eps) * w, per row, accumulated in double so the
// reference is at least as accurate as any kernel compared against it. The pool splits rows (a decode
// step's single row runs inline).
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace lamina {

namespace {
void rms_norm_row(const float* x, const float* w, float eps, int64_t n, float* y) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
}
// Rows per chunk: a row of n_embd 576 is ~0.5 us.
constexpr int64_t kRowGrain = 4;
}  // namespace

void CpuBackend::rms_norm(const TensorView& x, const TensorView& w, float eps, TensorView out) {
    LAMINA_CHECK(x.cols == w.cols * w.rows && out.rows == x.rows && out.cols == x.cols);
    LAMINA_CHECK(w.dtype == DType::F32 && x.dtype == DType::F32 && out.dtype == DType::F32);
    pool_.parallel_for(x.rows, kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            rms_norm_row(x.row<float>(r), static_cast<const float*>(w.data), eps, x.cols, out.row<float>(r));
    });
}

void CpuBackend::rms_norm_fused_add(TensorView residual, const TensorView& x, const TensorView& w, float eps,
                                    TensorView out) {
    LAMINA_CHECK(residual.rows == x.rows && residual.cols == x.cols && out.rows == x.rows && out.cols == x.cols);
    pool_.parallel_for(x.rows, kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            float* res = residual.row<float>(r);
            const float* xr = x.row<float>(r);
            for (int64_t i = 0; i < x.cols; ++i) res[i] += xr[i];
            rms_norm_row(res, static_cast<const float*>(w.data), eps, x.cols, out.row<float>(r));
        }
    });
}

// Each step a separate pass over memory, as the seed's unfused Python composition.
void CpuBackend::rms_norm_unfused(const TensorView& x, const TensorView& w, float eps, TensorView out) {
    const int64_t n = x.rows, d = x.cols;
    norm_scratch_.resize(static_cast<size_t>(n * d + n));
    float* sq = norm_scratch_.data();
    float* rms = sq + n * d;
    for (int64_t r = 0; r < n; ++r)  // square
        for (int64_t i = 0; i < d; ++i) sq[r * d + i] = x.row<float>(r)[i] * x.row<float>(r)[i];
    for (int64_t r = 0; r < n; ++r) {  // mean
        double s = 0.0;
        for (int64_t i = 0; i < d; ++i) s += sq[r * d + i];
        rms[r] = static_cast<float>(s / static_cast<double>(d));
    }
    for (int64_t r = 0; r < n; ++r) rms[r] += eps;            // add eps
    for (int64_t r = 0; r < n; ++r) rms[r] = std::sqrt(rms[r]);  // sqrt
    for (int64_t r = 0; r < n; ++r)                           // divide
        for (int64_t i = 0; i < d; ++i) sq[r * d + i] = x.row<float>(r)[i] / rms[r];
    const auto* wf = static_cast<const float*>(w.data);
    for (int64_t r = 0; r < n; ++r)  // multiply by the weight
        for (int64_t i = 0; i < d; ++i) out.row<float>(r)[i] = wf[i] * sq[r * d + i];
}

// int8 output: the rms_norm row, then each value times the row's scale, rounded to nearest even and clamped.
void CpuBackend::rms_norm_quant_per_token(const TensorView& x, const TensorView& w, float eps, int8_t* out,
                                          float* scales) {
    rms_norm_quant(x, w, eps, 0.0f, out, scales);
}

void CpuBackend::rms_norm_quant_per_tensor(const TensorView& x, const TensorView& w, float eps, float scale,
                                           int8_t* out) {
    rms_norm_quant(x, w, eps, scale, out, nullptr);
}

void CpuBackend::rms_norm_quant(const TensorView& x, const TensorView& w, float eps, float tensor_scale, int8_t* out,
                                float* scales) {
    LAMINA_CHECK(x.cols == w.cols * w.rows && w.dtype == DType::F32 && x.dtype == DType::F32);
    norm_scratch_.resize(std::max(norm_scratch_.size(), static_cast<size_t>(pool_.size() * x.cols)));
    pool_.parallel_for(x.rows, kRowGrain, [&](int64_t r0, int64_t r1, int thread) {
        float* y = norm_scratch_.data() + static_cast<size_t>(thread * x.cols);
        for (int64_t r = r0; r < r1; ++r) {
            rms_norm_row(x.row<float>(r), static_cast<const float*>(w.data), eps, x.cols, y);
            float s = tensor_scale;
            if (scales != nullptr) {
                float amax = 0.0f;
                for (int64_t i = 0; i < x.cols; ++i) amax = std::max(amax, std::fabs(y[i]));
                s = amax > 0.0f ? 127.0f / amax : 0.0f;
                scales[r] = amax > 0.0f ? amax / 127.0f : 0.0f;
            }
            int8_t* q = out + r * x.cols;
            for (int64_t i = 0; i < x.cols; ++i)
                q[i] = static_cast<int8_t>(std::fmin(127.0f, std::fmax(-127.0f, std::nearbyint(y[i] * s))));
        }
    });
}

}  // namespace lamina
