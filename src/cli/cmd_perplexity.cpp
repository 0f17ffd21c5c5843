// lamina perplexity: how well a model predicts a text. The text is tokenized once (BOS first when the
// model adds one) and cut into consecutive windows of --ctx tokens; in each window every token after the
// first is predicted from the tokens before it in that window, so the result is Hugging Face's
// fixed-length perplexity with stride = window:
//   PPL = exp( - sum over predicted tokens of log p(token | window prefix) / number predicted )
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "core/file_util.h"
#include "runtime/generator.h"

namespace lamina::cli {

namespace {
struct PerplexityArgs {
    ModelArgs model;
    std::string input_file, output_json;
    int64_t ctx = 512, max_chunks = 0;
};

// Negative log-likelihood (natural log) of ids[1..] given the logits of positions 0..n-2, [n x n_vocab].
double window_nll(const std::vector<float>& logits, const std::vector<int32_t>& ids, int64_t n_vocab) {
    double nll = 0.0;
    for (size_t t = 0; t + 1 < ids.size(); ++t) {
        const float* row = logits.data() + t * static_cast<size_t>(n_vocab);
        double max = row[0];
        for (int64_t v = 1; v < n_vocab; ++v) max = std::max<double>(max, row[v]);
        double sum = 0.0;
        for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
        nll += max + std::log(sum) - static_cast<double>(row[ids[t + 1]]);
    }
    return nll;
}
}  // namespace

Handler add_perplexity(CLI::App& app) {
    auto a = std::make_shared<PerplexityArgs>();
    CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a model on a text file");
    add_model_options(cmd, a->model);
    cmd->add_option("--input_file", a->input_file, "The text (UTF-8)")->required();
    cmd->add_option("--ctx", a->ctx, "Tokens per window")->transform(integer_in(2, int64_t{1} << 20));
    cmd->add_option("--max_chunks", a->max_chunks, "Windows to score at most (0: the whole text)")
        ->transform(integer_in(0, INT64_MAX));
    cmd->add_option("--output_json", a->output_json, "Write the perplexity, token counts and per-window NLL here");
    return [a] {
        const std::string text = read_regular_file(a->input_file, "--input_file");
        if (text.empty()) throw Error("--input_file " + a->input_file + ": empty");

        OpenedEngine opened = open_engine(a->model, {1, a->ctx, 1});
        const Engine& engine = *opened.engine;
        if (a->ctx > engine.limits().max_input_len)
            throw Error("--ctx " + std::to_string(a->ctx) + " exceeds the engine's max_input_len " +
                        std::to_string(engine.limits().max_input_len));
        const std::vector<int32_t> ids = engine.tokenizer().encode(text, true, false);
        int64_t n_windows = static_cast<int64_t>(ids.size()) / a->ctx;
        if (n_windows == 0)
            throw Error("--input_file " + a->input_file + ": " + std::to_string(ids.size()) +
                        " tokens, fewer than one window of --ctx " + std::to_string(a->ctx));
        if (a->max_chunks > 0) n_windows = std::min(n_windows, a->max_chunks);

        auto backend = make_backend(a->model, opened);
        Generator gen(engine, *backend, 1, a->model.kv_cache_bytes);
        Progress bar("perplexity", static_cast<double>(n_windows), "windows");
        double nll = 0.0;
        int64_t predicted = 0;
        std::vector<double> window_nlls;
        char note[64];
        for (int64_t w = 0; w < n_windows; ++w) {
            const std::vector<int32_t> window(ids.begin() + w * a->ctx, ids.begin() + (w + 1) * a->ctx);
            window_nlls.push_back(window_nll(gen.prompt_logits(window), window, engine.config().n_vocab));
            nll += window_nlls.back();
            predicted += a->ctx - 1;
            std::snprintf(note, sizeof note, "PPL so far %.4f", std::exp(nll / static_cast<double>(predicted)));
            if (w + 1 < n_windows) bar.update(static_cast<double>(w + 1), note);
        }
        const double ppl = std::exp(nll / static_cast<double>(predicted));
        std::snprintf(note, sizeof note, "PPL %.4f", ppl);
        bar.finish(note);
        std::printf("perplexity: %.4f over %lld tokens (%lld windows of %lld; %zu tokens in the file)\n", ppl,
                    static_cast<long long>(predicted), static_cast<long long>(n_windows), static_cast<long long>(a->ctx),
                    ids.size());
        if (!a->output_json.empty()) {
            const nlohmann::json j = {{"perplexity", ppl},      {"predicted_tokens", predicted}, {"windows", n_windows},
                                      {"ctx", a->ctx},          {"file_tokens", ids.size()},     {"window_nll", window_nlls},
                                      {"device", backend->name()}, {"dtype", dtype_name(engine.dtype())}};
            write_json_file(a->output_json, j, "--output_json");
        }
        return 0;
    };
}

}  // namespace lamina::cli
