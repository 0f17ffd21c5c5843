// Embedding gather, SwiGLU, residual add and row gather on the CPU.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace lamina {

void CpuBackend::embedding(const TensorView& table, const StepTokens& tok, TensorView out) {
    LAMINA_CHECK(out.cols == table.cols && out.rows == tok.n_tokens);
    for (int64_t t = 0; t < tok.n_tokens; ++t) {
        const int32_t id = tok.ids[t];
        LAMINA_CHECK(id >= 0 && id < table.rows, "token id " + std::to_string(id));
        convert_to_f32(table.dtype, table.row<char>(id), out.row<float>(t), table.cols);
    }
}

void CpuBackend::swiglu(const TensorView& gate_up, TensorView out) {
    const int64_t n_ff = out.cols;
    LAMINA_CHECK(gate_up.cols == 2 * n_ff && gate_up.rows == out.rows);
    constexpr int64_t kRowGrain = 2;  // a row of n_ff 1536 is ~3 us (one exp per element)
    pool_.parallel_for(out.rows, kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* g = gate_up.row<float>(r);
            const float* u = g + n_ff;
            float* o = out.row<float>(r);
            for (int64_t i = 0; i < n_ff; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        }
    });
}

void CpuBackend::add(TensorView acc, const TensorView& x) {
    LAMINA_CHECK(acc.rows == x.rows && acc.cols == x.cols);
    for (int64_t r = 0; r < acc.rows; ++r) {
        float* a = acc.row<float>(r);
        const float* b = x.row<float>(r);
        for (int64_t i = 0; i < acc.cols; ++i) a[i] += b[i];
    }
}

void CpuBackend::gather_rows(const TensorView& x, const int32_t* rows, int64_t n, TensorView out) {
    LAMINA_CHECK(out.rows == n && out.cols == x.cols);
    for (int64_t i = 0; i < n; ++i) {
        LAMINA_CHECK(rows[i] >= 0 && rows[i] < x.rows);
        std::memcpy(out.row<float>(i), x.row<float>(rows[i]), static_cast<size_t>(x.cols) * sizeof(float));
    }
}

void CpuBackend::argmax_rows(const TensorView& logits, int32_t* ids) {
    for (int64_t r = 0; r < logits.rows; ++r) {
        const float* row = logits.row<float>(r);
        ids[r] = static_cast<int32_t>(std::max_element(row, row + logits.cols) - row);
    }
}

}  // namespace lamina
