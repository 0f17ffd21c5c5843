// lamina run: generate continuations of prompts, shaped like TensorRT-LLM's run.py: one prompt
// (--input_text), many (--input_file, batched), a chat turn or an interactive chat (--chat), greedy,
// sampled or beam search, with stop strings, streaming, and a JSON record (--output_json).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/file_util.h"
#include "runtime/beam_search.h"
#include "runtime/generator.h"
#include "runtime/stop_strings.h"
#include "tokenizer/chat_template.h"

namespace lamina::cli {

namespace {
// Sequences decoded together when prompts come from a file and --max_batch_size is not given.
constexpr int64_t kDefaultBatch = 8;
constexpr const char* kDefaultPrompt = "Born in north-east France, Soyer trained as a";
constexpr int64_t kDefaultOutputLen = 64;
constexpr int64_t kDefaultChatOutputLen = 512;

struct RunArgs {
    ModelArgs model;
    SamplingArgs sampling;
    std::string input_text = kDefaultPrompt, input_file, system, output_json, early_stopping = "false";
    std::vector<std::string> stops;
    int64_t max_output_len = kDefaultOutputLen, num_beams = 1, num_return_sequences = 0, no_repeat_ngram_size = 0;
    float length_penalty = 1.0f;
    bool chat = false, stream = false, raw = false;
};

std::string as_quoted(const std::string& s) { return "\"" + s + "\""; }

// Prompts of --input_file: JSON Lines with a "prompt" string when the first non-blank line starts with
// '{', else one prompt per non-blank line. "-" reads standard input.
std::vector<std::string> read_prompts(const std::string& path) {
    std::istringstream file;
    std::istream* in = &std::cin;
    if (path != "-") {
        file.str(read_regular_file(path, "--input_file"));
        in = &file;
    }
    const std::string name = path == "-" ? "standard input" : path;
    std::vector<std::string> prompts;
    std::string line;
    int64_t n = 0;
    bool jsonl = false, first = true;
    while (std::getline(*in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        if (first) jsonl = line[line.find_first_not_of(" \t")] == '{';
        first = false;
        if (!jsonl) {
            prompts.push_back(line);
            continue;
        }
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception&) {
            throw Error(name + ":" + std::to_string(n) + ": not a JSON object (JSON Lines input needs one per line)");
        }
        if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
            throw Error(name + ":" + std::to_string(n) + ": needs a \"prompt\" string");
        prompts.push_back(j["prompt"].get<std::string>());
    }
    if (in->bad()) throw Error(name + ": read error");
    if (prompts.empty()) throw Error("--input_file " + name + ": no prompts");
    return prompts;
}

struct Output {
    std::vector<int32_t> ids;
    std::string text;
    std::string finish_reason;  // "stop" (a stop token or string) or "length"
    float score = 0.0f;         // beam search: HF's sequences_scores
};

struct RunContext {
    const RunArgs& a;
    const Tokenizer& tok;
    Backend& backend;
    const Engine& engine;
};

// Greedy or sampled continuations of every prompt, with stop strings; `on_text(i, piece)` (optional)
// gets each prompt's text as it becomes final.
std::vector<Output> generate(const RunContext& ctx, Generator& gen, const std::vector<std::vector<int32_t>>& prompts,
                             const SamplingParams& sampling,
                             const std::function<void(size_t, const std::string&)>& on_text = {}) {
    GenerationParams params;
    params.max_new_tokens = ctx.a.max_output_len;
    params.sampling = sampling;
    params.stop_ids = ctx.tok.vocab().stop_ids;
    std::vector<StreamDecoder> decoders;
    std::vector<StopStrings> stops;
    std::vector<Output> outs(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        decoders.emplace_back(ctx.tok, true);
        stops.emplace_back(ctx.a.stops);
    }
    params.stop_requested = [&](size_t i) { return stops[i].stopped(); };
    auto emit = [&](size_t i, const std::string& piece) {
        outs[i].text += piece;
        if (on_text && !piece.empty()) on_text(i, piece);
    };
    const auto ids = gen.generate(prompts, params, [&](size_t i, int32_t id) { emit(i, stops[i].push(decoders[i].push(id))); });
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (!stops[i].stopped()) emit(i, stops[i].push(decoders[i].flush()) + stops[i].flush());
        outs[i].ids = ids[i];
        const bool hit_stop_id = !ids[i].empty() && std::find(params.stop_ids.begin(), params.stop_ids.end(), ids[i].back()) !=
                                                        params.stop_ids.end();
        outs[i].finish_reason = stops[i].stopped() || hit_stop_id ? "stop" : "length";
    }
    return outs;
}

std::vector<std::vector<Output>> beam_search(const RunContext& ctx, const std::vector<std::vector<int32_t>>& prompts,
                                             int64_t n_prompt) {
    const RunArgs& a = ctx.a;
    BeamSearchParams p;
    p.num_beams = a.num_beams;
    p.num_return_sequences = a.num_return_sequences;
    p.max_new_tokens = a.max_output_len;
    p.length_penalty = a.length_penalty;
    p.early_stopping = early_stopping_from_name(a.early_stopping);
    p.no_repeat_ngram_size = a.no_repeat_ngram_size;
    p.repetition_penalty = a.sampling.repetition_penalty;
    p.eos_ids = ctx.tok.vocab().stop_ids;
    p.validate();
    BeamSearch search(ctx.engine, ctx.backend, n_prompt, a.num_beams, a.model.kv_cache_bytes);
    std::vector<std::vector<Output>> results;
    for (size_t g0 = 0; g0 < prompts.size(); g0 += static_cast<size_t>(n_prompt)) {
        const std::vector<std::vector<int32_t>> group(prompts.begin() + static_cast<std::ptrdiff_t>(g0),
                                                      prompts.begin() + static_cast<std::ptrdiff_t>(
                                                          std::min(prompts.size(), g0 + static_cast<size_t>(n_prompt))));
        for (const auto& hyps : search.generate(group, p)) {
            auto& r = results.emplace_back();
            for (const auto& h : hyps) {
                const bool eos = !h.tokens.empty() && std::find(p.eos_ids.begin(), p.eos_ids.end(), h.tokens.back()) != p.eos_ids.end();
                r.push_back({h.tokens, ctx.tok.decode(h.tokens, true), eos ? "stop" : "length", h.score});
            }
        }
    }
    return results;
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& text, bool chat, const std::string& system,
                                   size_t index) {
    if (text.empty()) throw Error("prompt " + std::to_string(index) + " is empty");
    std::vector<ChatMessage> messages;
    if (!system.empty()) messages.push_back({"system", system});
    messages.push_back({"user", text});
    const std::string prompt = chat ? apply_chat_template(tok.vocab(), messages) : text;
    std::vector<int32_t> ids = tok.encode(prompt, !chat, chat);
    if (ids.empty()) throw Error("prompt " + std::to_string(index) + " encodes to no tokens");
    return ids;
}

// --chat with a terminal on stdin and no prompt given: read a user turn, stream the reply, repeat.
// The conversation is re-encoded each turn; it must fit the engine's max_input_len.
void chat_loop(const RunContext& ctx, Generator& gen, const SamplingParams& sampling) {
    std::vector<ChatMessage> messages;
    if (!ctx.a.system.empty()) messages.push_back({"system", ctx.a.system});
    std::fprintf(stderr, "lamina chat: type a message and press Enter; an empty line or Ctrl-D ends.\n");
    std::string line;
    while (true) {
        std::fputs("> ", stdout);
        std::fflush(stdout);
        if (!std::getline(std::cin, line) || line.empty()) break;
        messages.push_back({"user", line});
        const std::string prompt = apply_chat_template(ctx.tok.vocab(), messages);
        const std::vector<int32_t> ids = ctx.tok.encode(prompt, false, true);
        const auto outs = generate(ctx, gen, {ids}, sampling, [](size_t, const std::string& piece) {
            std::fputs(piece.c_str(), stdout);
            std::fflush(stdout);
        });
        std::fputs("\n", stdout);
        messages.push_back({"assistant", outs[0].text});
    }
    std::fputs("\n", stdout);
}

void write_record(const RunContext& ctx, const std::string& path, const std::vector<std::string>& texts,
                const std::vector<std::vector<int32_t>>& prompts, const std::vector<std::vector<Output>>& results,
                const SamplingParams& sampling, const nlohmann::json& timings) {
    const RunArgs& a = ctx.a;
    nlohmann::json j;
    j["lamina_version"] = LAMINA_VERSION;
    j["model"] = a.model.engine_dir.empty() ? a.model.model_dir : a.model.engine_dir;
    j["device"] = ctx.backend.name();
    j["dtype"] = dtype_name(ctx.engine.dtype());
    if (a.num_beams > 1) {
        j["beam_search"] = {{"num_beams", a.num_beams},           {"length_penalty", a.length_penalty},
                            {"early_stopping", a.early_stopping}, {"no_repeat_ngram_size", a.no_repeat_ngram_size},
                            {"repetition_penalty", sampling.repetition_penalty}};
    } else {
        j["sampling"] = {{"greedy", sampling.greedy()},       {"temperature", sampling.temperature},
                         {"top_k", sampling.top_k},           {"top_p", sampling.top_p},
                         {"repetition_penalty", sampling.repetition_penalty}, {"seed", sampling.seed}};
    }
    j["max_output_len"] = a.max_output_len;
    j["stop"] = a.stops;
    j["results"] = nlohmann::json::array();
    for (size_t i = 0; i < texts.size(); ++i) {
        nlohmann::json r = {{"prompt", texts[i]}, {"prompt_tokens", prompts[i].size()}, {"outputs", nlohmann::json::array()}};
        for (const Output& o : results[i]) {
            nlohmann::json oj = {{"text", o.text}, {"tokens", o.ids.size()}, {"ids", o.ids}, {"finish_reason", o.finish_reason}};
            if (a.num_beams > 1) oj["score"] = o.score;
            r["outputs"].push_back(oj);
        }
        j["results"].push_back(r);
    }
    j["timings"] = timings;
    write_json_file(path, j, "--output_json");
}
}  // namespace

