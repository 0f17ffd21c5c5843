// The summarization evaluation of TensorRT-LLM's examples/summarize.py, run on a Lamina engine:
// max_ite batches of batch_size examples from the start of the dataset, each example's prompt
// built as summarize_data.h says, the continuation generated greedily / by sampling (num_beams 1,
// the Generator) or by beam search (BeamSearch, Hugging Face semantics), every returned beam decoded
// without special tokens and scored with ROUGE against the highlights.
//
// Latency, as summarize.py's profiler measures it: the wall time of each batch from tokenization to
// decoded text (ROUGE excluded), summed over batches. Every example of a batch reports its batch's
// time; its first-token latency is from the start of the batch to its first generated token.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/rouge.h"
#include "eval/summarize_data.h"
#include "runtime/beam_search.h"
#include "runtime/engine.h"

namespace lamina {

struct SummarizeOptions {
    int64_t max_input_length = 923;  // keep the prompt's last N tokens
    int64_t output_len = 100;        // new tokens at most
    int64_t batch_size = 1;
    int64_t max_ite = 20;            // batches
    int64_t num_beams = 1;           // 1: the Generator (greedy when top_k is 1)
    int64_t num_return_sequences = 0;  // beams returned and scored; 0 means num_beams
    int32_t top_k = 1;
    float top_p = 1.0f;
    float temperature = 1.0f;
    uint64_t seed = 0;
    float length_penalty = 1.0f;
    EarlyStopping early_stopping = EarlyStopping::True;  // summarize.py's default (1)
    int64_t no_repeat_ngram_size = 0;
    float repetition_penalty = 1.0f;
    bool use_stemmer = false;
    uint64_t kv_cache_bytes = 0;     // 0: the KV cache from the engine's limits (runtime/kv_budget.h)

    int64_t n_return() const { return num_beams > 1 && num_return_sequences > 0 ? num_return_sequences : num_beams; }
    // The examples a run uses: the first min(dataset size, max_ite * batch_size).
    size_t n_examples(size_t dataset_size) const;
    void validate() const;  // throws lamina::Error naming the bad flag
};

struct SummarizeOutput {
    std::string id;
    int64_t line = 0;
    int64_t input_tokens = 0;                      // after truncation
    std::vector<std::vector<int32_t>> output_ids;  // per returned beam, eos included when emitted
    std::vector<std::string> outputs;              // decoded, special tokens skipped
    std::vector<RougeScores> rouge;                // per returned beam, against the highlights
    double latency_s = 0.0;
    double first_token_latency_s = 0.0;
};

struct SummarizeRun {
    SummarizeOptions options;
    int32_t eos_id = -1;
    std::vector<SummarizeOutput> examples;
    std::vector<RougeAggregate> scores;  // per returned beam: mean F1 x 100
    double total_latency_s = 0.0;
};

// Checks the engine against the options first (limits, with the rebuild hint), then runs. Calls
// progress(run so far, done) after every batch: examples [0, done) of the run are filled in (outputs,
// latencies; ROUGE comes at the end).
SummarizeRun run_summarize(const Engine& engine, Backend& backend, const std::vector<SummarizeExample>& examples,
                           const SummarizeOptions& options,
                           const std::function<void(const SummarizeRun&, size_t)>& progress = {});

}  // namespace lamina
