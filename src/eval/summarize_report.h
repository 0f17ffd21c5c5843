// What `lamina summarize` prints and writes, and the side-by-side against a reference run.
//
// The JSON (--output_json; tools/hf_summarize.py writes the same for Hugging Face transformers):
//   {"generated_by": command line, "engine": "lamina" | "hf_transformers", "model", "dataset",
//    "device", "versions": {...},
//    "config": {max_input_length, output_len, batch_size, max_ite, num_beams, num_return_sequences,
//               top_k, temperature, length_penalty, early_stopping, no_repeat_ngram_size,
//               repetition_penalty, use_stemmer, eos_token_id},
//    "total_latency_s", "scores": [{"beam", "rouge1", "rouge2", "rougeL", "rougeLsum"}] (mean F1 x 100),
//    "examples": [{"id", "line", "input_tokens", "output_ids": [[ids] per beam],
//                  "output_tokens": [n per beam], "outputs": [text per beam], "latency_s",
//                  "first_token_latency_s", "rouge": [{"rouge1", …} F1 per beam]}]}
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/summarize.h"

namespace lamina {

// The four lines per beam of summarize.py's log, after "<name> (total latency: X sec)".
std::string summarize_log(const SummarizeRun& run, const std::string& name);

// `meta` supplies generated_by, engine, model, dataset, device, versions; the rest comes from `run`.
nlohmann::json summarize_json(const SummarizeRun& run, const nlohmann::json& meta);

// A run read back from such a JSON (ours or hf_summarize.py's).
struct SummarizeReference {
    std::string path;
    std::string engine;  // "hf_transformers", "lamina", …
    nlohmann::json config;
    double total_latency_s = 0.0;
    std::vector<RougeAggregate> scores;  // per beam
    std::vector<std::string> ids;
    std::vector<std::vector<std::vector<int32_t>>> output_ids;  // [example][beam][token]
};
// Throws lamina::Error naming the file and the missing or malformed field.
SummarizeReference read_summarize_reference(const std::filesystem::path& path);

// The reference must hold exactly the examples this run uses, in order: otherwise a lamina::Error
// naming the first id that differs (so it is checked before anything runs).
void check_reference_examples(const SummarizeReference& ref, const std::vector<SummarizeExample>& examples);

// Examples whose returned beams are all token-identical to the reference's.
size_t count_identical_outputs(const SummarizeRun& run, const SummarizeReference& ref);

// The side-by-side table: ROUGE-1/2/L/Lsum per beam and total latency, this run vs the reference,
// with differences; the number of token-identical examples; notes on config fields that differ.
std::string comparison_table(const SummarizeRun& run, const SummarizeReference& ref);

}  // namespace lamina
