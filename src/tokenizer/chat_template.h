// Chat prompts: renders a conversation with the model's own Jinja chat template, as Hugging Face
// transformers' `tokenizer.apply_chat_template(messages, tokenize=False, ...)` does.
//
// The template is the checkpoint's own text (GGUF `tokenizer.chat_template`, tokenizer_config.json
// `chat_template` or chat_template.jinja), kept in Vocab::chat_template and in the engine's tokenizer
// file. It runs on llama.cpp's Jinja engine (third_party/llama_jinja), with the environment transformers
// sets up: trim_blocks and lstrip_blocks, the loop controls, `raise_exception`, `strftime_now` (local
// time) and a `tojson` that writes Python json.dumps text. The variables are those transformers passes:
//   messages, tools (none unless given), documents (none), add_generation_prompt,
//   bos_token / eos_token / unk_token / pad_token (the vocab's tokens, where it has them),
//   date_string (only when given), and any extra variables, which override all of the above.
// tests/tokenizer/chat_template_test.cpp checks the output byte for byte against transformers on the
// templates of Llama 3.1/3.2, Mistral Nemo, Qwen2.5, Gemma 3, Phi-3.5 and SmolLM2.
//
// The result already contains whatever BOS text the template writes, so encode it with
// parse_special = true and add_special = false.
//
// A template comes with a stranger's model, so rendering is bounded (the engine has no hooks for it;
// chat_template.cpp meters the parsed template's nodes): the template's size and bracket nesting, the
// depth of macro recursion, the work done (statements, loop items, items builtins scan or make), the size
// of every string and of the output, and the stack (rendering runs on its own thread with a large stack).
// Past a bound, rendering stops with a lamina::Error naming the bound. What stays unbounded is listed in
// chat_template.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace lamina {

// The longest template accepted; real ones are at most a few tens of KB.
constexpr size_t kMaxChatTemplateBytes = size_t{256} << 10;

// What rendering may cost. Defaults let real templates render conversations of thousands of turns and stop a
// hostile one within seconds and a few hundred MB.
struct ChatTemplateLimits {
    // Work units: 1 a statement or an expression Lamina meters, 10 a loop item or a macro call (the engine
    // copies the scope's variables for each), 1 an array or object item a builtin scans or makes, 1 per
    // 16 string pieces or KiB a builtin scans or makes. range(n) costs n.
    int64_t max_work = 1'000'000;
    int max_call_depth = 200;  // nested macro and caller() calls (CPython's Jinja stops near this depth too)
    // The most bytes of output, counted at every statement (a macro's output again where it is printed),
    // and the longest string; 0: 16 MiB plus 16 times the size of the messages and variables.
    size_t max_output_bytes = 0;
};

// One turn. role: "system", "user", "assistant" (or "tool" where the template knows it).
struct ChatMessage {
    std::string role;
    std::string content;
};

struct ChatTemplateOptions {
    // Ends the prompt with the header of an assistant turn, so the model writes the reply.
    bool add_generation_prompt = true;
    // Llama 3.x "Today Date: …" (e.g. "07 Dec 2025"). Unset, the template decides: Llama 3.2 calls
    // strftime_now (today), Llama 3.1 writes its own default ("26 Jul 2024").
    std::optional<std::string> date_string;
    // Tool JSON schemas as transformers takes them ([{"type": "function", "function": {...}}]); null for
    // none. Key order is kept: templates print the schemas.
    nlohmann::ordered_json tools;
    // More template variables (an object), e.g. {"tools_in_user_message": false}. They override the
    // ones above, bos_token and eos_token included.
    nlohmann::ordered_json variables = nlohmann::ordered_json::object();
    ChatTemplateLimits limits;
};

// Renders the vocab's chat template. Throws lamina::Error (one line, starting with Vocab::source) when
// the vocab has no template, when the template is too large or does not parse, when rendering fails or
// passes a bound of options.limits, and when the template refuses the conversation with raise_exception
// (the error then carries the template's message).
std::string apply_chat_template(const Vocab& vocab, const std::vector<ChatMessage>& messages,
                                const ChatTemplateOptions& options = {});

// The same for messages in the OpenAI / transformers JSON shape, for what ChatMessage cannot hold:
// assistant "tool_calls", "tool" messages with "tool_call_id", content given as a list of parts.
std::string apply_chat_template_json(const Vocab& vocab, const nlohmann::ordered_json& messages,
                                     const ChatTemplateOptions& options = {});

// The signature src/cli/cmd_run.cpp calls, kept until it moves to the ChatMessage overload:
// (role, content) pairs and add_generation_prompt.
std::string apply_chat_template(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& messages,
                                bool add_generation_prompt);

}  // namespace lamina
