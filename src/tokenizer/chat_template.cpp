#include "tokenizer/chat_template.h"

#include <string_view>

#include "core/error.h"
// llama.cpp's Jinja engine and its JSON wrapper (third_party/llama_jinja/common).
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "jinja/runtime.h"
#include "json.h"

namespace lamina {

namespace {

using json = nlohmann::ordered_json;

std::string where(const Vocab& vocab) { return vocab.source.empty() ? "the model" : vocab.source; }

// The variables transformers renders a template with (PreTrainedTokenizerBase.apply_chat_template:
// messages, tools, documents, add_generation_prompt, then the special tokens map, then kwargs).
json template_variables(const Vocab& vocab, const json& messages, const ChatTemplateOptions& options) {
    json vars = json::object();
    vars["messages"] = messages;
    vars["tools"] = options.tools;
    vars["documents"] = nullptr;
    vars["add_generation_prompt"] = options.add_generation_prompt;
    const std::pair<const char*, int32_t> special[] = {
        {"bos_token", vocab.bos_id}, {"eos_token", vocab.eos_id}, {"unk_token", vocab.unk_id}, {"pad_token", vocab.pad_id}};
    for (const auto& [name, id] : special) {
        if (id >= 0 && id < vocab.n_vocab()) vars[name] = vocab.tokens[static_cast<size_t>(id)];
    }
    if (options.date_string) vars["date_string"] = *options.date_string;
    if (!options.variables.is_null()) {
        if (!options.variables.is_object()) throw Error("chat template variables must be a JSON object");
        for (const auto& [key, value] : options.variables.items()) vars[key] = value;
    }
    return vars;
}

std::string_view trim(std::string_view s) {
    constexpr std::string_view kSpace = " \t\r\n";
    const size_t first = s.find_first_not_of(kSpace);
    if (first == std::string_view::npos) return {};
    return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

std::string_view first_line(std::string_view s) {
    s = trim(s);
    return s.substr(0, s.find('\n'));
}

// The engine's messages span several lines (a source excerpt with a caret under the position):
//   syntax:  "parser: <message>\n...<excerpt>...\n   ^"
//   runtime: "\n------------\nWhile executing <node> at line L, column C in source:\n<excerpt>\n   ^\n
//             Error: <message>", where raise_exception's message reads "Jinja Exception: <text>".
// Lamina prints errors on one line: keep the message and the position.
std::string render_error_line(std::string_view what) {
    constexpr std::string_view kWhile = "While executing ";
    constexpr std::string_view kError = "\nError: ";
    constexpr std::string_view kRaised = "Jinja Exception: ";
    const size_t error_at = what.rfind(kError);
    if (error_at == std::string_view::npos) return std::string(first_line(what));
    std::string_view message = trim(what.substr(error_at + kError.size()));
    std::string position;
    if (const size_t at = what.find(kWhile); at != std::string_view::npos) {
        std::string_view line = first_line(what.substr(at + kWhile.size()));
        if (const size_t in = line.rfind(" in source:"); in != std::string_view::npos) line = line.substr(0, in);
        position = " (while executing " + std::string(line) + ")";
    }
    if (message.starts_with(kRaised)) {
        return "the chat template raised an exception: " + std::string(message.substr(kRaised.size())) + position;
    }
    std::string flat(message);
    for (char& c : flat) {
        if (c == '\n') c = ' ';
    }
    return "rendering the chat template failed: " + flat + position;
}

jinja::program parse(const Vocab& vocab) {
    try {
        jinja::lexer lexer;
        return jinja::parse_from_tokens(lexer.tokenize(vocab.chat_template));
    } catch (const std::exception& e) {
        throw Error(where(vocab) + ": the chat template does not parse: " + std::string(first_line(e.what())));
    }
}

std::string render(const Vocab& vocab, const json& messages, const ChatTemplateOptions& options) {
    if (vocab.chat_template.empty()) {
        throw Error(where(vocab) +
                    ": the model has no chat template (no tokenizer.chat_template in the GGUF, no chat_template in "
                    "tokenizer_config.json or chat_template.jinja); give the prompt as plain text instead");
    }
    if (!messages.is_array()) throw Error("chat messages must be a JSON array");
    const json vars = template_variables(vocab, messages, options);

    const jinja::program program = parse(vocab);
    try {
        // The source is given so runtime errors name a line and column.
        jinja::context ctx(vocab.chat_template);
        jinja::global_from_json(ctx, common_json::parse(vars.dump()), /*mark_input=*/false);
        jinja::runtime runtime(ctx);
        const jinja::value_array results = runtime.execute(program);
        return jinja::runtime::gather_string_parts(results)->as_string().str();
    } catch (const std::exception& e) {
        throw Error(where(vocab) + ": " + render_error_line(e.what()));
    }
}

}  // namespace

std::string apply_chat_template_json(const Vocab& vocab, const nlohmann::ordered_json& messages,
                                     const ChatTemplateOptions& options) {
    return render(vocab, messages, options);
}

std::string apply_chat_template(const Vocab& vocab, const std::vector<ChatMessage>& messages,
                                const ChatTemplateOptions& options) {
    json list = json::array();
    for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
    return render(vocab, list, options);
}

std::string apply_chat_template(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& messages,
                                bool add_generation_prompt) {
    std::vector<ChatMessage> list;
    list.reserve(messages.size());
    for (const auto& [role, content] : messages) list.push_back({role, content});
    ChatTemplateOptions options;
    options.add_generation_prompt = add_generation_prompt;
    return apply_chat_template(vocab, list, options);
}

}  // namespace lamina
