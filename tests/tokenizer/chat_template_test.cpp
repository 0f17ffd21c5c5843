// Chat formats other than SmolLM2's ChatML (see smollm2_test.cpp for that one).
#include <gtest/gtest.h>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace lamina {
namespace {

// Meta's Llama-2-chat template (tokenizer_config.json of meta-llama/Llama-2-7b-chat-hf).
const char* const kLlama2Template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// Meta-Llama-3-8B-Instruct's template.
const char* const kLlama3Template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% "
    "endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

TEST(TokenizerChatTemplate, Llama2FoldsTheSystemPromptIntoTheFirstTurn) {
    Vocab v = vocab_from_gguf(GgufFile(test::tokenizer_data_dir() / "ggml-vocab-llama-spm.gguf"));
    v.chat_template = kLlama2Template;
    ASSERT_EQ(detect_chat_format(v.chat_template), ChatFormat::Llama2);
    const std::string prompt = apply_chat_template(
        v, {{"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello!"}, {"user", "Bye"}}, true);
    // strip() applies to the folded content as a whole, so the user text keeps its inner leading space.
    EXPECT_EQ(prompt, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] Bye [/INST]");
    const Tokenizer tok(v);
    const auto ids = tok.encode(prompt, false, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 2);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
    try {
        apply_chat_template(v, {{"user", "a"}, {"user", "b"}}, false);
        ADD_FAILURE() << "roles that do not alternate must be refused";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("alternate"), std::string::npos);
    }
}

TEST(TokenizerChatTemplate, Llama3) {
    Vocab v;
    v.tokens = {"<|begin_of_text|>"};
    v.types = {static_cast<int32_t>(TokenType::Control)};
    v.bos_id = 0;
    v.chat_template = kLlama3Template;
    EXPECT_EQ(apply_chat_template(v, {{"system", "S"}, {"user", " Q\n"}}, true),
              "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(TokenizerChatTemplate, ChatMLDefaultSystemMessageOnlyWhenTheTemplateHasOne) {
    Vocab v;
    // A generic ChatML template: no default system message.
    v.chat_template =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    EXPECT_EQ(apply_chat_template(v, {{"user", "Hi"}}, false), "<|im_start|>user\nHi<|im_end|>\n");
    // Qwen2-style: the default is written with "\n" escapes in the Jinja source.
    v.chat_template =
        "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' "
        "}}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}";
    EXPECT_EQ(apply_chat_template(v, {{"user", "Hi"}}, true),
              "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
              "<|im_start|>assistant\n");
}

TEST(TokenizerChatTemplate, UnknownTemplatesAreErrors) {
    Vocab v;
    for (const std::string tmpl : {"", "{{ messages[0]['content'] }}", "<|start_header_id|>Cutting Knowledge Date"}) {
        v.chat_template = tmpl;
        try {
            apply_chat_template(v, {{"user", "Hi"}}, true);
            ADD_FAILURE() << "template '" << tmpl << "' must be refused";
        } catch (const Error& e) {
            const std::string what = e.what();
            EXPECT_TRUE(what.find("chat template") != std::string::npos) << what;
        }
    }
}

}  // namespace
}  // namespace lamina
