// Lamina's engine directory as the runtime opens it: config.json (model config, dtype, limits, tensor
// table), weights.bin and tokenizer.lamina.json; an engine that opens generates two tokens on the CPU, so
// a table that resolves but describes a different model shows up as a crash rather than passing.
// Input: config.json, weights.bin[, tokenizer.lamina.json].
#include "backend/backend.h"
#include "fuzz_util.h"
#include "runtime/engine.h"
#include "runtime/generator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto parts = fuzz::split_parts(data, size, 3);
    static const auto dir = fuzz::input_dir("engine");
    fuzz::write_input_files(dir, {{"config.json", parts[0]},
                                  {"weights.bin", fuzz::part(parts, 1)},
                                  {"tokenizer.lamina.json", fuzz::part(parts, 2)}});
    fuzz::expect_clean([&] {
        Engine engine(dir);
        // Only engines of a fuzz seed's size run: a huge but consistent table costs time, not coverage.
        if (engine.config().n_embd > 64 || engine.config().n_layer > 2 || engine.config().n_vocab > 4096) return;
        std::vector<int32_t> prompt = {0, 1};
        if (engine.has_tokenizer()) prompt = engine.tokenizer().encode("Hello", true, false);
        if (prompt.empty()) prompt = {0};
        static const auto backend = make_cpu_backend(1);
        Generator gen(engine, *backend, 1);
        GenerationParams p;
        p.max_new_tokens = 2;
        p.sampling.temperature = 0.0f;
        gen.generate({prompt}, p);
    });
    return 0;
}
