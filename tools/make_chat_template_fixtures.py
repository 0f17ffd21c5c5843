#!/usr/bin/env python3
"""Renders the chat templates in tests/data/chat_templates/ with transformers' apply_chat_template.

Writes tests/data/chat_templates/reference.json: for every template, several conversations (with and
without a system prompt, several turns, add_generation_prompt on and off, unicode and characters that
Jinja or JSON would treat specially, tools and tool calls where the template has them, a fixed
date_string for Llama 3.x) and the exact text transformers renders for each, or the message of the
exception the template raises. tests/tokenizer/chat_template_test.cpp checks Lamina renders the same
bytes.

The tokenizer is SmolLM2's (tests/data/smollm2_hf_tokenizer); only its apply_chat_template is used,
with tokenizer.chat_template set to each template and the model's own bos_token / eos_token (as its
tokenizer_config.json has them) passed as template variables, which take precedence over the
tokenizer's special tokens.

    /opt/hfref/bin/python tools/make_chat_template_fixtures.py
"""

import json
import platform
import sys
from pathlib import Path

import jinja2
import tokenizers
import transformers
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "tests" / "data" / "chat_templates"
TOKENIZER_DIR = ROOT / "tests" / "data" / "smollm2_hf_tokenizer"
OUT = TEMPLATE_DIR / "reference.json"

# The template file and the special tokens each model's tokenizer_config.json declares.
TEMPLATES = {
    "llama-3.1": {"file": "meta-llama-Llama-3.1-8B-Instruct.jinja", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama-3.2": {"file": "meta-llama-Llama-3.2-3B-Instruct.jinja", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral-nemo": {"file": "mistralai-Mistral-Nemo-Instruct-2407.jinja", "bos_token": "<s>", "eos_token": "</s>"},
    "qwen-2.5": {"file": "Qwen-Qwen2.5-7B-Instruct.jinja", "bos_token": None, "eos_token": "<|im_end|>"},
    "gemma-3": {"file": "google-gemma-3-it.jinja", "bos_token": "<bos>", "eos_token": "<eos>"},
    "phi-3.5": {"file": "microsoft-Phi-3.5-mini-instruct.jinja", "bos_token": "<s>", "eos_token": "<|endoftext|>"},
    "smollm2": {"file": "HuggingFaceTB-SmolLM2-135M-Instruct.jinja", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
}

SYSTEM = "You are a terse assistant. Answer in one sentence."

# Text that would break a template engine that does not treat message content as data, or a JSON /
# UTF-8 layer that mangles it: quotes, backslashes, Jinja delimiters, tabs, CRLF, accents, CJK, emoji
# (4-byte UTF-8), a combining mark, and whitespace at both ends (which some templates trim).
AWKWARD = "  Ünïcödé ✓ 日本語 🦙 e\u0301 \"double\" 'single' \\back\\slash {{ not }} {% raw %} \t tab\r\nCRLF  \n"

CONVERSATIONS = {
    "system_three_turns": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Germany?"},
        {"role": "assistant", "content": "Berlin."},
        {"role": "user", "content": "Which of the two is larger?"},
    ],
    "no_system_two_turns": [
        {"role": "user", "content": "Hi there!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "single_user": [
        {"role": "user", "content": "What is 2 + 2?"},
    ],
    "unicode_and_specials": [
        {"role": "system", "content": " " + SYSTEM + " \u00e9\u00e8 \n"},
        {"role": "user", "content": AWKWARD},
        {"role": "assistant", "content": "\n" + AWKWARD.strip() + "\n"},
        {"role": "user", "content": "Again:\n\n" + AWKWARD},
    ],
    "ends_with_assistant": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
    ],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city, in \"metric\" units. Ünïcode ✓",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "days": {"type": "integer", "description": "Forecast length", "enum": [1, 3, 7]},
            },
            "required": ["city"],
        },
    },
}

WEATHER_CALL = {"name": "get_weather", "arguments": {"city": "Zürich", "days": 3}}


