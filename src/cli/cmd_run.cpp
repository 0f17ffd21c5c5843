// lamina run: generate a continuation of one prompt, shaped like TensorRT-LLM's run.py.
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/generator.h"

namespace lamina::cli {

namespace {
struct RunArgs {
    std::string engine_dir, model_dir, dtype = "float32", device = "auto";
    uint64_t kv_cache_bytes = 0;
    std::string input_text = "Born in north-east France, Soyer trained as a";
    int64_t max_output_len = 64;
    SamplingParams sampling;
    bool chat = false, stream = false;
};

std::string as_quoted(const std::string& s) { return "\"" + s + "\""; }
}  // namespace

Handler add_run(CLI::App& app) {
    auto a = std::make_shared<RunArgs>();
    CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
    cmd->add_option("--engine_dir", a->engine_dir, "Engine directory from `lamina build`");
    cmd->add_option("--model_dir", a->model_dir, "Or a .gguf / HF directory, built on the fly");
    cmd->add_option("--dtype", a->dtype, "Engine dtype when building on the fly")
        ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
    cmd->add_option("--input_text", a->input_text, "The prompt");
    cmd->add_option("--max_output_len", a->max_output_len, "New tokens at most")->check(CLI::PositiveNumber);
    cmd->add_option("--temperature", a->sampling.temperature, "0 means greedy");
    cmd->add_option("--top_k", a->sampling.top_k, "1 means greedy, 0 no limit");
    cmd->add_option("--top_p", a->sampling.top_p);
    cmd->add_option("--seed", a->sampling.seed);
    cmd->add_option("--repetition_penalty", a->sampling.repetition_penalty);
    cmd->add_flag("--chat", a->chat, "Wrap the prompt in the model's chat template");
    cmd->add_flag("--stream", a->stream, "Print tokens as they are produced (default when stdout is a terminal)");
    cmd->add_option("--device", a->device, "cpu, cuda or auto");
    add_kv_cache_option(cmd, a->kv_cache_bytes);
    return [a] {
        a->sampling.validate();
        BuildOptions build;
        build.dtype = dtype_from_name(a->dtype);
        build.max_batch_size = 1;
        build.max_input_len = 2048;
        build.max_output_len = std::max<int64_t>(a->max_output_len, 512);
        OpenedEngine opened = open_engine(a->engine_dir, a->model_dir, build);
        const Engine& engine = *opened.engine;
        const Tokenizer& tok = engine.tokenizer();
        if (a->input_text.empty()) throw Error("--input_text is empty");

        std::string prompt = a->input_text;
        if (a->chat) prompt = apply_chat_template(tok.vocab(), {{"user", a->input_text}}, true);
        const std::vector<int32_t> ids = tok.encode(prompt, true, a->chat);
        if (ids.empty()) throw Error("--input_text encodes to no tokens");

        auto backend = make_backend(a->device, engine.dtype());
        Generator gen(engine, *backend, 1, a->kv_cache_bytes);
        GenerationParams params;
        params.max_new_tokens = a->max_output_len;
        params.sampling = a->sampling;
        params.stop_ids = tok.vocab().stop_ids;

        const bool stream = a->stream || ::isatty(STDOUT_FILENO);
        StreamDecoder decoder(tok, true);
        std::vector<std::vector<int32_t>> out;
        if (stream) {
            std::fputs(a->input_text.c_str(), stdout);
            if (a->chat) std::fputs("\n", stdout);
            std::fflush(stdout);
            out = gen.generate({ids}, params, [&](size_t, int32_t id) {
                std::fputs(decoder.push(id).c_str(), stdout);
                std::fflush(stdout);
            });
            std::fputs((decoder.flush() + "\n").c_str(), stdout);
        } else {
            out = gen.generate({ids}, params);
            std::printf("Input [Text 0]: %s\n", as_quoted(a->input_text).c_str());
            std::printf("Output [Text 0 Beam 0]: %s\n", as_quoted(tok.decode(out[0], true)).c_str());
        }
        const GenerationStats& s = gen.stats();
        std::fprintf(stderr, "[%s] prompt %lld tokens in %.3f s, generated %lld tokens in %.3f s (%.1f tok/s)\n",
                     backend->name().c_str(), static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
                     static_cast<long long>(s.generated_tokens), s.decode_seconds,
                     s.decode_steps > 0 ? static_cast<double>(s.decode_steps) / s.decode_seconds : 0.0);
        return 0;
    };
}

}  // namespace lamina::cli
