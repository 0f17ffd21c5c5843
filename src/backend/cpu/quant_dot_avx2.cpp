// quant_kernels.inc for AVX2 + FMA + F16C (CMakeLists.txt compiles this file with those instructions).
#define LAMINA_QDOT_NS avx2
#include "backend/cpu/quant_kernels.inc"

namespace lamina::cpu {
QuantDotFn quant_dot_avx2(DType w) { return avx2::kernel_for(w); }
void quantize_activations_avx2(const float* x, int64_t k, ActBlock* out) { avx2::quantize_activations_simd(x, k, out); }
}  // namespace lamina::cpu