def tool_conversation(call_id=None):
    call = {"type": "function", "function": WEATHER_CALL}
    tool = {"role": "tool", "content": '{"temperature": 21.5, "sky": "clear"}'}
    if call_id is not None:
        call["id"] = call_id
        tool["tool_call_id"] = call_id
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What's the weather in Zürich?"},
        {"role": "assistant", "tool_calls": [call]},
        tool,
        {"role": "assistant", "content": "It is 21.5 °C and clear."},
        {"role": "user", "content": "Thanks!"},
    ]


def cases_for(name):
    """(case name, messages, add_generation_prompt, tools, extra kwargs) for one template."""
    cases = []
    date = {"date_string": "07 Dec 2025"} if name.startswith("llama") else {}
    for conv_name, messages in CONVERSATIONS.items():
        for add_generation_prompt in (True, False):
            cases.append((conv_name, messages, add_generation_prompt, None, dict(date)))
    if name.startswith("llama"):
        # The template's own default date ("26 Jul 2024") where it has one; Llama 3.2 calls
        # strftime_now instead, which is today's date and cannot be a fixture.
        if name == "llama-3.1":
            cases.append(("default_date", CONVERSATIONS["system_three_turns"], True, None, {}))
        cases.append(("tools_in_user_message", tool_conversation(), True, [WEATHER_TOOL], dict(date)))
        cases.append(("tools_in_system_message", tool_conversation(), True, [WEATHER_TOOL],
                      dict(date, tools_in_user_message=False)))
    if name == "llama-3.1":
        cases.append(("builtin_tools", CONVERSATIONS["system_three_turns"], True, None,
                      dict(date, builtin_tools=["code_interpreter", "brave_search", "wolfram_alpha"])))
    if name == "qwen-2.5":
        cases.append(("tools", tool_conversation(), True, [WEATHER_TOOL], {}))
        cases.append(("tools_without_system", tool_conversation()[1:], True, [WEATHER_TOOL], {}))
    if name == "mistral-nemo":
        cases.append(("tools", tool_conversation(call_id="call12345"), True, [WEATHER_TOOL], {}))
        cases.append(("roles_must_alternate", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
                      True, None, {}))
    if name == "gemma-3":
        cases.append(("content_parts", [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
            {"role": "user", "content": [{"type": "text", "text": " Look: "}, {"type": "image"},
                                         {"type": "text", "text": "what is it? "}]},
        ], True, None, {}))
        cases.append(("roles_must_alternate", [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                               {"role": "assistant", "content": "c"}], True, None, {}))
    return cases


def main():
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    out = {
        "generated_by": "/opt/hfref/bin/python tools/make_chat_template_fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "jinja2": jinja2.__version__,
        },
        "how": "tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=..., tokenize=False, "
               "**kwargs) with tokenizer.chat_template = the template file's text; kwargs holds the model's "
               "bos_token / eos_token (omitted where the model has none) and the case's extra variables",
        "templates": {},
        "cases": [],
    }
    for name, info in TEMPLATES.items():
        template = (TEMPLATE_DIR / info["file"]).read_text(encoding="utf-8")
        tokenizer.chat_template = template
        out["templates"][name] = {k: v for k, v in info.items()}
        for case_name, messages, add_generation_prompt, tools, extra in cases_for(name):
            kwargs = {k: info[k] for k in ("bos_token", "eos_token") if info[k] is not None}
            kwargs.update(extra)
            case = {
                "template": name,
                "name": case_name,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "tools": tools,
                "kwargs": kwargs,
            }
            try:
                case["expected"] = tokenizer.apply_chat_template(
                    messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False, **kwargs)
            except jinja2.exceptions.TemplateError as e:
                case["error"] = str(e)
            out["cases"].append(case)
    OUT.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n_err = sum("error" in c for c in out["cases"])
    print(f"wrote {OUT.relative_to(ROOT)}: {len(out['cases'])} cases ({n_err} expected errors)", file=sys.stderr)


if __name__ == "__main__":
    main()
