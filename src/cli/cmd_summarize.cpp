// lamina summarize: TensorRT-LLM's examples/summarize.py on a Lamina engine — CNN/DailyMail
// summaries (article + " TL;DR:"), ROUGE against the highlights, total latency — with HF-exact beam
// search, an --output_json record and a side-by-side against a reference run (--reference_json,
// e.g. tools/hf_summarize.py's). Flag names follow summarize.py's.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "eval/summarize.h"
#include "eval/summarize_report.h"

namespace lamina::cli {

namespace {
constexpr const char* kDefaultDataset = "data/cnn_dailymail/test_100.jsonl";

struct SummarizeArgs {
    std::string engine_dir, model_dir, dtype = "float32", device = "auto";
    std::string dataset_path = kDefaultDataset, output_json, reference_json, early_stopping = "true";
    SummarizeOptions options;
    bool check_accuracy = false;
    double rouge1_threshold = 15.0;
};

// The default dataset ships in the repository: found from the working directory, or from the
// directory above the binary's build directory.
std::filesystem::path find_dataset(const std::string& path) {
    if (path != kDefaultDataset || std::filesystem::exists(path)) return path;
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    for (auto dir = exe.parent_path(); !ec && !dir.empty() && dir != dir.root_path(); dir = dir.parent_path())
        if (std::filesystem::exists(dir / path)) return dir / path;
    throw Error(path + " not found: run from the repository root or pass --dataset_path");
}

// One line of progress on a terminal: bar, count, elapsed time and the time left at this rate.
void draw_progress(size_t done, size_t total, double elapsed) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / std::max<size_t>(total, 1));
    const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : 0.0;
    std::fprintf(stderr, "\r[%-*s] %zu/%zu examples, %.1f s, ETA %.0f s ", kWidth, std::string(filled, '#').c_str(),
                 done, total, elapsed, eta);
    if (done == total) std::fputc('\n', stderr);
    std::fflush(stderr);
}

std::string command_line(const CLI::App* cmd) {
    std::string out = "lamina summarize";
    for (const CLI::Option* opt : cmd->get_options()) {
        if (opt->count() == 0 || opt->get_name() == "--help") continue;
        out += " " + opt->get_name();
        if (opt->get_expected_max() == 0) continue;  // a flag
        for (const std::string& r : opt->results()) out += " " + r;
    }
    return out;
}
}  // namespace

Handler add_summarize(CLI::App& app) {
    auto a = std::make_shared<SummarizeArgs>();
    SummarizeOptions& o = a->options;
    CLI::App* cmd = app.add_subcommand("summarize", "CNN/DailyMail summarization: ROUGE and latency (summarize.py)");
    cmd->option_defaults()->always_capture_default();
    cmd->add_option("--engine_dir", a->engine_dir, "Engine directory from `lamina build`");
    cmd->add_option("--model_dir", a->model_dir, "Or a .gguf / HF directory, built on the fly with limits from the flags");
    cmd->add_option("--dtype", a->dtype, "Engine dtype when building on the fly")
        ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
    cmd->add_option("--dataset_path", a->dataset_path, "JSON Lines with \"article\" and \"highlights\" (and \"id\")");
    cmd->add_option("--max_input_length", o.max_input_length, "Keep the prompt's last N tokens");
    cmd->add_option("--output_len", o.output_len, "New tokens at most");
    cmd->add_option("--batch_size", o.batch_size, "Examples per batch");
    cmd->add_option("--max_ite", o.max_ite, "Batches to run (examples = max_ite x batch_size)");
    cmd->add_option("--num_beams", o.num_beams, "1: greedy/sampling; more: beam search (HF semantics)");
    cmd->add_option("--num_return_sequences", o.num_return_sequences, "Beams returned and scored (default num_beams)");
    cmd->add_option("--top_k", o.top_k, "1 means greedy");
    cmd->add_option("--temperature", o.temperature, "Sampling temperature (with --top_k > 1)");
    cmd->add_option("--random_seed", o.seed, "Seed of the sampler");
    cmd->add_option("--length_penalty", o.length_penalty, "Beam score = sum logprobs / length^length_penalty");
    cmd->add_option("--early_stopping", a->early_stopping, "Beam search: true|false|never (or 1|0|other integer)");
    cmd->add_option("--no_repeat_ngram_size", o.no_repeat_ngram_size, "Beam search: n-grams may occur once (0: off)");
    cmd->add_option("--repetition_penalty", o.repetition_penalty, "HF repetition penalty (1: off)");
    cmd->add_flag("--use_stemmer", o.use_stemmer, "ROUGE with the Porter stemmer (off, as HF evaluate)");
    cmd->add_flag("--check_accuracy", a->check_accuracy, "Exit non-zero unless beam 0 rouge1 > --rouge1_threshold");
    cmd->add_option("--rouge1_threshold,--tensorrt_llm_rouge1_threshold", a->rouge1_threshold, "For --check_accuracy");
    cmd->add_option("--output_json", a->output_json, "Write per-example outputs, token counts, latencies and scores");
    cmd->add_option("--reference_json", a->reference_json, "Compare with this run (tools/hf_summarize.py's JSON)");
    cmd->add_option("--device", a->device, "cpu, cuda or auto");
    add_kv_cache_option(cmd, a->options.kv_cache_bytes);
    return [a, cmd] {
        SummarizeOptions& o = a->options;
        o.early_stopping = early_stopping_from_name(a->early_stopping);
        o.validate();

        // Everything that can be wrong with the input is found before the model runs.
        const std::filesystem::path dataset_path = find_dataset(a->dataset_path);
        std::vector<SummarizeExample> dataset = read_summarize_dataset(dataset_path);
        dataset.resize(o.n_examples(dataset.size()));
        std::optional<SummarizeReference> reference;
        if (!a->reference_json.empty()) {
            reference = read_summarize_reference(a->reference_json);
            check_reference_examples(*reference, dataset);
        }

        BuildOptions build;
        build.dtype = dtype_from_name(a->dtype);
        build.max_batch_size = o.batch_size * o.num_beams;
        build.max_input_len = o.max_input_length;
        build.max_output_len = o.output_len;
        OpenedEngine opened = open_engine(a->engine_dir, a->model_dir, build);
        const Engine& engine = *opened.engine;
        auto backend = make_backend(a->device, engine.dtype());

        const bool tty = ::isatty(STDERR_FILENO);
        const SummarizeRun run = run_summarize(engine, *backend, dataset, o, tty ? draw_progress : nullptr);

        std::fputs(summarize_log(run, "lamina").c_str(), stdout);
        if (reference) std::fputs(comparison_table(run, *reference).c_str(), stdout);
        if (!a->output_json.empty()) {
            const nlohmann::json meta = {
                {"generated_by", command_line(cmd)},
                {"engine", "lamina"},
                {"model", a->engine_dir.empty() ? a->model_dir : a->engine_dir},
                {"dataset", dataset_path.string()},
                {"device", backend->name()},
                {"versions", {{"engine_dtype", std::string(dtype_name(engine.dtype()))}}}};
            std::ofstream out(a->output_json, std::ios::trunc);
            out << summarize_json(run, meta).dump(1) << "\n";
            if (!out) throw Error(a->output_json + ": cannot write --output_json");
        }
        if (a->check_accuracy && !(run.scores[0].rouge1 > a->rouge1_threshold))
            throw Error("accuracy check failed: beam 0 rouge1 " + std::to_string(run.scores[0].rouge1) +
                        " is not above --rouge1_threshold " + std::to_string(a->rouge1_threshold));
        return 0;
    };
}

}  // namespace lamina::cli
