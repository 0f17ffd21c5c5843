// The evaluation inputs: `lamina rouge` example files (one escaped example a line) scored against each
// other, and the summarize dataset (JSON lines with article/highlights). Input: predictions,
// references[, dataset].
#include "eval/rouge.h"
#include "eval/rouge_io.h"
#include "eval/summarize_data.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto parts = fuzz::split_parts(data, size, 3);
    const auto dir = fuzz::fresh_dir("eval");
    const auto pred = fuzz::write_file(dir / "pred.txt", parts[0]);
    const auto ref = fuzz::write_file(dir / "ref.txt", parts.size() > 1 ? parts[1] : std::string_view());
    fuzz::expect_clean([&] {
        const auto p = read_examples(pred);
        const auto r = read_examples(ref);
        std::vector<RougeScores> scores;
        for (size_t i = 0; i < p.size() && i < r.size(); ++i) {
            scores.push_back(score_rouge(p[i], r[i], /*use_stemmer=*/i % 2 == 0));
        }
        aggregate_rouge(scores);
    });
    if (parts.size() > 2) {
        const auto dataset = fuzz::write_file(dir / "data.jsonl", parts[2]);
        fuzz::expect_clean([&] {
            for (const auto& ex : read_summarize_dataset(dataset)) summarize_prompt(ex.article);
        });
    }
    return 0;
}
