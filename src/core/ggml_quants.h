// TEMPORARY (replaced by the wq branch's block-format library on merge).
#pragma once
#include <cstdint>
namespace lamina {
void dequantize_row(uint32_t type, const void* blocks, float* dst, int64_t n);
void quantize_row(uint32_t type, const float* src, void* blocks, int64_t n);
}  // namespace lamina
