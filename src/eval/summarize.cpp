#include "eval/summarize.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/generator.h"

namespace lamina {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void check_engine(const Engine& engine, const SummarizeOptions& o) {
    const EngineLimits& l = engine.limits();
    const std::string where = "engine " + engine.dir().string() + ": ";
    if (l.max_input_len < o.max_input_length)
        throw Error(where + "max_input_len " + std::to_string(l.max_input_len) + " is less than --max_input_length " +
                    std::to_string(o.max_input_length) + "; rebuild with `lamina build --max_input_len " +
                    std::to_string(o.max_input_length) + "` or lower --max_input_length");
    if (l.max_output_len < o.output_len)
        throw Error(where + "max_output_len " + std::to_string(l.max_output_len) + " is less than --output_len " +
                    std::to_string(o.output_len) + "; rebuild with `lamina build --max_output_len " +
                    std::to_string(o.output_len) + "` or lower --output_len");
    const int64_t slots = o.batch_size * o.num_beams;
    if (l.max_batch_size < slots)
        throw Error(where + "max_batch_size " + std::to_string(l.max_batch_size) + " is less than --batch_size " +
                    std::to_string(o.batch_size) + " x --num_beams " + std::to_string(o.num_beams) + " = " +
                    std::to_string(slots) + " sequences; rebuild with `lamina build --max_batch_size " +
                    std::to_string(slots) + "` or lower --batch_size");
}
}  // namespace

size_t SummarizeOptions::n_examples(size_t dataset_size) const {
    return static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(dataset_size), max_ite * batch_size));
}

void SummarizeOptions::validate() const {
    auto positive = [](int64_t v, const char* flag) {
        if (v < 1) throw Error(std::string(flag) + " must be >= 1, got " + std::to_string(v));
    };
    positive(max_input_length, "--max_input_length");
    positive(output_len, "--output_len");
    positive(batch_size, "--batch_size");
    positive(max_ite, "--max_ite");
    positive(num_beams, "--num_beams");
    if (num_beams == 1) {
        if (num_return_sequences > 1)
            throw Error("--num_return_sequences " + std::to_string(num_return_sequences) + " needs --num_beams >= it");
        if (no_repeat_ngram_size > 0)
            throw Error("--no_repeat_ngram_size is implemented for beam search only; use --num_beams > 1");
        SamplingParams s;
        s.top_k = top_k;
        s.top_p = top_p;
        s.temperature = temperature;
        s.repetition_penalty = repetition_penalty;
        s.validate();
    } else {
        BeamSearchParams b;
        b.num_beams = num_beams;
        b.num_return_sequences = num_return_sequences;
        b.max_new_tokens = output_len;
        b.length_penalty = length_penalty;
        b.no_repeat_ngram_size = no_repeat_ngram_size;
        b.repetition_penalty = repetition_penalty;
        b.validate();
        if (top_k != 1 || temperature != 1.0f || (top_p > 0.0f && top_p < 1.0f))
            throw Error("beam search is deterministic (HF's do_sample=False): leave --top_k, --top_p and --temperature unset with --num_beams > 1");
    }
}

