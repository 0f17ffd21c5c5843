// The portable quantized kernels, and the choice of kernels for this CPU.
#define LAMINA_QDOT_NS portable
#include "backend/cpu/quant_kernels.inc"

#include "backend/cpu/dot.h"

namespace lamina::cpu {

namespace {
bool cpu_has_vnni() {
    static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
    return has;
}
}  // namespace

QuantDotFn quant_dot_portable(DType w) { return portable::kernel_for(w); }

QuantDotFn quant_dot_for(DType w) {
    if (cpu_has_vnni()) return quant_dot_vnni(w);
    if (cpu_has_avx2()) return quant_dot_avx2(w);
    return quant_dot_portable(w);
}

const char* quant_dot_isa() { return cpu_has_vnni() ? "avx512vnni" : cpu_has_avx2() ? "avx2" : "portable"; }

void quantize_activations(const float* x, int64_t k, ActBlock* out) {
    if (cpu_has_avx2()) quantize_activations_avx2(x, k, out);
    else portable::quantize_activations_portable(x, k, out);
}

}  // namespace lamina::cpu
