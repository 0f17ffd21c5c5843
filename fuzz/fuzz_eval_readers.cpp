// The evaluation inputs: `lamina rouge` example files (one escaped example a line) scored against each
// other, and the summarize dataset (JSON lines with article/highlights). Input: predictions,
// references[, dataset]. Parsed from memory: reading them from files (read_examples, read_summarize_dataset)
// adds only read_regular_file, which the tests cover, and took a tenth of the time here in system calls.
#include "eval/rouge.h"
#include "eval/rouge_io.h"
#include "eval/summarize_data.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto parts = fuzz::split_parts(data, size, 3);
    fuzz::expect_clean([&] {
        const auto p = parse_examples(parts[0], "pred.txt");
        const auto r = parse_examples(fuzz::part(parts, 1).value_or(""), "ref.txt");
        std::vector<RougeScores> scores;
        for (size_t i = 0; i < p.size() && i < r.size(); ++i) {
            scores.push_back(score_rouge(p[i], r[i], /*use_stemmer=*/i % 2 == 0));
        }
        aggregate_rouge(scores);
    });
    if (parts.size() > 2) {
        fuzz::expect_clean([&] {
            for (const auto& ex : parse_summarize_dataset(parts[2], "data.jsonl")) summarize_prompt(ex.article);
        });
    }
    return 0;
}
