#include "tokenizer/chat_template.h"

#include "core/error.h"

namespace lamina {

namespace {

using Messages = std::vector<std::pair<std::string, std::string>>;

// How much of an unrecognized template an error message quotes.
constexpr size_t kQuoteLength = 80;

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// Jinja's `trim` filter / Python str.strip() on ASCII whitespace.
std::string strip(std::string_view s) {
    constexpr std::string_view kSpace = " \t\n\r\f\v";
    const size_t first = s.find_first_not_of(kSpace);
    if (first == std::string_view::npos) return {};
    const size_t last = s.find_last_not_of(kSpace);
    return std::string(s.substr(first, last - first + 1));
}

// Undoes the escapes of a Jinja string literal (\n, \t, \', \", \\).
std::string jinja_unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        const char c = s[++i];
        out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    }
    return out;
}

// A constant system message written by a ChatML template ('<|im_start|>system\n…<|im_end|>' as a
// string literal), which the template emits when the conversation does not start with one.
std::string chatml_default_system(std::string_view tmpl) {
    constexpr std::string_view kOpen = "<|im_start|>system";
    constexpr std::string_view kClose = "<|im_end|>";
    const size_t open = tmpl.find(kOpen);
    if (open == std::string_view::npos) return {};
    size_t start = open + kOpen.size();
    // The newline after the role is either a real newline or the escape "\n" in the Jinja source.
    if (tmpl.substr(start).starts_with("\n")) {
        start += 1;
    } else if (tmpl.substr(start).starts_with("\\n")) {
        start += 2;
    } else {
        return {};
    }
    const size_t close = tmpl.find(kClose, start);
    if (close == std::string_view::npos) return {};
    const std::string_view body = tmpl.substr(start, close - start);
    // Only a literal counts; an expression ("' + message['content'] + '") is not a default.
    if (contains(body, "'") || contains(body, "\"") || contains(body, "{")) return {};
    return jinja_unescape(body);
}

std::string token_text(const Vocab& v, int32_t id, const char* what) {
    if (id < 0) throw Error(std::string("the chat template needs a ") + what + " token, but the vocab has none");
    return v.tokens[static_cast<size_t>(id)];
}

std::string render_chatml(const Vocab& v, const Messages& messages, bool add_generation_prompt) {
    const std::string default_system = chatml_default_system(v.chat_template);
    std::string out;
    for (size_t i = 0; i < messages.size(); ++i) {
        const auto& [role, content] = messages[i];
        if (i == 0 && role != "system" && !default_system.empty()) {
            out += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
        }
        out += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

// Meta's Llama-2-chat template: the system prompt is folded into the first user turn; the roles must
// alternate user/assistant (the template raises an exception otherwise). It has no generation prompt.
std::string render_llama2(const Vocab& v, const Messages& messages) {
    const std::string bos = token_text(v, v.bos_id, "BOS");
    const std::string eos = token_text(v, v.eos_id, "EOS");
    size_t first = 0;
    std::string system;
    if (!messages.empty() && messages[0].first == "system") {
        system = messages[0].second;
        first = 1;
    }
    std::string out;
    for (size_t i = first; i < messages.size(); ++i) {
        const auto& [role, content] = messages[i];
        const bool expect_user = (i - first) % 2 == 0;
        if ((role == "user") != expect_user || (role != "user" && role != "assistant")) {
            throw Error("Llama-2 chat: roles must alternate user/assistant (message " + std::to_string(i) + " is '" +
                        role + "')");
        }
        std::string text = content;
        if (i == first && first == 1) text = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
        if (role == "user") {
            out += bos + "[INST] " + strip(text) + " [/INST]";
        } else {
            // Appended piece by piece: `" " + std::string&&` trips a GCC 12 -Wrestrict false positive.
            out += ' ';
            out += strip(text);
            out += ' ';
            out += eos;
        }
    }
    return out;
}

std::string render_llama3(const Vocab& v, const Messages& messages, bool add_generation_prompt) {
    std::string out;
    for (size_t i = 0; i < messages.size(); ++i) {
        const auto& [role, content] = messages[i];
        if (i == 0) out += token_text(v, v.bos_id, "BOS");
        out += "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + strip(content) + "<|eot_id|>";
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

}  // namespace

ChatFormat detect_chat_format(std::string_view tmpl) {
    if (tmpl.empty()) throw Error("the model has no chat template");
    if (contains(tmpl, "<|im_start|>")) return ChatFormat::ChatML;
    if (contains(tmpl, "<|start_header_id|>")) {
        // Llama 3.1+ templates write a dated system header and tool blocks that Lamina does not render.
        if (contains(tmpl, "Cutting Knowledge Date")) {
            throw Error("unsupported chat template: Llama 3.1-style (dated system header)");
        }
        return ChatFormat::Llama3;
    }
    if (contains(tmpl, "[INST]") && contains(tmpl, "<<SYS>>")) return ChatFormat::Llama2;
    throw Error("unsupported chat template (not ChatML, Llama-2 or Llama-3): \"" +
                std::string(tmpl.substr(0, kQuoteLength)) + (tmpl.size() > kQuoteLength ? "…\"" : "\""));
}

std::string apply_chat_template(const Vocab& vocab, const Messages& messages, bool add_generation_prompt) {
    switch (detect_chat_format(vocab.chat_template)) {
        case ChatFormat::ChatML: return render_chatml(vocab, messages, add_generation_prompt);
        case ChatFormat::Llama2: return render_llama2(vocab, messages);
        case ChatFormat::Llama3: return render_llama3(vocab, messages, add_generation_prompt);
    }
    LAMINA_CHECK(false, "unhandled ChatFormat");
}

}  // namespace lamina
