// Conversions between the engine dtypes read 16-bit values from wherever a file puts them: a tensor at
// an odd offset in a GGUF or safetensors file is a uint16_t array at an odd address. Issue 24's UBSan
// build reported misaligned loads there; these tests convert from and into odd addresses (UBSan flags a
// regression, every build checks the values).
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <vector>

#include "core/dtype.h"

namespace lamina {
namespace {

// Halves covering zero, subnormals, normals, the largest finite value and infinity (exact in f32).
const std::vector<float> kValues = {0.0f, -0.0f, 5.9604645e-8f, 6.1035156e-5f, 1.0f, -2.5f, 0.333251953125f, 65504.0f,
                                    -65504.0f, std::numeric_limits<float>::infinity()};

TEST(DtypeConvert, ReadsSixteenBitValuesAtAnOddAddress) {
    for (DType t : {DType::F16, DType::BF16}) {
        std::vector<uint16_t> aligned(kValues.size());
        for (size_t i = 0; i < kValues.size(); ++i)
            aligned[i] = t == DType::F16 ? f32_to_f16(kValues[i]) : f32_to_bf16(kValues[i]);
        std::vector<unsigned char> bytes(2 * aligned.size() + 1);
        std::memcpy(bytes.data() + 1, aligned.data(), 2 * aligned.size());  // starts at an odd address
        std::vector<float> out(kValues.size(), -1.0f);
        convert_to_f32(t, bytes.data() + 1, out.data(), out.size());
        for (size_t i = 0; i < kValues.size(); ++i) {
            const float want = t == DType::F16 ? f16_to_f32(aligned[i]) : bf16_to_f32(aligned[i]);
            EXPECT_EQ(std::memcmp(&out[i], &want, 4), 0) << dtype_name(t) << " element " << i << ": " << out[i];
        }
    }
}

TEST(DtypeConvert, WritesSixteenBitValuesAtAnOddAddress) {
    for (DType t : {DType::F16, DType::BF16}) {
        std::vector<unsigned char> bytes(2 * kValues.size() + 2, 0xAB);  // poisoned: unwritten bytes show
        convert_from_f32(t, kValues.data(), bytes.data() + 1, kValues.size());
        EXPECT_EQ(bytes.front(), 0xAB);
        EXPECT_EQ(bytes.back(), 0xAB);
        for (size_t i = 0; i < kValues.size(); ++i) {
            uint16_t got;
            std::memcpy(&got, bytes.data() + 1 + 2 * i, 2);
            EXPECT_EQ(got, t == DType::F16 ? f32_to_f16(kValues[i]) : f32_to_bf16(kValues[i]))
                << dtype_name(t) << " element " << i;
        }
    }
}

}  // namespace
}  // namespace lamina
