// Hugging Face checkpoint: config.json, safetensors files and the sharded index, through load_hf_spec
// (config, tensor table, shape checks) and the reading of every weight (each up to kMaxReadElements).
// Input: config.json, then model.safetensors; or config.json, shard 1, index.json[, shard 2] — the
// index names the shards "model-00001-of-00002.safetensors" and "model-00002-of-00002.safetensors".
#include "fuzz_util.h"
#include "model/model_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto parts = fuzz::split_parts(data, size, 4);
    static const auto dir = fuzz::input_dir("hf");
    const bool sharded = parts.size() > 2;
    fuzz::write_input_files(dir, {{"config.json", parts[0]},
                                  {"model.safetensors", sharded ? std::nullopt : fuzz::part(parts, 1)},
                                  {"model-00001-of-00002.safetensors", sharded ? fuzz::part(parts, 1) : std::nullopt},
                                  {"model.safetensors.index.json", fuzz::part(parts, 2)},
                                  {"model-00002-of-00002.safetensors", fuzz::part(parts, 3)}});
    fuzz::expect_clean([&] {
        const ModelSpec spec = load_hf_spec(dir, /*require_tokenizer=*/false);
        for (const auto& [name, w] : spec.weights) {
            if (w.n_elements() > fuzz::kMaxReadElements) continue;
            w.read(fuzz::float_buffer(w.n_elements()).get());
        }
    });
    return 0;
}
