// quant_kernels.inc for AVX-512 VNNI (vpdpbusd on 256-bit vectors: AVX512VL; CMakeLists.txt compiles this file
// with those instructions).
#define LAMINA_QDOT_NS vnni
#include "backend/cpu/quant_kernels.inc"

namespace lamina::cpu {
QuantDotFn quant_dot_vnni(DType w) { return vnni::kernel_for(w); }
}  // namespace lamina::cpu
