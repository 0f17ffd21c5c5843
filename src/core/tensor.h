// A tensor view: pointer, dtype, shape (row-major, up to 2 dims for weights and activations) and
// the row stride in elements. Views never own memory; the backend or the mapped engine file does.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace lamina {

struct TensorView {
    void* data = nullptr;
    DType dtype = DType::F32;
    int64_t rows = 0;        // 1 for vectors
    int64_t cols = 0;        // contiguous dimension
    int64_t row_stride = 0;  // elements between rows (== cols when contiguous; whole blocks for a block type)

    bool empty() const { return data == nullptr; }
    int64_t n_elements() const { return rows * cols; }
    template <typename T>
    T* row(int64_t r) const {
        return reinterpret_cast<T*>(static_cast<char*>(data) + dtype_bytes(dtype, r * row_stride));
    }
};

// The first `rows` rows of v (a step's tokens in a buffer sized for the largest step).
inline TensorView rows_of(const TensorView& v, int64_t rows) {
    TensorView r = v;
    r.rows = rows;
    return r;
}

inline TensorView make_view(void* data, DType dtype, int64_t rows, int64_t cols) {
    return TensorView{data, dtype, rows, cols, cols};
}
inline TensorView make_view(const void* data, DType dtype, int64_t rows, int64_t cols) {
    return TensorView{const_cast<void*>(data), dtype, rows, cols, cols};
}

}  // namespace lamina
