#include "core/ggml_type.h"

#include <array>
#include <string_view>

#include "core/error.h"

namespace lamina {

namespace {

struct TypeInfo {
    uint32_t code;
    std::string_view name;
    uint64_t block_elems;
    uint64_t block_bytes;
    bool supported;  // dequantize_row / quantize_row handle it
};

// Every type ggml.h defines (codes 4, 5 and 31-33, 36-38 were removed from ggml and are unknown here). Block
// bytes are sizeof(block_*) in ggml-common.h; tests/data/quant/manifest.json records ggml's own
// ggml_blck_size / ggml_type_size for each code and the tests compare.
constexpr std::array kTypes = {
    TypeInfo{0, "F32", 1, 4, true},          TypeInfo{1, "F16", 1, 2, true},
    TypeInfo{2, "Q4_0", 32, 18, true},       TypeInfo{3, "Q4_1", 32, 20, true},
    TypeInfo{6, "Q5_0", 32, 22, true},       TypeInfo{7, "Q5_1", 32, 24, true},
    TypeInfo{8, "Q8_0", 32, 34, true},       TypeInfo{9, "Q8_1", 32, 36, false},
    TypeInfo{10, "Q2_K", 256, 84, true},     TypeInfo{11, "Q3_K", 256, 110, true},
    TypeInfo{12, "Q4_K", 256, 144, true},    TypeInfo{13, "Q5_K", 256, 176, true},
    TypeInfo{14, "Q6_K", 256, 210, true},    TypeInfo{15, "Q8_K", 256, 292, false},
    TypeInfo{16, "IQ2_XXS", 256, 66, false}, TypeInfo{17, "IQ2_XS", 256, 74, false},
    TypeInfo{18, "IQ3_XXS", 256, 98, false}, TypeInfo{19, "IQ1_S", 256, 50, false},
    TypeInfo{20, "IQ4_NL", 32, 18, false},   TypeInfo{21, "IQ3_S", 256, 110, false},
    TypeInfo{22, "IQ2_S", 256, 82, false},   TypeInfo{23, "IQ4_XS", 256, 136, false},
    TypeInfo{24, "I8", 1, 1, false},         TypeInfo{25, "I16", 1, 2, false},
    TypeInfo{26, "I32", 1, 4, false},        TypeInfo{27, "I64", 1, 8, false},
    TypeInfo{28, "F64", 1, 8, false},        TypeInfo{29, "IQ1_M", 256, 56, false},
    TypeInfo{30, "BF16", 1, 2, true},        TypeInfo{34, "TQ1_0", 256, 54, false},
    TypeInfo{35, "TQ2_0", 256, 66, false},   TypeInfo{39, "MXFP4", 32, 17, false},
    TypeInfo{40, "NVFP4", 64, 36, false},    TypeInfo{41, "Q1_0", 128, 18, false},
    TypeInfo{42, "Q2_0", 64, 18, false},
};

const TypeInfo* find_type(uint32_t code) {
    for (const TypeInfo& t : kTypes)
        if (t.code == code) return &t;
    return nullptr;
}

}  // namespace

std::string ggml_type_name(uint32_t type) {
    const TypeInfo* t = find_type(type);
    return t ? std::string(t->name) : "type#" + std::to_string(type);
}

GgmlTypeTraits ggml_type_traits(uint32_t type) {
    const TypeInfo* t = find_type(type);
    if (!t) throw Error("unknown GGML tensor type " + std::to_string(type));
    return {t->block_elems, t->block_bytes};
}

bool ggml_type_supported(uint32_t type) {
    const TypeInfo* t = find_type(type);
    return t && t->supported;
}

std::string ggml_supported_type_names() {
    std::string names;
    for (const TypeInfo& t : kTypes) {
        if (!t.supported) continue;
        if (!names.empty()) names += ", ";
        names += t.name;
    }
    return names;
}

}  // namespace lamina
