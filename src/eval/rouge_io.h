// The text format `lamina rouge` reads: one example per line. A newline inside an example (rougeLsum
// splits sentences on it) is written as the two characters backslash, n; a backslash as two
// backslashes. Any other backslash is kept as it is, so files written by tools that only escape
// newlines read back the same (a lone backslash is a ROUGE separator anyway).
// Lines end with "\n"; a final newline does not start another example, so "a\nb\n" and "a\nb" both
// hold two examples and an empty file holds none.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace lamina {

std::string escape_example(std::string_view text);
std::string unescape_example(std::string_view line);

// Every line of `path`, unescaped. Throws lamina::Error naming the file if it cannot be read or is not a
// regular file, and the file, line and byte where a line is not valid UTF-8 (Python's rouge-score reads
// text, and would fail on such bytes too).
std::vector<std::string> read_examples(const std::filesystem::path& path);
// The same from the file's bytes; `name` stands for the file in errors.
std::vector<std::string> parse_examples(std::string_view text, const std::string& name);

}  // namespace lamina
