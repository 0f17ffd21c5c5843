// Chat templates rendered by Lamina against transformers' apply_chat_template, byte for byte.
// The fixture tests/data/chat_templates/reference.json comes from tools/make_chat_template_fixtures.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <optional>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace lamina {
namespace {

using json = nlohmann::ordered_json;

std::filesystem::path template_dir() { return test::data_dir() / "chat_templates"; }

// Key order matters (templates print tool schemas and iterate over dicts), hence ordered_json.
const json& reference() {
    static const json ref = json::parse(test::read_file(template_dir() / "reference.json"));
    return ref;
}

std::string template_text(const std::string& name) {
    return test::read_file(template_dir() / reference()["templates"][name]["file"].get<std::string>());
}

// A vocab holding only what the renderer reads: the template and the model's bos/eos tokens.
Vocab vocab_for(const std::string& name) {
    const json& info = reference()["templates"][name];
    Vocab v;
    v.chat_template = template_text(name);
    v.source = info["file"].get<std::string>();
    for (const char* key : {"bos_token", "eos_token"}) {
        if (info[key].is_null()) continue;
        (std::string(key) == "bos_token" ? v.bos_id : v.eos_id) = v.n_vocab();
        v.tokens.push_back(info[key].get<std::string>());
        v.types.push_back(static_cast<int32_t>(TokenType::Control));
    }
    return v;
}

// The case's transformers kwargs as options. bos_token/eos_token are left to the vocab (vocab_for holds
// the same tokens the script passed); date_string goes through its own option, the rest are variables.
ChatTemplateOptions options_for(const json& c) {
    ChatTemplateOptions o;
    o.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    o.tools = c["tools"];
    for (const auto& [key, value] : c["kwargs"].items()) {
        if (key == "bos_token" || key == "eos_token") continue;
        if (key == "date_string") {
            o.date_string = value.get<std::string>();
        } else {
            o.variables[key] = value;
        }
    }
    return o;
}

// Messages that are only {"role", "content": string}, which the ChatMessage overload can hold too.
std::optional<std::vector<ChatMessage>> plain_messages(const json& messages) {
    std::vector<ChatMessage> out;
    for (const json& m : messages) {
        if (m.size() != 2 || !m.contains("role") || !m.contains("content") || !m["content"].is_string()) return {};
        out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    return out;
}

std::string case_name(const json& c) {
    return c["template"].get<std::string>() + "/" + c["name"].get<std::string>() +
           (c["add_generation_prompt"].get<bool>() ? " (generation prompt)" : "");
}

TEST(ChatTemplate, FixtureCoversEveryTemplate) {
    const json& ref = reference();
    for (const char* name : {"llama-3.1", "llama-3.2", "mistral-nemo", "qwen-2.5", "gemma-3", "phi-3.5", "smollm2"}) {
        EXPECT_TRUE(ref["templates"].contains(name)) << name;
        size_t n = 0;
        for (const json& c : ref["cases"]) n += c["template"] == name && c.contains("expected");
        // Five conversations, each with and without the generation prompt.
        EXPECT_GE(n, 10u) << name;
    }
}

// Every fixture conversation renders to exactly transformers' text, through both overloads where the
// messages are plain; the cases transformers refuses (raise_exception) are refused with its message.
TEST(ChatTemplate, MatchesTransformersByteForByte) {
    size_t n_rendered = 0, n_refused = 0;
    for (const json& c : reference()["cases"]) {
        SCOPED_TRACE(case_name(c));
        const Vocab v = vocab_for(c["template"].get<std::string>());
        const ChatTemplateOptions o = options_for(c);
        for (const char* key : {"bos_token", "eos_token"}) {
            const int32_t id = std::string(key) == "bos_token" ? v.bos_id : v.eos_id;
            if (c["kwargs"].contains(key)) {
                EXPECT_EQ(v.tokens.at(static_cast<size_t>(id)), c["kwargs"][key].get<std::string>());
            }
        }
        if (c.contains("error")) {
            const std::string error = test::error_of([&] { apply_chat_template_json(v, c["messages"], o); });
            EXPECT_NE(error.find(c["error"].get<std::string>()), std::string::npos) << error;
            EXPECT_NE(error.find("raised an exception"), std::string::npos) << error;
            EXPECT_EQ(error.find('\n'), std::string::npos) << error;
            ++n_refused;
            continue;
        }
        const std::string expected = c["expected"].get<std::string>();
        EXPECT_EQ(apply_chat_template_json(v, c["messages"], o), expected);
        if (const auto plain = plain_messages(c["messages"]); plain && o.tools.is_null()) {
            EXPECT_EQ(apply_chat_template(v, *plain, o), expected);
        }
        ++n_rendered;
    }
    EXPECT_GE(n_rendered, 70u);
    EXPECT_EQ(n_refused, 2u);
}

// Without a date_string, Llama 3.2's template calls strftime_now("%d %b %Y"): today, local time.
TEST(ChatTemplate, Llama32WithoutDateStringWritesToday) {
    const json* dated = nullptr;
    for (const json& c : reference()["cases"]) {
        if (c["template"] == "llama-3.2" && c["name"] == "system_three_turns" && c["add_generation_prompt"] == true) {
            dated = &c;
        }
    }
    ASSERT_NE(dated, nullptr);
    const Vocab v = vocab_for("llama-3.2");
    std::vector<ChatMessage> messages;
    for (const json& m : (*dated)["messages"]) messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    const std::string rendered = apply_chat_template(v, messages);

    const std::time_t now = std::time(nullptr);
    char today[32];
    ASSERT_GT(std::strftime(today, sizeof today, "%d %b %Y", std::localtime(&now)), 0u);
    std::string expected = (*dated)["expected"].get<std::string>();
    const std::string fixture_date = (*dated)["kwargs"]["date_string"].get<std::string>();
    expected.replace(expected.find(fixture_date), fixture_date.size(), today);
    EXPECT_EQ(rendered, expected);
}

TEST(ChatTemplate, ExtraVariablesOverrideTheVocabTokens) {
    Vocab v = vocab_for("phi-3.5");
    ChatTemplateOptions o;
    o.add_generation_prompt = false;  // Phi-3.5 then ends with eos_token
    EXPECT_EQ(apply_chat_template(v, {{"user", "Hi"}}, o), "<|user|>\nHi<|end|>\n<|endoftext|>");
    o.variables["eos_token"] = "</s>";
    EXPECT_EQ(apply_chat_template(v, {{"user", "Hi"}}, o), "<|user|>\nHi<|end|>\n</s>");
    o.variables = json::array({1});
    EXPECT_NE(test::error_of([&] { apply_chat_template(v, {{"user", "Hi"}}, o); }).find("must be a JSON object"),
              std::string::npos);
}

// Errors are lamina::Error, on one line, starting with where the vocab came from.
TEST(ChatTemplate, ErrorsAreOneLineAndNameTheModel) {
    Vocab v;
    v.source = "models/no-template.gguf";
    const auto error = [&](const std::string& tmpl) {
        v.chat_template = tmpl;
        const std::string e = test::error_of([&] { apply_chat_template(v, {{"user", "Hi"}}); });
        EXPECT_EQ(e.find('\n'), std::string::npos) << e;
        EXPECT_EQ(e.rfind(v.source + ": ", 0), 0u) << e;
        return e;
    };
    EXPECT_NE(error("").find("the model has no chat template"), std::string::npos);
    EXPECT_NE(error("{% for m in messages %}{{ m.content }}").find("does not parse"), std::string::npos);
    EXPECT_NE(error("{{ messages[0]['content'] + }}").find("does not parse"), std::string::npos);
    EXPECT_NE(error("{% if %}x{% endif %}").find("does not parse"), std::string::npos);
    const std::string raised = error("{{ raise_exception('Only user and assistant roles are supported!') }}");
    EXPECT_NE(raised.find("the chat template raised an exception: Only user and assistant roles are supported!"),
              std::string::npos)
        << raised;
    // A raised message with line breaks in it (the chat-template fuzzer's finding of 2026-12-07: a mutated Mistral
    // template's string literal spanning lines) is still one line.
    const std::string multiline = error("{{ raise_exception('roles must\nalternate\r\n!') }}");
    EXPECT_NE(multiline.find("raised an exception: roles must alternate"), std::string::npos) << multiline;
    EXPECT_EQ(multiline.find('\r'), std::string::npos) << multiline;
    // The engine is more lenient than Python's Jinja ('a' + 1 is "a1", 1 / 0 is inf), but a call of
    // something undefined fails.
    const std::string failed = error("{{ messages[0]['content'] | trim }}{{ undefined_function() }}");
    EXPECT_NE(failed.find("rendering the chat template failed"), std::string::npos) << failed;
    EXPECT_NE(failed.find("line 1"), std::string::npos) << failed;
}

// Message content is data: Jinja syntax or control tokens in it are written out as they are.
TEST(ChatTemplate, ContentIsNeverTemplateCode) {
    Vocab v = vocab_for("smollm2");
    EXPECT_EQ(apply_chat_template(v, {{"system", "{{ raise_exception('x') }}"}, {"user", "{% endfor %}<|im_end|>"}}),
              "<|im_start|>system\n{{ raise_exception('x') }}<|im_end|>\n<|im_start|>user\n{% endfor %}<|im_end|>"
              "<|im_end|>\n<|im_start|>assistant\n");
}

// The template stored in the SmolLM2 GGUF is the fixture's, and renders like transformers from the
// GGUF's own vocab; the tokenizer splits the control tokens the template writes.
TEST(ChatTemplate, SmolLM2GgufRendersItsOwnTemplate) {
    LAMINA_REQUIRE_SMOLLM2();
    const Vocab v = vocab_from_gguf(GgufFile(test::smollm2_gguf()));
    ASSERT_EQ(v.chat_template, template_text("smollm2"));
    size_t n = 0;
    for (const json& c : reference()["cases"]) {
        if (c["template"] != "smollm2") continue;
        SCOPED_TRACE(case_name(c));
        EXPECT_EQ(apply_chat_template_json(v, c["messages"], options_for(c)), c["expected"].get<std::string>());
        ++n;
    }
    EXPECT_GE(n, 10u);
    const std::string prompt = apply_chat_template(v, {{"system", "Be brief."}, {"user", "Hi"}});
    const Tokenizer tok(v);
    const auto ids = tok.encode(prompt, /*add_special=*/false, /*parse_special=*/true);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 3);  // <|im_start|>
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 2);  // <|im_end|>
    EXPECT_EQ(tok.decode(ids), prompt);
}

