// lamina perplexity: how well a model predicts a text file (--file) or the articles Lamina ships
// (--dataset cnn_dailymail), with Hugging Face's sliding window (--ctx, --stride) and llama.cpp's
// standard error; eval/perplexity.h defines both. Each text is tokenized on its own as the model's
// tokenizer does by default (BOS first when it adds one) and scored on its own; the sums are pooled.
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "eval/perplexity.h"
#include "eval/summarize_data.h"
#include "runtime/generator.h"

namespace lamina::cli {

namespace {
struct PerplexityArgs {
    ModelArgs model;
    std::string file, dataset, output_json;
    int64_t ctx = 512, stride = 0, max_samples = 0;
};

// The texts to score: the file, or the first max_samples articles of the dataset (0: all).
std::vector<std::string> read_texts(const PerplexityArgs& a) {
    if (a.file.empty() == a.dataset.empty()) throw Error("give --file or --dataset (one of them)");
    if (!a.file.empty()) {
        std::string text = read_text_file(a.file, "--file");
        if (text.empty()) throw Error("--file " + a.file + ": empty");
        return {std::move(text)};
    }
    if (a.dataset != "cnn_dailymail")
        throw Error("--dataset '" + a.dataset + "': unknown (lamina ships cnn_dailymail, the articles of " +
                    kCnnDailymailPath + ")");
    const std::vector<SummarizeExample> examples =
        read_summarize_dataset(find_shipped_file(kCnnDailymailPath, "score the text with --file"));
    if (a.max_samples > static_cast<int64_t>(examples.size()))
        throw Error("--max_samples " + std::to_string(a.max_samples) + ": " + kCnnDailymailPath + " holds " +
                    std::to_string(examples.size()) + " articles");
    const size_t n = a.max_samples > 0 ? static_cast<size_t>(a.max_samples) : examples.size();
    std::vector<std::string> texts;
    for (size_t i = 0; i < n; ++i) texts.push_back(examples[i].article);
    return texts;
}
}  // namespace

Handler add_perplexity(CLI::App& app) {
    auto a = std::make_shared<PerplexityArgs>();
    CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a model on a text file or the shipped articles");
    add_model_options(cmd, a->model);
    auto* file = cmd->add_option("--file", a->file, "The text (UTF-8), scored as one sequence");
    auto* dataset =
        cmd->add_option("--dataset", a->dataset, "cnn_dailymail: the shipped articles, each scored on its own");
    file->excludes(dataset);
    cmd->add_option("--max_samples", a->max_samples, "--dataset: score the first N articles (0: all)")
        ->transform(integer_in(0, INT32_MAX))
        ->needs(dataset);
    cmd->add_option("--ctx", a->ctx, "Tokens per window")->transform(integer_in(0, kMaxFlagTokens));
    auto* stride = cmd->add_option("--stride", a->stride,
                                   "Tokens a window advances; only those are scored "
                                   "(default: --ctx, disjoint windows)")
                       ->transform(integer_in(0, kMaxFlagTokens))
                       ->default_str("ctx");
    cmd->add_option("--output_json", a->output_json, "Write the perplexity, counts, speed and per-window NLL here");
    return [a, stride] {
        if (stride->count() == 0) a->stride = a->ctx;
        check_perplexity_windows(a->ctx, a->stride);
        const std::vector<std::string> texts = read_texts(*a);

        // The engine's own limits, or for a --model_dir all the model's context; then only what --ctx needs.
        OpenedEngine opened = open_engine(a->model, {1, 0, 1});
        if (a->ctx > opened.engine->limits().max_input_len)
            throw Error("--ctx " + std::to_string(a->ctx) + " exceeds the engine's max_input_len " +
                        std::to_string(opened.engine->limits().max_input_len));
        fit_limits(a->model, opened, {1, a->ctx, 1});
        const Engine& engine = *opened.engine;
        std::vector<std::vector<int32_t>> sequences;
        int64_t n_windows = 0;
        for (const std::string& text : texts) {
            sequences.push_back(engine.tokenizer().encode(text, true, false));
            n_windows += static_cast<int64_t>(perplexity_windows(sequences.back().size(), a->ctx, a->stride).size());
        }
        if (n_windows == 0) throw Error("no token to score: every text is shorter than 2 tokens");

        auto backend = make_backend(a->model, opened);
        Generator gen(engine, *backend, 1, a->model.kv_cache_bytes);
        Progress bar("perplexity", static_cast<double>(n_windows), "windows");
        char note[64];
        const PerplexityRun run = score_perplexity(
            sequences, a->ctx, a->stride, engine.config().n_vocab,
            [&](const std::vector<int32_t>& ids) { return gen.prompt_logits(ids); },
            [&](const PerplexityRun& so_far) {
                std::snprintf(note, sizeof note, "PPL so far %.4f", estimate_perplexity(so_far.sums).perplexity);
                if (so_far.windows < n_windows) bar.update(static_cast<double>(so_far.windows), note);
            });
        const PerplexityEstimate est = estimate_perplexity(run.sums);
        const double tokens_per_s = static_cast<double>(run.evaluated_tokens) / run.model_seconds;
        std::snprintf(note, sizeof note, "PPL %.4f", est.perplexity);
        bar.finish(note);

        const std::string source = a->file.empty() ? std::to_string(texts.size()) + " articles" : "1 file";
        std::printf(
            "perplexity: %.4f ± %.4f over %lld tokens (%s, %lld windows, ctx %lld, stride %lld); %.1f tokens/s\n",
            est.perplexity, est.perplexity_stderr, static_cast<long long>(est.tokens), source.c_str(),
            static_cast<long long>(run.windows), static_cast<long long>(a->ctx), static_cast<long long>(a->stride),
            tokens_per_s);
        if (!a->output_json.empty()) {
            std::vector<size_t> sequence_tokens;
            for (const auto& ids : sequences) sequence_tokens.push_back(ids.size());
            nlohmann::json j = {
                {"perplexity", est.perplexity},
                {"perplexity_stderr",
                 std::isnan(est.perplexity_stderr) ? nlohmann::json() : nlohmann::json(est.perplexity_stderr)},
                {"mean_nll", est.mean_nll},
                {"scored_tokens", est.tokens},
                {"evaluated_tokens", run.evaluated_tokens},
                {"model_seconds", run.model_seconds},
                {"tokens_per_second", tokens_per_s},
                {"ctx", a->ctx},
                {"stride", a->stride},
                {"windows", run.windows},
                {"sequence_tokens", sequence_tokens},
                {"window_nll", run.window_nll},
                {"window_scored", run.window_scored},
                {"device", backend->name()},
                {"dtype", dtype_name(engine.dtype())}};
            if (a->file.empty())
                j["dataset"] = {{"name", a->dataset}, {"articles", texts.size()}};
            else
                j["file"] = a->file;
            write_json_file(a->output_json, j, "--output_json");
        }
        return 0;
    };
}

}  // namespace lamina::cli
