#include "backend/backend.h"

#include "core/error.h"

namespace lamina {

namespace {
[[noreturn]] void no_fused_decode(const Backend& b) {
    throw Error("the " + b.name() + " backend has no fused decode ops (its fused_decode_mode() is None)");
}
}  // namespace

void Backend::decode_qkv(const TensorView&, const TensorView&, float, const TensorView&, const TensorView*,
                         const StepTokens&, const TensorView&, const AttentionShape&, int64_t, KvCache&, TensorView) {
    no_fused_decode(*this);
}
void Backend::decode_matmul_add(const TensorView&, const TensorView&, const TensorView*, TensorView) {
    no_fused_decode(*this);
}
void Backend::decode_gate_up(const TensorView&, const TensorView&, float, const TensorView&, const TensorView*,
                             TensorView) {
    no_fused_decode(*this);
}
void Backend::decode_norm_matmul(const TensorView&, const int32_t*, const TensorView&, float, const TensorView&,
                                 TensorView) {
    no_fused_decode(*this);
}

}  // namespace lamina
