// Dot products of an f32 activation row with a weight row of any engine dtype. The AVX2/FMA/F16C
// versions are chosen at run time when the CPU has them; the portable loops are the fallback and the
// reference the vector versions are tested against.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace lamina::cpu {

using DotFn = float (*)(const float* x, const void* w, int64_t k);

// The fastest dot for this dtype on this CPU.
DotFn dot_for(DType w_dtype);
// The portable loop (also used when LAMINA_NO_SIMD=1 is set in the environment).
DotFn dot_portable(DType w_dtype);
bool cpu_has_avx2();

// y[i] += a * x[i] for i < n, x of dtype f32 or f16 (attention's weighted sum of V rows).
using AxpyFn = void (*)(float a, const void* x, float* y, int64_t n);
AxpyFn axpy_for(DType x_dtype);

}  // namespace lamina::cpu
