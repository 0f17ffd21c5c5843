// Helpers for the CUDA op tests: device matrices uploaded from / downloaded to f32 host vectors,
// inputs rounded to the dtype, and the tolerance of a half-precision result.
#pragma once

#ifdef LAMINA_HAS_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../test_util.h"
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/dtype.h"
#include "core/error.h"

namespace lamina::test {

// name=value in the environment for its lifetime (value nullptr: unset); then what was there before (a run of the
// whole suite under a switch, bench/gpu_bench.sh's AB_TEST_ENV, keeps it for the tests after).
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value) setenv(name, value, 1);
        else unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_) setenv(name_.c_str(), old_->c_str(), 1);
        else unsetenv(name_.c_str());
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    std::string name_;
    std::optional<std::string> old_;
};

// A CUDA backend made with name=value in the environment must refuse it: an Error whose message holds `needle`
// (a development switch with a value it does not know is an error, not a silent default).
inline void expect_backend_refuses_env(const char* name, const char* value, const std::string& needle) {
    const ScopedEnv env(name, value);
    const std::string error = error_of([] { make_cuda_backend(DType::F16); });
    EXPECT_FALSE(error.empty()) << name << "=" << value << " was accepted";
    EXPECT_NE(error.find(needle), std::string::npos) << error;
}

// Values as the dtype holds them (so CPU and GPU start from identical inputs).
inline std::vector<float> rounded(const std::vector<float>& v, DType t) {
    std::vector<uint16_t> h(v.size());
    std::vector<float> out(v.size());
    if (t == DType::F32) return v;
    convert_from_f32(t, v.data(), h.data(), v.size());
    convert_to_f32(t, h.data(), out.data(), v.size());
    return out;
}

// A device buffer holding a matrix in dtype t, uploaded from / downloaded to f32 host vectors.
struct DeviceMatrix {
    Backend& be;
    DType dtype;
    int64_t rows, cols, stride;
    void* data;
    DeviceMatrix(Backend& b, DType t, int64_t r, int64_t c, int64_t s = 0)
        : be(b), dtype(t), rows(r), cols(c), stride(s ? s : c), data(b.alloc(static_cast<size_t>(r * (s ? s : c)) * dtype_size(t))) {
        poison();
    }
    ~DeviceMatrix() { be.free(data); }
    void poison() { upload_padded(std::vector<float>(static_cast<size_t>(rows * stride), NAN)); }
    void upload_padded(const std::vector<float>& v) {
        std::vector<char> buf(v.size() * dtype_size(dtype));
        convert_from_f32(dtype, v.data(), buf.data(), v.size());
        be.to_device(data, buf.data(), buf.size());
    }
    void upload(const std::vector<float>& v) {  // v is rows x cols, packed
        std::vector<float> padded(static_cast<size_t>(rows * stride), 0.0f);
        for (int64_t r = 0; r < rows; ++r)
            std::copy(v.begin() + r * cols, v.begin() + (r + 1) * cols, padded.begin() + r * stride);
        upload_padded(padded);
    }
    std::vector<float> download() const {
        std::vector<char> buf(static_cast<size_t>(rows * stride) * dtype_size(dtype));
        be.to_host(buf.data(), data, buf.size());
        std::vector<float> all(static_cast<size_t>(rows * stride)), out(static_cast<size_t>(rows * cols));
        convert_to_f32(dtype, buf.data(), all.data(), all.size());
        for (int64_t r = 0; r < rows; ++r) std::copy(all.begin() + r * stride, all.begin() + r * stride + cols, out.begin() + r * cols);
        return out;
    }
    TensorView view() const { return TensorView{data, dtype, rows, cols, stride}; }
};

// Half-precision outputs carry one rounding of the result: |err| <= 2^-8 relative for bf16 (2^-11 for
// f16) plus accumulated-order noise; 1e-2 relative (+ a small absolute floor) covers both.
inline double tolerance(DType t) { return t == DType::BF16 ? 1.6e-2 : t == DType::F16 ? 4e-3 : 1e-5; }

// |got - want| <= tol * (|want| + floor). Sums with cancellation (matmul outputs, attention averages)
// carry rounding errors at the scale of their terms, not of the result: those tests pass the natural
// scale of the terms as the floor (the RMS of the outputs, or of the values being averaged).
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, DType t, const std::string& what,
                  double floor = 0.05) {
    ASSERT_EQ(got.size(), want.size());
    const double tol = tolerance(t);
    for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_FALSE(std::isnan(got[i])) << what << ": element " << i << " unwritten or NaN";
        ASSERT_NEAR(got[i], want[i], tol * (std::fabs(want[i]) + floor)) << what << ": element " << i;
    }
}

inline double rms(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return std::sqrt(s / static_cast<double>(v.size()));
}

// The RoPE table as the model builds it: row p = [cos(p f_i) for i < head_dim/2, sin(p f_i) ...],
// f_i = 10000^(-2i/head_dim).
inline std::vector<float> rope_table(int64_t n_ctx, int64_t head_dim) {
    std::vector<float> table(static_cast<size_t>(n_ctx * head_dim));
    for (int64_t p = 0; p < n_ctx; ++p)
        for (int64_t i = 0; i < head_dim / 2; ++i) {
            const float a = static_cast<float>(p) * std::pow(10000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(head_dim));
            table[p * head_dim + i] = std::cos(a);
            table[p * head_dim + head_dim / 2 + i] = std::sin(a);
        }
    return table;
}

}  // namespace lamina::test

#endif  // LAMINA_HAS_CUDA