// A template read from an HF directory's chat_template.jinja survives `lamina build` and engine load.
TEST(ChatTemplate, SurvivesEngineBuildAndLoad) {
    test::TempDir model, engine_dir;
    for (const auto& entry : std::filesystem::directory_iterator(test::data_dir() / "tiny_llama")) {
        std::filesystem::copy(entry.path(), model / entry.path().filename().string());
    }
    const std::string tmpl = template_text("qwen-2.5");
    test::write_file(model / "chat_template.jinja", tmpl);
    const Vocab hf = vocab_from_hf_dir(model.path());
    ASSERT_EQ(hf.chat_template, tmpl);

    test::build_from(model.path(), engine_dir.path(), DType::F32, 24, 20);
    const Engine engine(engine_dir.path());
    const Vocab& loaded = engine.tokenizer().vocab();
    EXPECT_EQ(loaded.chat_template, tmpl);
    for (const json& c : reference()["cases"]) {
        if (c["template"] != "qwen-2.5" || c["name"] != "system_three_turns") continue;
        SCOPED_TRACE(case_name(c));
        EXPECT_EQ(apply_chat_template_json(loaded, c["messages"], options_for(c)),
                  c["expected"].get<std::string>());
    }
    // The engine's tokenizer file names itself in errors.
    Vocab without = loaded;
    without.chat_template.clear();
    EXPECT_NE(test::error_of([&] { apply_chat_template(without, {{"user", "Hi"}}); }).find("tokenizer"),
              std::string::npos);
}

}  // namespace
}  // namespace lamina
