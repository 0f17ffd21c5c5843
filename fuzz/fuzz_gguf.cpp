// GGUF reader: header, metadata, tensor table, the model config and tokenizer built from them, and the
// dequantization of every tensor (each up to kMaxReadElements). Input: one .gguf file.
#include <vector>

#include "fuzz_util.h"
#include "io/gguf.h"
#include "model/model_spec.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto file = fuzz::write_file(fuzz::fresh_dir("gguf") / "model.gguf",
                                       {reinterpret_cast<const char*>(data), size});
    fuzz::expect_clean([&] {
        const GgufFile gguf(file);
        for (const auto& t : gguf.tensors()) {
            if (!ggml_type_supported(t.type) || t.n_elements() > fuzz::kMaxReadElements) continue;
            const auto bytes = gguf.tensor_data(t);
            std::vector<float> out(t.n_elements());
            dequantize(t.type, bytes.data(), out.data(), t.n_elements());
        }
    });
    fuzz::expect_clean([&] {
        const ModelSpec spec = load_gguf_spec(file);
        for (const auto& [name, w] : spec.weights) {
            if (w.n_elements() > fuzz::kMaxReadElements) continue;
            std::vector<float> out(static_cast<size_t>(w.n_elements()));
            w.read(out.data());
        }
        const Tokenizer tok(spec.vocab);
        const auto ids = tok.encode("Hello world, <s> 123 héllo\n\t", true, true);
        tok.decode(ids);
    });
    return 0;
}
