#include "backend/cpu/dot.h"

#include <cpuid.h>
#include <immintrin.h>

#include "core/env.h"
#include "core/error.h"

namespace lamina::cpu {

namespace {

float dot_f32_portable(const float* x, const void* w, int64_t k) {
    const auto* wf = static_cast<const float*>(w);
    float s = 0.0f;
    for (int64_t i = 0; i < k; ++i) s += x[i] * wf[i];
    return s;
}
float dot_f16_portable(const float* x, const void* w, int64_t k) {
    const auto* wh = static_cast<const uint16_t*>(w);
    float s = 0.0f;
    for (int64_t i = 0; i < k; ++i) s += x[i] * f16_to_f32(wh[i]);
    return s;
}
float dot_bf16_portable(const float* x, const void* w, int64_t k) {
    const auto* wb = static_cast<const uint16_t*>(w);
    float s = 0.0f;
    for (int64_t i = 0; i < k; ++i) s += x[i] * bf16_to_f32(wb[i]);
    return s;
}

#define LAMINA_AVX2 __attribute__((target("avx2,fma,f16c")))

LAMINA_AVX2 inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

LAMINA_AVX2 inline __m256 load_f32(const void* w, int64_t i) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + i);
}
LAMINA_AVX2 inline __m256 load_f16(const void* w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
}
LAMINA_AVX2 inline __m256 load_bf16(const void* w, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Four independent accumulators of 8 lanes: 32 elements per iteration keep both FMA ports busy.
template <__m256 (*Load)(const void*, int64_t), float (*Tail)(const float*, const void*, int64_t), int ElemBytes>
LAMINA_AVX2 float dot_avx2(const float* x, const void* w, int64_t k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), Load(w, i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), Load(w, i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), Load(w, i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), Load(w, i + 24), a3);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), Load(w, i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    if (i < k) s += Tail(x + i, static_cast<const char*>(w) + i * ElemBytes, k - i);
    return s;
}

void axpy_f32_portable(float a, const void* x, float* y, int64_t n) {
    const auto* xf = static_cast<const float*>(x);
    for (int64_t i = 0; i < n; ++i) y[i] += a * xf[i];
}
void axpy_f16_portable(float a, const void* x, float* y, int64_t n) {
    const auto* xh = static_cast<const uint16_t*>(x);
    for (int64_t i = 0; i < n; ++i) y[i] += a * f16_to_f32(xh[i]);
}
template <__m256 (*Load)(const void*, int64_t), void (*Tail)(float, const void*, float*, int64_t), int ElemBytes>
LAMINA_AVX2 void axpy_avx2(float a, const void* x, float* y, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, Load(x, i), _mm256_loadu_ps(y + i)));
    if (i < n) Tail(a, static_cast<const char*>(x) + i * ElemBytes, y + i, n - i);
}

bool simd_disabled() {
    return env_switch("LAMINA_NO_SIMD", false);
}

// CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c").
bool cpu_has_f16c() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

}  // namespace

bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c() &&
                            !simd_disabled();
    return has;
}

DotFn dot_portable(DType t) {
    switch (t) {
        case DType::F32: return dot_f32_portable;
        case DType::F16: return dot_f16_portable;
        case DType::BF16: return dot_bf16_portable;
        default: return nullptr;  // block types: quant_dot.h
    }
}

AxpyFn axpy_for(DType t) {
    LAMINA_CHECK(t == DType::F32 || t == DType::F16, std::string(dtype_name(t)));
    if (t == DType::F16) return cpu_has_avx2() ? axpy_avx2<load_f16, axpy_f16_portable, 2> : axpy_f16_portable;
    return cpu_has_avx2() ? axpy_avx2<load_f32, axpy_f32_portable, 4> : axpy_f32_portable;
}

DotFn dot_for(DType t) {
    if (!cpu_has_avx2()) return dot_portable(t);
    switch (t) {
        case DType::F32: return dot_avx2<load_f32, dot_f32_portable, 4>;
        case DType::F16: return dot_avx2<load_f16, dot_f16_portable, 2>;
        case DType::BF16: return dot_avx2<load_bf16, dot_bf16_portable, 2>;
        default: return nullptr;  // block types: quant_dot.h
    }
}

}  // namespace lamina::cpu
