// lamina build: checkpoint (.gguf or HF directory) or random weights -> engine directory.
// Flags follow TensorRT-LLM's build.py where they mean the same thing.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "build/engine_writer.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "model/model_spec.h"

namespace lamina::cli {

namespace {
constexpr int64_t kDefaultBuildOutputLen = 512;  // TensorRT-LLM build.py's default max_output_len

struct BuildArgs {
    std::string model_dir, output_dir, dtype = "float16", random_weights, tokenizer, rmsnorm_plugin = "on";
    int64_t max_batch_size = 8, max_input_len = 0, max_output_len = 0, tp_size = 1;
    int threads = 0;
    uint64_t seed = 0;
};
}  // namespace

Handler add_build(CLI::App& app) {
    auto args = std::make_shared<BuildArgs>();
    CLI::App* cmd = app.add_subcommand("build", "Build an engine directory from a checkpoint or random weights");
    cmd->add_option("--model_dir", args->model_dir, "A .gguf file or a Hugging Face directory");
    cmd->add_option("--output_dir", args->output_dir, "Engine directory to write")->required();
    cmd->add_option("--dtype", args->dtype, "float32, float16 or bfloat16")
        ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
    cmd->add_option("--max_batch_size", args->max_batch_size, "Sequences the engine runs at once")->check(CLI::Range(int64_t{1}, int64_t{4096}));
    cmd->add_option("--max_input_len", args->max_input_len, "Longest prompt in tokens (0: the model's context, at most " + std::to_string(kDefaultMaxContext) +
                        ", less max_output_len)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
    cmd->add_option("--max_output_len", args->max_output_len, "Most new tokens per sequence (0: 512, or half a shorter context)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
    cmd->add_option("--random_weights", args->random_weights, "Build a dummy engine of this shape: tiny, llama-7b")
        ->check(CLI::IsMember({"tiny", "llama-7b"}));
    cmd->add_option("--seed", args->seed, "Seed for --random_weights");
    cmd->add_option("--tokenizer", args->tokenizer,
                    "Take the tokenizer from this model (.gguf, HF or engine dir) instead of the checkpoint's");
    cmd->add_option("--tp_size", args->tp_size, "Tensor-parallel ranks: one weights file per rank (GPU)")
        ->check(CLI::Range(int64_t{1}, int64_t{64}));
    cmd->add_option("--threads", args->threads, "CPU threads converting weights (0: the machine's physical cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_option("--rmsnorm_plugin", args->rmsnorm_plugin, "Fused RMSNorm kernels (off: unfused composition)")
        ->check(CLI::IsMember({"on", "off"}));
    return [args] {
        if (args->model_dir.empty() == args->random_weights.empty())
            throw Error("give exactly one of --model_dir and --random_weights");
        BuildOptions opts;
        opts.dtype = dtype_from_name(args->dtype);
        opts.max_batch_size = args->max_batch_size;
        opts.rmsnorm_plugin = args->rmsnorm_plugin == "on";
        opts.tp_size = args->tp_size;
        opts.threads = args->threads;
        const auto t0 = std::chrono::steady_clock::now();
        ModelSpec spec;
        if (!args->model_dir.empty()) spec = load_model_spec(args->model_dir, args->tokenizer.empty());
        else spec = random_model_spec(args->random_weights, args->seed, args->threads);
        if (!args->tokenizer.empty()) spec.vocab = load_tokenizer(args->tokenizer).vocab();
        // Limits not given: the model's context (at most kDefaultMaxContext), 512 of it for output.
        const int64_t ctx = std::min(spec.config.max_exact_context(), kDefaultMaxContext);
        opts.max_output_len = args->max_output_len > 0 ? args->max_output_len
                                                       : std::min<int64_t>(kDefaultBuildOutputLen, std::max<int64_t>(1, ctx / 2));
        opts.max_input_len = args->max_input_len > 0 ? args->max_input_len : std::max<int64_t>(1, ctx - opts.max_output_len);
        BuildProgressPrinter printer("build");
        build_engine(spec, opts, args->output_dir, printer.fn());
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("built %s engine (%s, %lld layers, n_embd %lld, vocab %lld, tp_size %lld) in %s in %.1f s\n",
                    std::string(dtype_name(opts.dtype)).c_str(), spec.source.c_str(),
                    static_cast<long long>(spec.config.n_layer), static_cast<long long>(spec.config.n_embd),
                    static_cast<long long>(spec.config.n_vocab), static_cast<long long>(opts.tp_size),
                    args->output_dir.c_str(), s);
        return 0;
    };
}

}  // namespace lamina::cli
