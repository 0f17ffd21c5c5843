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
