// The summarization task's data and prompts, as TensorRT-LLM's examples/summarize.py builds them.
//
// Dataset: JSON Lines, one object per line with string fields "article" and "highlights" (CNN/
// DailyMail's names) and optionally "id" (else the line number names the example). Every line is
// checked before anything runs: a line that is not valid UTF-8 or not a JSON object (nested deeper
// than core/json_fields.h allows, or repeating a key), lacks a key, has a non-string field or an empty
// (all-whitespace) article or highlights is a lamina::Error naming file and line.
//
// Prompt: (article + " TL;DR: ").strip().replace(" n't", "n't"), Python's str.strip (so the prompt
// ends in "TL;DR:" without the space), tokenized, then only its last max_input_length tokens kept.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace lamina {

// The dataset that ships with Lamina: CNN/DailyMail 3.0.0 test rows 0..99 (data/cnn_dailymail/PROVENANCE.md),
// relative to the repository's root.
inline constexpr const char* kCnnDailymailPath = "data/cnn_dailymail/test_100.jsonl";

struct SummarizeExample {
    std::string id;       // the "id" field, or "line N"
    int64_t line = 0;     // 1-based line in the dataset file
    std::string article;
    std::string highlights;  // the reference summary (bullet sentences separated by "\n")
};

std::vector<SummarizeExample> read_summarize_dataset(const std::filesystem::path& path);
// The same from the file's bytes; `path` only names the file in errors.
std::vector<SummarizeExample> parse_summarize_dataset(std::string_view file, const std::filesystem::path& path);

// Python's str.strip(): removes leading and trailing characters for which str.isspace() is true
// (ASCII whitespace, U+001C..U+001F, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000) from UTF-8 text.
std::string_view python_strip(std::string_view text);

std::string summarize_prompt(std::string_view article);

// The last `n` ids (all of them when there are fewer): summarize.py's input_ids[:, -n:].
std::vector<int32_t> keep_last_tokens(const std::vector<int32_t>& ids, int64_t n);

}  // namespace lamina
