// GGML tensor types: the codes GGUF files store, their names and block geometry, and which of them lamina
// computes with. Core owns these so that io/ (reading GGUF), build/ (writing engines) and the backends
// (computing on blocks) agree without core depending on io.
#pragma once

#include <cstdint>
#include <string>

namespace lamina {

// The GGML types lamina reads or writes (numbering from ggml.h and the GGUF spec). Every other code that
// ggml defines still has a name and a block size (ggml_type_name, ggml_type_traits), so a file holding one
// is read and then refused naming the type.
enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

// "Q4_K", "IQ2_XS", …; "type#N" for a code ggml does not define.
std::string ggml_type_name(uint32_t type);

// Elements and bytes of one block ({1, element size} for the scalar types), for every type ggml defines;
// throws lamina::Error for a code it does not.
struct GgmlTypeTraits {
    uint64_t block_elems;
    uint64_t block_bytes;
};
GgmlTypeTraits ggml_type_traits(uint32_t type);

// True for the types dequantize_row and quantize_row handle (core/ggml_quants.h): F32, F16, BF16, Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool ggml_type_supported(uint32_t type);
// Those names, comma-separated, for error messages.
std::string ggml_supported_type_names();

}  // namespace lamina