Handler add_run(CLI::App& app) {
    auto a = std::make_shared<RunArgs>();
    CLI::App* cmd = app.add_subcommand("run", "Generate text from prompts (greedy, sampling, beam search, chat)");
    add_model_options(cmd, a->model, false);
    auto* text_opt = cmd->add_option("--input_text", a->input_text, "The prompt");
    auto* file_opt = cmd->add_option("--input_file", a->input_file,
                                     "Prompts, one per line, or JSON Lines with a \"prompt\" field; - reads stdin");
    text_opt->excludes(file_opt);
    auto* out_len_opt = cmd->add_option("--max_output_len", a->max_output_len,
                                        "New tokens at most (default 64; 512 with --chat)")
                            ->transform(integer_in(1, kMaxFlagTokens));
    add_sampling_options(cmd, a->sampling);
    cmd->add_option("--stop", a->stops, "Stop when the text contains this string (repeatable); it is not printed");
    cmd->add_option("--num_beams", a->num_beams, "Beam search with this many beams (Hugging Face semantics)")
        ->transform(integer_in(1, 64));
    cmd->add_option("--num_return_sequences", a->num_return_sequences, "Beams printed per prompt (0: all)")
        ->transform(integer_in(0, 64));
    cmd->add_option("--length_penalty", a->length_penalty, "Beam score = sum of log-probs / length^length_penalty");
    cmd->add_option("--early_stopping", a->early_stopping, "Beam search: true, false or never (HF's early_stopping)");
    cmd->add_option("--no_repeat_ngram_size", a->no_repeat_ngram_size, "Beam search: n-grams may occur once (0: off)")
        ->transform(integer_in(0, kMaxFlagTokens));
    cmd->add_flag("--chat", a->chat,
                  "Wrap the prompt in the model's chat template; with no prompt and a terminal, chat interactively");
    cmd->add_option("--system", a->system, "System message for --chat");
    cmd->add_flag("--stream", a->stream, "Print tokens as they are produced (default when stdout is a terminal)");
    cmd->add_flag("--raw", a->raw, "Print only the generated text, unquoted, one output per line");
    cmd->add_option("--output_json", a->output_json, "Write prompts, outputs, token counts, seed and timings here");
    return [a, text_opt, file_opt, out_len_opt] {
        RunArgs& r = *a;
        if (r.chat && out_len_opt->count() == 0) r.max_output_len = kDefaultChatOutputLen;
        if (!r.system.empty() && !r.chat) throw Error("--system needs --chat");
        const bool beams = r.num_beams > 1;
        const SamplingParams sampling = resolve_sampling(r.sampling);
        if (beams && !sampling.greedy())
            throw Error("--num_beams " + std::to_string(r.num_beams) + " does not combine with sampling (--temperature, --top_k, --top_p)");
        if (beams && !r.stops.empty()) throw Error("--stop is not supported with --num_beams");
        if (!beams && r.num_return_sequences > 1)
            throw Error("--num_return_sequences " + std::to_string(r.num_return_sequences) + " needs --num_beams >= it");
        const bool interactive = r.chat && text_opt->count() == 0 && file_opt->count() == 0 && ::isatty(STDIN_FILENO);

        OpenedEngine opened = open_engine(r.model, {1, 0, r.max_output_len});
        const Tokenizer& tok = opened.engine->tokenizer();
        std::vector<std::string> texts;
        if (!interactive) texts = file_opt->count() > 0 ? read_prompts(r.input_file) : std::vector<std::string>{r.input_text};
        std::vector<std::vector<int32_t>> prompts;
        size_t longest = 0;
        for (size_t i = 0; i < texts.size(); ++i) {
            prompts.push_back(encode_prompt(tok, texts[i], r.chat, r.system, i));
            longest = std::max(longest, prompts.back().size());
        }
        // Sequences at once: the prompts (at most kDefaultBatch), each with its beams, within the engine's limit.
        int64_t n_seq = std::min<int64_t>(std::max<size_t>(texts.size(), 1), kDefaultBatch);
        if (!interactive) fit_limits(r.model, opened, {n_seq * r.num_beams, static_cast<int64_t>(longest), r.max_output_len});
        n_seq = std::max<int64_t>(1, std::min(n_seq, opened.engine->limits().max_batch_size / r.num_beams));
        if (beams && r.num_beams > opened.engine->limits().max_batch_size)
            throw Error("--num_beams " + std::to_string(r.num_beams) + " needs max_batch_size >= " + std::to_string(r.num_beams) +
                        "; the engine has " + std::to_string(opened.engine->limits().max_batch_size));

        auto backend = make_backend(r.model, opened);
        const RunContext ctx{r, tok, *backend, *opened.engine};
        if (r.model.verbose && !beams) std::fprintf(stderr, "lamina: seed %llu\n", static_cast<unsigned long long>(sampling.seed));

        if (interactive) {
            Generator gen(*opened.engine, *backend, 1, r.model.kv_cache_bytes);
            chat_loop(ctx, gen, sampling);
            return 0;
        }
        const bool stream = (r.stream || ::isatty(STDOUT_FILENO)) && texts.size() == 1 && !beams;
        std::vector<std::vector<Output>> results;
        nlohmann::json timings;
        if (beams) {
            results = beam_search(ctx, prompts, n_seq);
        } else {
            Generator gen(*opened.engine, *backend, n_seq, r.model.kv_cache_bytes);
            if (stream && !r.raw) {
                std::fputs(texts[0].c_str(), stdout);
                if (r.chat) std::fputs("\n", stdout);
                std::fflush(stdout);
            }
            const auto outs = generate(ctx, gen, prompts, sampling, [&](size_t, const std::string& piece) {
                if (!stream) return;
                std::fputs(piece.c_str(), stdout);
                std::fflush(stdout);
            });
            if (stream) std::fputs("\n", stdout);
            for (const auto& o : outs) results.push_back({o});
            const GenerationStats& s = gen.stats();
            timings = {{"prompt_tokens", s.prompt_tokens},     {"generated_tokens", s.generated_tokens},
                       {"prefill_seconds", s.prefill_seconds}, {"decode_seconds", s.decode_seconds},
                       {"first_token_seconds", s.first_token_seconds},
                       {"decode_tokens_per_second", s.decode_steps > 0 ? static_cast<double>(s.generated_tokens - static_cast<int64_t>(prompts.size())) / s.decode_seconds : 0.0}};
            std::fprintf(stderr, "[%s] prompt %lld tokens in %.3f s, generated %lld tokens in %.3f s (%.1f tok/s)\n",
                         backend->name().c_str(), static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
                         static_cast<long long>(s.generated_tokens), s.decode_seconds,
                         s.decode_steps > 0 ? static_cast<double>(s.decode_steps) / s.decode_seconds : 0.0);
        }
        if (!stream) {
            for (size_t i = 0; i < results.size(); ++i) {
                if (!r.raw) std::printf("Input [Text %zu]: %s\n", i, as_quoted(texts[i]).c_str());
                for (size_t b = 0; b < results[i].size(); ++b) {
                    if (r.raw) std::printf("%s\n", results[i][b].text.c_str());
                    else std::printf("Output [Text %zu Beam %zu]: %s\n", i, b, as_quoted(results[i][b].text).c_str());
                }
            }
        }
        if (!r.output_json.empty()) write_record(ctx, r.output_json, texts, prompts, results, sampling, timings);
        return 0;
    };
}

}  // namespace lamina::cli
