// Hugging Face checkpoint: config.json, safetensors files and the sharded index, through load_hf_spec
// (config, tensor table, shape checks) and the reading of every weight (each up to kMaxReadElements).
// Input: config.json, then model.safetensors; or config.json, shard 1, index.json[, shard 2] — the
// index names the shards "model-00001-of-00002.safetensors" and "model-00002-of-00002.safetensors".
#include <vector>

#include "fuzz_util.h"
#include "model/model_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto parts = fuzz::split_parts(data, size, 4);
    const auto dir = fuzz::fresh_dir("hf");
    fuzz::write_file(dir / "config.json", parts[0]);
    if (parts.size() <= 2) {
        if (parts.size() == 2) fuzz::write_file(dir / "model.safetensors", parts[1]);
    } else {
        fuzz::write_file(dir / "model-00001-of-00002.safetensors", parts[1]);
        fuzz::write_file(dir / "model.safetensors.index.json", parts[2]);
        if (parts.size() == 4) fuzz::write_file(dir / "model-00002-of-00002.safetensors", parts[3]);
    }
    fuzz::expect_clean([&] {
        const ModelSpec spec = load_hf_spec(dir, /*require_tokenizer=*/false);
        for (const auto& [name, w] : spec.weights) {
            if (w.n_elements() > fuzz::kMaxReadElements) continue;
            std::vector<float> out(static_cast<size_t>(w.n_elements()));
            w.read(out.data());
        }
    });
    return 0;
}
