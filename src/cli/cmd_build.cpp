// lamina build: checkpoint (.gguf or HF directory) or random weights -> engine directory.
// Flags follow TensorRT-LLM's build.py where they mean the same thing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "build/engine_format.h"
#include "build/engine_writer.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "core/file_util.h"
#include "model/model_spec.h"

namespace lamina::cli {

namespace {
constexpr int64_t kDefaultBuildOutputLen = 512;  // TensorRT-LLM build.py's default max_output_len

struct BuildArgs {
    std::string model_dir, output_dir, dtype = "float16", weights, random_weights, tokenizer, rmsnorm_plugin = "on";
    int64_t max_batch_size = 8, max_input_len = 0, max_output_len = 0, tp_size = 1;
    int threads = 0;
    uint64_t seed = 0;
    bool force = false;
};

namespace fs = std::filesystem;

// True when a build into `out` could overwrite the files of checkpoint `source`: `out` is a Hugging Face
// directory or inside it (its files may sit in subfolders), or is a .gguf file's folder (a folder
// inside that one cannot hold the .gguf, so `--model_dir m.gguf --output_dir engine` stays allowed).
// A source that does not exist is left to the loader to report. Sets `dir` to the source's directory.
bool overwrites_source(const fs::path& out, const std::string& source, fs::path& dir) {
    std::error_code ec;
    const fs::path p = fs::canonical(source, ec);
    if (ec) return false;
    if (!fs::is_directory(p, ec)) {
        dir = p.parent_path();
        return out == dir;
    }
    dir = p;
    const auto [d, o] = std::mismatch(dir.begin(), dir.end(), out.begin(), out.end());
    return d == dir.end();
}

bool is_lamina_engine(const fs::path& dir) {
    try {
        const auto j = nlohmann::json::parse(read_regular_file(dir / engine_format::kConfigFile, "engine config"));
        return j.is_object() && j.contains("format") && j["format"] == engine_format::kFormatName;
    } catch (const std::exception&) {  // missing, not a regular file, not JSON: not an engine
        return false;
    }
}

// A build rewrites config.json and weights*.bin in --output_dir: refuse a directory that holds the
// checkpoint (or the tokenizer source), and a non-empty one that is not a Lamina engine unless --force.
void check_output_dir(const BuildArgs& a) {
    std::error_code ec;
    fs::path out = fs::weakly_canonical(a.output_dir, ec);
    if (ec) throw Error("--output_dir " + a.output_dir + ": " + ec.message());
    if (!out.has_filename()) out = out.parent_path();  // "engine/" names "engine"
    for (const std::string& source : {a.model_dir, a.tokenizer}) {
        if (source.empty()) continue;
        fs::path dir;
        if (overwrites_source(out, source, dir))
            throw Error("--output_dir " + a.output_dir + " is " + (out == dir ? "" : "inside ") + "the directory of " +
                        source + " (" + dir.string() + "): building there would overwrite its files; choose another");
    }
    if (!fs::exists(out, ec)) return;
    if (!fs::is_directory(out, ec)) throw Error("--output_dir " + a.output_dir + " exists and is not a directory");
    if (a.force || fs::is_empty(out, ec) || is_lamina_engine(out)) return;
    throw Error("--output_dir " + a.output_dir + " is not empty and is not a Lamina engine (no config.json of format '" +
                engine_format::kFormatName + "'): choose an empty directory, or pass --force to write into it");
}
}  // namespace

Handler add_build(CLI::App& app) {
    auto args = std::make_shared<BuildArgs>();
    CLI::App* cmd = app.add_subcommand("build", "Build an engine directory from a checkpoint or random weights");
    cmd->add_option("--model_dir", args->model_dir, "A .gguf file or a Hugging Face directory");
    cmd->add_option("--output_dir", args->output_dir, "Engine directory to write")->required();
    cmd->add_option("--dtype", args->dtype, "float32, float16 or bfloat16")
        ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
    cmd->add_option("--weights", args->weights,
                    "How matrices are stored: keep (each as the checkpoint has it; the default for a .gguf), float (at "
                    "--dtype; the default otherwise), or quantized at build: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, "
                    "q4_k, q5_k, q6_k (embeddings and head: q8_0)")
        ->check(CLI::IsMember({"keep", "float", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"}));
    cmd->add_option("--max_batch_size", args->max_batch_size, "Sequences the engine runs at once")->transform(integer_in(1, kMaxFlagBatch));
    cmd->add_option("--max_input_len", args->max_input_len, "Longest prompt in tokens (0: the model's context, at most " + std::to_string(kDefaultMaxContext) +
                        ", less max_output_len)")
        ->transform(integer_in(0, int64_t{1} << 20));
    cmd->add_option("--max_output_len", args->max_output_len, "Most new tokens per sequence (0: 512, or half a shorter context)")
        ->transform(integer_in(0, int64_t{1} << 20));
    cmd->add_option("--random_weights", args->random_weights, "Build a dummy engine of this shape: tiny, llama-7b")
        ->check(CLI::IsMember({"tiny", "llama-7b"}));
    cmd->add_option("--seed", args->seed, "Seed for --random_weights")->transform(integer_in(0, UINT64_MAX));
    cmd->add_option("--tokenizer", args->tokenizer,
                    "Take the tokenizer from this model (.gguf, HF or engine dir) instead of the checkpoint's");
    cmd->add_option("--tp_size", args->tp_size, "Tensor-parallel ranks: one weights file per rank (GPU)")
        ->transform(integer_in(1, 64));
    cmd->add_option("--threads", args->threads, "CPU threads converting weights (0: the machine's physical cores)")
        ->transform(integer_in(0, 1024));
    cmd->add_option("--rmsnorm_plugin", args->rmsnorm_plugin, "Fused RMSNorm kernels (off: unfused composition)")
        ->check(CLI::IsMember({"on", "off"}));
    cmd->add_flag("--force", args->force,
                  "Write into a non-empty --output_dir that is not a Lamina engine (its config.json and weights*.bin "
                  "are replaced; other files are left)");
    return [args] {
        if (args->model_dir.empty() == args->random_weights.empty())
            throw Error("give exactly one of --model_dir and --random_weights");
        check_output_dir(*args);
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
        set_weights_mode(opts, args->weights.empty() ? default_weights(args->model_dir) : args->weights);
        // Limits not given: the model's context (at most kDefaultMaxContext), 512 of it for output.
        const int64_t ctx = std::min(spec.config.max_exact_context(), kDefaultMaxContext);
        opts.max_output_len = args->max_output_len > 0 ? args->max_output_len
                                                       : std::min<int64_t>(kDefaultBuildOutputLen, std::max<int64_t>(1, ctx / 2));
        opts.max_input_len = args->max_input_len > 0 ? args->max_input_len : std::max<int64_t>(1, ctx - opts.max_output_len);
        BuildProgressPrinter printer("build");
        const BuildSummary summary = build_engine(spec, opts, args->output_dir, printer.fn());
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("built %s engine (%s; %s, %lld layers, n_embd %lld, vocab %lld, tp_size %lld) in %s in %.1f s\n",
                    weights_mode_name(opts).c_str(), summary.text().c_str(), spec.source.c_str(),
                    static_cast<long long>(spec.config.n_layer), static_cast<long long>(spec.config.n_embd),
                    static_cast<long long>(spec.config.n_vocab), static_cast<long long>(opts.tp_size),
                    args->output_dir.c_str(), s);
        return 0;
    };
}

}  // namespace lamina::cli
