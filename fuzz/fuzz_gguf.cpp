// GGUF reader: header, metadata, tensor table, the model config and tokenizer built from them, and the
// dequantization of every tensor (each up to kMaxReadElements). Input: one .gguf file.
#include <memory>

#include "fuzz_util.h"
#include "io/gguf.h"
#include "model/model_spec.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    static const auto dir = fuzz::input_dir("gguf");
    const auto file = fuzz::write_file(dir / "model.gguf", {reinterpret_cast<const char*>(data), size});
    // Parsed once, for the tensor reads and the model loader both (load_gguf_spec(path) parses the same way).
    std::shared_ptr<const GgufFile> gguf;
    fuzz::expect_clean([&] { gguf = std::make_shared<const GgufFile>(file); });
    if (!gguf) return 0;
    fuzz::expect_clean([&] {
        for (const auto& t : gguf->tensors()) {
            if (!ggml_type_supported(t.type) || t.n_elements() > fuzz::kMaxReadElements) continue;
            const auto bytes = gguf->tensor_data(t);
            const auto out = fuzz::float_buffer(static_cast<int64_t>(t.n_elements()));
            dequantize(t.type, bytes.data(), out.get(), t.n_elements());
        }
    });
    fuzz::expect_clean([&] {
        const ModelSpec spec = load_gguf_spec(gguf);
        for (const auto& [name, w] : spec.weights) {
            if (w.n_elements() > fuzz::kMaxReadElements) continue;
            w.read(fuzz::float_buffer(w.n_elements()).get());
        }
        const Tokenizer tok(spec.vocab);
        const auto ids = tok.encode("Hello world, <s> 123 héllo\n\t", true, true);
        tok.decode(ids);
    });
    return 0;
}
