// lamina tokenize: ids (--ids) or pieces of a text, with any model's tokenizer.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"

namespace lamina::cli {

namespace {
struct TokenizeArgs {
    std::string model, text, file;
    bool ids = false, add_special = false, parse_special = false;
};
}  // namespace

Handler add_tokenize(CLI::App& app) {
    auto a = std::make_shared<TokenizeArgs>();
    CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids or pieces of a text");
    cmd->add_option("--model", a->model, "A .gguf file, HF directory or engine directory")->required();
    auto* text = cmd->add_option("--text", a->text, "The text");
    auto* file = cmd->add_option("--file", a->file, "Read the text from this file");
    text->excludes(file);
    cmd->add_flag("--ids", a->ids, "Print ids (one line, space-separated) instead of pieces");
    cmd->add_flag("--add_special", a->add_special, "Add BOS/EOS as the model does");
    cmd->add_flag("--parse_special", a->parse_special, "Match special tokens like <|im_start|> in the text");
    return [a, text, file] {
        if (text->count() == 0 && file->count() == 0) throw Error("give --text or --file");
        std::string input = a->text;
        if (file->count() > 0) input = read_text_file(a->file, "--file");
        const Tokenizer tok = load_tokenizer(a->model);
        const std::vector<int32_t> ids = tok.encode(input, a->add_special, a->parse_special);
        if (a->ids) {
            std::string line;
            for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
            std::printf("%s\n", line.c_str());
        } else {
            // Pieces as a JSON array: unambiguous even for spaces, newlines and partial UTF-8.
            nlohmann::json pieces = nlohmann::json::array();
            for (int32_t id : ids) pieces.push_back(tok.token_piece(id));
            std::printf("%s\n", pieces.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        }
        return 0;
    };
}

}  // namespace lamina::cli
