// The CUDA backend (sm_90), behind the same op interface as the CPU backend. This header is plain
// C++: nothing outside src/backend/cuda sees a CUDA type.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace lamina {

// Number of CUDA devices visible; 0 when there is no driver or no GPU.
int cuda_device_count();
// A backend on GPU `device` whose activations and KV cache are `activation_dtype` (the engine's dtype;
// f16 or bf16 — or f32 for testing against the CPU at full precision). It makes `device` current on
// the calling thread: use a backend from the thread that made it (tensor-parallel ranks each have one).
std::unique_ptr<Backend> make_cuda_backend(DType activation_dtype, int device = 0);

}  // namespace lamina

namespace lamina {

// RMSNorm with int8 output, as the seed's SmoothQuant kernel: q = round(y * s) clamped to ±127 with
// y = rmsnorm(x) * w rounded to the activation dtype. Per-token (per_token_scales != nullptr):
// s = 127 / max|y| of the row, and max|y| / 127 is written to per_token_scales[row]. Per-tensor:
// s = tensor_scale. `backend` must be a CUDA backend; x, w, out and scales are in device memory.
void cuda_rms_norm_quant(Backend& backend, const TensorView& x, const TensorView& w, float eps, int8_t* out,
                         float* per_token_scales, float tensor_scale);

}  // namespace lamina
