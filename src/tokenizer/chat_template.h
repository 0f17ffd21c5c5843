// Chat prompts: renders (role, content) messages into the text a chat model was trained on.
//
// Lamina does not run Jinja. It recognizes the template stored in the checkpoint as one of a few
// known formats and renders that format in C++, reproducing the template's output exactly:
//   ChatML  ("<|im_start|>"): <|im_start|>{role}\n{content}<|im_end|>\n …, plus the template's own
//           default system message when it has one and the first message is not a system message
//           (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
//   Llama-2 ("[INST]" with "<<SYS>>"): <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>…
//   Llama-3 ("<|start_header_id|>", without 3.1's date header): <|begin_of_text|><|start_header_id|>{role}
//           <|end_header_id|>\n\n{content}<|eot_id|>…
// Anything else throws lamina::Error. The result already contains whatever BOS text the template
// writes, so encode it with parse_special = true and add_special = false.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace lamina {

enum class ChatFormat { ChatML, Llama2, Llama3 };

// Throws lamina::Error when the template is empty or not one of the known formats.
ChatFormat detect_chat_format(std::string_view chat_template);

// messages: (role, content) pairs, roles "system", "user", "assistant".
std::string apply_chat_template(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& messages,
                                bool add_generation_prompt);

}  // namespace lamina
