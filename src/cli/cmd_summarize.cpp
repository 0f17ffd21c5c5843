// lamina summarize: TensorRT-LLM's examples/summarize.py on a Lamina engine — CNN/DailyMail
// summaries (article + " TL;DR:"), ROUGE against the highlights, total latency — with HF-exact beam
// search, an --output_json record and a side-by-side against a reference run (--reference_json,
// e.g. tools/hf_summarize.py's). Flag names follow summarize.py's.
#include <algorithm>
#include <cstdio>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "eval/summarize.h"
#include "eval/summarize_report.h"

namespace lamina::cli {

namespace {
struct SummarizeArgs {
    ModelArgs model;
    SamplingArgs sampling;
    std::string dataset_path = kCnnDailymailPath, output_json, reference_json, early_stopping = "true";
    SummarizeOptions options;
    bool check_accuracy = false;
    double rouge1_threshold = 15.0;
};

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
    add_model_options(cmd, a->model);
    cmd->add_option("--dataset_path", a->dataset_path, "JSON Lines with \"article\" and \"highlights\" (and \"id\")");
    auto* max_input_opt = cmd->add_option("--max_input_length", o.max_input_length,
                                          "Keep the prompt's last N tokens (lowered to the context of a --model_dir model)")
                              ->transform(integer_in(1, kMaxFlagTokens));
    cmd->add_option("--output_len", o.output_len, "New tokens at most")->transform(integer_in(1, kMaxFlagTokens));
    cmd->add_option("--batch_size", o.batch_size, "Examples per batch")->transform(integer_in(1, kMaxFlagBatch));
    cmd->add_option("--max_ite", o.max_ite, "Batches to run (examples = max_ite x batch_size)")
        ->transform(integer_in(1, INT32_MAX));
    cmd->add_option("--num_beams", o.num_beams, "1: greedy/sampling; more: beam search (HF semantics)")
        ->transform(integer_in(1, 64));
    cmd->add_option("--num_return_sequences", o.num_return_sequences, "Beams returned and scored (0: num_beams)")
        ->transform(integer_in(0, 64));
    add_sampling_options(cmd, a->sampling, "--random_seed");
    cmd->add_option("--length_penalty", o.length_penalty, "Beam score = sum logprobs / length^length_penalty");
    cmd->add_option("--early_stopping", a->early_stopping, "Beam search: true|false|never (or 1|0|other integer)");
    cmd->add_option("--no_repeat_ngram_size", o.no_repeat_ngram_size, "Beam search: n-grams may occur once (0: off)")
        ->transform(integer_in(0, kMaxFlagTokens));
    cmd->add_flag("--use_stemmer", o.use_stemmer, "ROUGE with the Porter stemmer (off, as HF evaluate)");
    cmd->add_flag("--check_accuracy", a->check_accuracy, "Exit non-zero unless beam 0 rouge1 > --rouge1_threshold");
    cmd->add_option("--rouge1_threshold,--tensorrt_llm_rouge1_threshold", a->rouge1_threshold, "For --check_accuracy");
    cmd->add_option("--output_json", a->output_json, "Write per-example outputs, token counts, latencies and scores");
    cmd->add_option("--reference_json", a->reference_json, "Compare with this run (tools/hf_summarize.py's JSON)");
    return [a, cmd, max_input_opt] {
        SummarizeOptions& o = a->options;
        const SamplingParams sampling = resolve_sampling(a->sampling);
        o.top_k = sampling.top_k;
        o.top_p = sampling.top_p;
        o.temperature = sampling.temperature;
        o.seed = sampling.seed;
        o.repetition_penalty = sampling.repetition_penalty;
        o.kv_cache_bytes = a->model.kv_cache_bytes;
        o.early_stopping = early_stopping_from_name(a->early_stopping);
        o.validate();

        // Everything that can be wrong with the input is found before the model runs.
        const std::filesystem::path dataset_path = a->dataset_path == kCnnDailymailPath
                                                       ? find_shipped_file(kCnnDailymailPath, "pass --dataset_path")
                                                       : std::filesystem::path(a->dataset_path);
        std::vector<SummarizeExample> dataset = read_summarize_dataset(dataset_path);
        dataset.resize(o.n_examples(dataset.size()));
        std::optional<SummarizeReference> reference;
        if (!a->reference_json.empty()) {
            reference = read_summarize_reference(a->reference_json);
            check_reference_examples(*reference, dataset);
        }

        OpenedEngine opened = open_engine(a->model, {o.batch_size * o.num_beams, 0, o.output_len});
        // A model with a short context: prompts keep what fits unless --max_input_length says otherwise.
        if (!a->model.model_dir.empty() && max_input_opt->count() == 0)
            o.max_input_length = std::min(o.max_input_length, opened.engine->limits().max_input_len);
        fit_limits(a->model, opened, {o.batch_size * o.num_beams, o.max_input_length, o.output_len});
        const Engine& engine = *opened.engine;
        auto backend = make_backend(a->model, opened);
        if (a->model.verbose) std::fprintf(stderr, "lamina: seed %llu\n", static_cast<unsigned long long>(o.seed));

        // Progress: examples done, and beam 0's mean ROUGE-1 over them so far.
        Progress bar("summarize", static_cast<double>(dataset.size()), "examples");
        std::vector<RougeScores> scored;
        const SummarizeRun run = run_summarize(engine, *backend, dataset, o, [&](const SummarizeRun& so_far, size_t done) {
            for (size_t i = scored.size(); i < done; ++i)
                scored.push_back(score_rouge(so_far.examples[i].outputs[0], dataset[i].highlights, o.use_stemmer));
            char note[64];
            std::snprintf(note, sizeof note, "rouge1 so far %.2f", aggregate_rouge(scored).rouge1);
            if (done < dataset.size()) bar.update(static_cast<double>(done), note);
            else bar.finish(note);
        });

        std::fputs(summarize_log(run, "lamina").c_str(), stdout);
        if (reference) std::fputs(comparison_table(run, *reference).c_str(), stdout);
        if (!a->output_json.empty()) {
            const nlohmann::json meta = {
                {"generated_by", command_line(cmd)},
                {"engine", "lamina"},
                {"model", a->model.engine_dir.empty() ? a->model.model_dir : a->model.engine_dir},
                {"dataset", dataset_path.string()},
                {"device", backend->name()},
                {"versions", {{"engine_dtype", std::string(dtype_name(engine.dtype()))}}}};
            write_json_file(a->output_json, summarize_json(run, meta), "--output_json", 1);
        }
        if (a->check_accuracy && !(run.scores[0].rouge1 > a->rouge1_threshold))
            throw Error("accuracy check failed: beam 0 rouge1 " + std::to_string(run.scores[0].rouge1) +
                        " is not above --rouge1_threshold " + std::to_string(a->rouge1_threshold));
        return 0;
    };
}

}  // namespace lamina::cli