SummarizeRun run_summarize(const Engine& engine, Backend& backend, const std::vector<SummarizeExample>& examples,
                           const SummarizeOptions& o, const std::function<void(const SummarizeRun&, size_t)>& progress) {
    o.validate();
    check_engine(engine, o);
    const Tokenizer& tok = engine.tokenizer();
    SummarizeRun run;
    run.options = o;
    run.eos_id = tok.vocab().eos_id;
    const std::vector<int32_t> eos_ids = run.eos_id >= 0 ? std::vector<int32_t>{run.eos_id} : std::vector<int32_t>{};
    const size_t n = o.n_examples(examples.size());
    const size_t n_return = static_cast<size_t>(o.n_return());

    // Set up once (buffers and KV cache sized here), outside the timed batches.
    std::unique_ptr<Generator> generator;
    std::unique_ptr<BeamSearch> beams;
    GenerationParams gen_params;
    BeamSearchParams beam_params;
    if (o.num_beams == 1) {
        generator = std::make_unique<Generator>(engine, backend, o.batch_size, o.kv_cache_bytes);
        gen_params.max_new_tokens = o.output_len;
        gen_params.sampling.top_k = o.top_k;
        gen_params.sampling.top_p = o.top_p;
        gen_params.sampling.temperature = o.temperature;
        gen_params.sampling.repetition_penalty = o.repetition_penalty;
        gen_params.sampling.seed = o.seed;
        gen_params.stop_ids = eos_ids;
    } else {
        beams = std::make_unique<BeamSearch>(engine, backend, o.batch_size, o.num_beams, o.kv_cache_bytes);
        beam_params.num_beams = o.num_beams;
        beam_params.num_return_sequences = static_cast<int64_t>(n_return);
        beam_params.max_new_tokens = o.output_len;
        beam_params.length_penalty = o.length_penalty;
        beam_params.early_stopping = o.early_stopping;
        beam_params.no_repeat_ngram_size = o.no_repeat_ngram_size;
        beam_params.repetition_penalty = o.repetition_penalty;
        beam_params.eos_ids = eos_ids;
    }

    run.examples.resize(n);
    for (size_t b0 = 0; b0 < n; b0 += static_cast<size_t>(o.batch_size)) {
        const size_t b1 = std::min(n, b0 + static_cast<size_t>(o.batch_size));
        const auto t0 = Clock::now();
        std::vector<std::vector<int32_t>> prompts;
        for (size_t i = b0; i < b1; ++i) {
            const std::vector<int32_t> ids = tok.encode(summarize_prompt(examples[i].article), true, true);
            prompts.push_back(keep_last_tokens(ids, o.max_input_length));
        }
        const auto t_prompts = Clock::now();
        std::vector<std::vector<std::vector<int32_t>>> outputs(prompts.size());
        std::vector<double> first_token(prompts.size(), -1.0);
        if (generator) {
            const auto generated = generator->generate(prompts, gen_params, [&](size_t i, int32_t) {
                if (first_token[i] < 0.0) first_token[i] = seconds_between(t0, Clock::now());
            });
            for (size_t i = 0; i < prompts.size(); ++i) outputs[i] = {generated[i]};
        } else {
            const auto hyps = beams->generate(prompts, beam_params);
            for (size_t i = 0; i < prompts.size(); ++i) {
                for (const BeamHypothesis& h : hyps[i]) outputs[i].push_back(h.tokens);
                first_token[i] = seconds_between(t0, t_prompts) + beams->stats().first_token_seconds[i];
            }
        }
        std::vector<std::vector<std::string>> texts(prompts.size());
        for (size_t i = 0; i < prompts.size(); ++i)
            for (const auto& ids : outputs[i]) texts[i].push_back(tok.decode(ids, true));
        const double latency = seconds_between(t0, Clock::now());
        run.total_latency_s += latency;

        for (size_t i = 0; i < prompts.size(); ++i) {
            SummarizeOutput& out = run.examples[b0 + i];
            out.id = examples[b0 + i].id;
            out.line = examples[b0 + i].line;
            out.input_tokens = static_cast<int64_t>(prompts[i].size());
            out.output_ids = std::move(outputs[i]);
            out.outputs = std::move(texts[i]);
            out.latency_s = latency;
            out.first_token_latency_s = first_token[i];
        }
        if (progress) progress(run, b1);
    }

    // ROUGE per returned beam, outside the timed part (summarize.py's evaluate.compute()).
    run.scores.resize(n_return);
    for (size_t beam = 0; beam < n_return; ++beam) {
        std::vector<RougeScores> per_example;
        for (size_t i = 0; i < n; ++i) {
            SummarizeOutput& out = run.examples[i];
            out.rouge.push_back(score_rouge(out.outputs[beam], examples[i].highlights, o.use_stemmer));
            per_example.push_back(out.rouge.back());
        }
        run.scores[beam] = aggregate_rouge(per_example);
    }
    return run;
}

}  // namespace lamina
