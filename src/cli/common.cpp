#include "cli/common.h"

#include <unistd.h>

#include "build/engine_format.h"
#include "core/error.h"
#include "io/gguf.h"
#include "model/model_spec.h"

#ifdef LAMINA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif


namespace lamina::cli {

std::unique_ptr<Backend> make_backend(const std::string& device, DType engine_dtype) {
    if (device == "cpu") return make_cpu_backend();
#ifdef LAMINA_HAS_CUDA
    if (device == "cuda") return make_cuda_backend(engine_dtype);
    if (device == "auto") return cuda_device_count() > 0 ? make_cuda_backend(engine_dtype) : make_cpu_backend();
#else
    (void)engine_dtype;
    if (device == "cuda") throw Error("--device cuda: this lamina was built without CUDA (configure with -DLAMINA_CUDA=ON)");
    if (device == "auto") return make_cpu_backend();
#endif
    throw Error("--device '" + device + "' is not one of cpu, cuda, auto");
}

OpenedEngine::~OpenedEngine() {
    engine.reset();
    if (!temp_dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(temp_dir, ec);
    }
}

void add_kv_cache_option(CLI::App* cmd, uint64_t& bytes) {
    cmd->add_option("--kv_cache_bytes", bytes,
                    "KV cache budget in bytes (suffixes K/M/G, binary; per rank with tensor parallelism); shortens "
                    "each sequence's context to fit. "
                    "Default: max_batch x (max_input_len + max_output_len) positions")
        ->transform(CLI::AsSizeValue(false));
}

OpenedEngine open_engine(const std::string& engine_dir, const std::string& model_dir, const BuildOptions& build) {
    OpenedEngine e;
    if (!engine_dir.empty() && !model_dir.empty()) throw Error("give --engine_dir or --model_dir, not both");
    if (!engine_dir.empty()) {
        e.engine = std::make_unique<Engine>(engine_dir);
        return e;
    }
    if (model_dir.empty()) throw Error("give --engine_dir (built by `lamina build`) or --model_dir (a .gguf or HF directory)");
    ModelSpec spec = load_model_spec(model_dir);
    e.temp_dir = std::filesystem::temp_directory_path() / ("lamina-engine-" + std::to_string(::getpid()));
    build_engine(spec, build, e.temp_dir);
    e.engine = std::make_unique<Engine>(e.temp_dir);
    return e;
}

Tokenizer load_tokenizer(const std::filesystem::path& path) {
    if (std::filesystem::is_directory(path)) {
        if (std::filesystem::exists(path / engine_format::kConfigFile) &&
            std::filesystem::exists(path / engine_format::kTokenizerFile))
            return Tokenizer(load_vocab(path / engine_format::kTokenizerFile));
        return Tokenizer(vocab_from_hf_dir(path));
    }
    if (!std::filesystem::exists(path)) throw Error(path.string() + ": no such file or directory");
    GgufFile gguf(path);
    return Tokenizer(vocab_from_gguf(gguf));
}

}  // namespace lamina::cli
