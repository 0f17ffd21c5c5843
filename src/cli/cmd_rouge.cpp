// lamina rouge: ROUGE of predictions against references, as rouge-score / HF evaluate compute it.
// Prints the four F1 means x 100 in the style of TensorRT-LLM's summarize.py ("rouge1 : 21.86…").
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "eval/rouge.h"
#include "eval/rouge_io.h"

namespace lamina::cli {

namespace {
struct RougeArgs {
    std::string predictions, references;
    bool use_stemmer = false, bootstrap = false;
    int n_samples = 1000;
    uint64_t seed = 0;
};
}  // namespace

Handler add_rouge(CLI::App& app) {
    auto a = std::make_shared<RougeArgs>();
    CLI::App* cmd = app.add_subcommand("rouge", "ROUGE-1/2/L/Lsum F1 of predictions against references (rouge-score)");
    cmd->add_option("--predictions", a->predictions, "One prediction per line (newlines inside written as \\n)")
        ->required();
    cmd->add_option("--references", a->references, "One reference per line, same order and count")->required();
    cmd->add_flag("--use_stemmer", a->use_stemmer, "Porter-stem tokens longer than 3 characters (as rouge-score)");
    cmd->add_flag("--bootstrap", a->bootstrap,
                  "Also print rouge-score's bootstrap 95% interval of the mean (Lamina's own seeded RNG)");
    cmd->add_option("--bootstrap_samples", a->n_samples, "Resamples for --bootstrap")->transform(integer_in(1, kMaxBootstrapSamples));
    cmd->add_option("--seed", a->seed, "Seed of the --bootstrap resampling")->transform(integer_in(0, UINT64_MAX));
    return [a] {
        const std::vector<std::string> predictions = read_examples(a->predictions);
        const std::vector<std::string> references = read_examples(a->references);
        if (predictions.size() != references.size())
            throw Error("line counts differ: " + a->predictions + " has " + std::to_string(predictions.size()) +
                        " lines but " + a->references + " has " + std::to_string(references.size()) +
                        " (one example per line in each)");
        if (predictions.empty()) throw Error(a->predictions + " and " + a->references + " hold no examples");
        std::vector<RougeScores> scores;
        scores.reserve(predictions.size());
        for (size_t i = 0; i < predictions.size(); ++i)
            scores.push_back(score_rouge(predictions[i], references[i], a->use_stemmer));
        const RougeAggregate m = aggregate_rouge(scores);
        std::printf("rouge1 : %.6f\nrouge2 : %.6f\nrougeL : %.6f\nrougeLsum : %.6f\n", m.rouge1, m.rouge2, m.rougeL,
                    m.rougeLsum);
        if (a->bootstrap) {
            const RougeBootstrap b = bootstrap_rouge(scores, a->n_samples, 0.95, a->seed);
            std::printf("bootstrap of the mean, %d resamples, seed %llu, 95%% interval:\n", a->n_samples,
                        static_cast<unsigned long long>(a->seed));
            for (const auto& [name, iv] : {std::pair{"rouge1", b.rouge1}, std::pair{"rouge2", b.rouge2},
                                           std::pair{"rougeL", b.rougeL}, std::pair{"rougeLsum", b.rougeLsum}})
                std::printf("%s bootstrap : low %.6f mid %.6f high %.6f\n", name, iv.low, iv.mid, iv.high);
        }
        return 0;
    };
}

}  // namespace lamina::cli
