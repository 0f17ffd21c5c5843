// Chat-template rendering: the input's first part is the Jinja template (as a checkpoint's
// tokenizer_config.json or GGUF would carry it), the second the messages in OpenAI JSON form (a fixed
// conversation when it does not parse), the third template variables (an object).
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto parts = fuzz::split_parts(data, size, 3);
    Vocab vocab;
    vocab.kind = TokenizerKind::Bpe;
    vocab.tokens = {"<s>", "</s>", "a"};
    vocab.types = {3, 3, 1};
    vocab.bos_id = 0;
    vocab.eos_id = 1;
    vocab.chat_template = std::string(parts[0]);
    vocab.source = "fuzz";

    auto parse = [](std::string_view text, nlohmann::ordered_json fallback) {
        auto j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
        return j.is_discarded() ? fallback : j;
    };
    static const auto conversation = nlohmann::ordered_json::parse(R"([{"role":"system","content":"Be brief."},
        {"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"Bye"}])");
    const auto messages = parse(parts.size() > 1 ? parts[1] : "", conversation);
    ChatTemplateOptions options;
    options.add_generation_prompt = true;
    const auto variables = parse(parts.size() > 2 ? parts[2] : "", nlohmann::ordered_json::object());
    if (variables.is_object()) options.variables = variables;
    fuzz::expect_clean([&] { apply_chat_template_json(vocab, messages, options); });
    return 0;
}
