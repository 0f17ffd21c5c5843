// Example-per-line files for ROUGE (format in rouge_io.h).
#include "eval/rouge_io.h"

#include "core/error.h"
#include "core/file_util.h"
#include "tokenizer/unicode.h"

namespace lamina {

std::string escape_example(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\\') {
            out += "\\\\";
        } else {
            out += c;
        }
    }
    return out;
}

std::string unescape_example(std::string_view line) {
    std::string out;
    out.reserve(line.size());
    for (size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == 'n' || line[i + 1] == '\\')) {
            out += line[i + 1] == 'n' ? '\n' : '\\';
            ++i;
        } else {
            out += line[i];
        }
    }
    return out;
}

std::vector<std::string> read_examples(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw Error(path.string() + ": is a directory, expected a text file");
    return parse_examples(read_regular_file(path, "text file"), path.string());
}

std::vector<std::string> parse_examples(std::string_view text, const std::string& name) {
    std::vector<std::string> examples;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string_view line = text.substr(start, end - start);
        if (const size_t bad = utf8_first_invalid(line); bad != kUtf8Valid) {
            throw Error(name + " line " + std::to_string(examples.size() + 1) + ": not valid UTF-8 at byte " +
                        std::to_string(bad) + " of the line (byte " + std::to_string(start + bad) +
                        " of the file); examples are UTF-8 text");
        }
        examples.push_back(unescape_example(line));
        start = end + 1;
    }
    return examples;
}

}  // namespace lamina
