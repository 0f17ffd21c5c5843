// Marks a small inline function as callable from CUDA kernels as well as host code (a no-op outside nvcc),
// so that a formula shared by the CPU and CUDA backends is written once.
#pragma once

#ifdef __CUDACC__
#define LAMINA_HOST_DEVICE __host__ __device__
#else
#define LAMINA_HOST_DEVICE
#endif
