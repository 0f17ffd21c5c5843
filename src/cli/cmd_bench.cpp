// lamina bench: prefill tokens/s and decode tokens/s of an engine, with the bytes each decode step
// must read (weights + KV cache) turned into achieved GB/s, next to the machine's measured copy
// bandwidth. A benchmark, not a test: it prints numbers and asserts nothing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "runtime/generator.h"

namespace lamina::cli {

namespace {
struct BenchArgs {
    ModelArgs model;
    std::string json;
    int64_t input_len = 512, output_len = 128, repeats = 3, batch_size = 1;
    bool profile = false;
};

// Time per group of ops, from the model's intermediate hook (which synchronizes the backend before
// each call): the time between two named intermediates is the cost of the ops that produced the second.
// Graphs are off while profiling, so decode times include launch overheads that graphs remove.
void print_profile(Generator& gen, const std::vector<std::vector<int32_t>>& prompts, int64_t batch) {
    struct Cost {
        double prefill = 0, decode = 0;
    };
    std::map<std::string, Cost> costs;
    std::vector<std::string> order;
    bool in_prefill = true;
    auto last = std::chrono::steady_clock::now();
    gen.runner().set_on_intermediate([&](const std::string& name, const TensorView& v) {
        const auto now = std::chrono::steady_clock::now();
        const double s = std::chrono::duration<double>(now - last).count();
        last = now;
        std::string op = name;
        if (op.rfind("blk.", 0) == 0) op = op.substr(op.find('.', 4) + 1);
        if (!costs.count(op)) order.push_back(op);
        if (name == "embd") in_prefill = v.rows > batch;  // a step starts: prefill carries more tokens
        (in_prefill ? costs[op].prefill : costs[op].decode) += s;
    });
    GenerationParams p;
    p.max_new_tokens = 9;
    p.sampling.temperature = 0.0f;
    last = std::chrono::steady_clock::now();
    gen.generate(prompts, p);
    gen.runner().set_on_intermediate(nullptr);
    std::printf("\nprofile (synchronized per op group; graphs off):\n| ops ending at | prefill ms | decode ms/step |\n|---|---|---|\n");
    for (const auto& op : order)
        std::printf("| %s | %.3f | %.3f |\n", op.c_str(), 1e3 * costs[op].prefill, 1e3 * costs[op].decode / 8.0);
}

// Host copy bandwidth (bytes read + written per second) over a buffer far larger than the caches.
double host_copy_bandwidth() {
    constexpr size_t kBytes = size_t{256} << 20;
    std::vector<char> a(kBytes, 1), b(kBytes, 2);
    double best = 0.0;
    for (int i = 0; i < 3; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        std::memcpy(b.data(), a.data(), kBytes);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, 2.0 * kBytes / s);
        std::swap(a, b);
    }
    return best;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Bytes one batch-1 decode step reads on one rank (the whole model at tp_size 1): every matrix of the
// rank's shard once (the embedding table only a row, unless it doubles as the LM head) plus the rank's
// KV cache up to the current position. Ranks read in parallel, so this over the step time is each GPU's
// achieved bandwidth.
double decode_step_bytes(const Engine& e, int64_t position, size_t kv_elem_bytes) {
    const ModelConfig& c = e.rank(0).config;
    const LlamaWeights& w = e.rank(0).weights;
    auto bytes_of = [](const TensorView& v) { return v.empty() ? 0.0 : static_cast<double>(dtype_bytes(v.dtype, v.rows * v.cols)); };
    double bytes = 0.0;
    for (const LayerWeights& L : w.layers) bytes += bytes_of(L.wqkv) + bytes_of(L.wo) + bytes_of(L.w_gate_up) + bytes_of(L.w_down);
    bytes += bytes_of(w.output);  // LM head (the rank's vocabulary)
    if (!c.block.tied_embeddings) bytes += static_cast<double>(dtype_bytes(w.tok_embd.dtype, c.n_embd));
    bytes += 2.0 * static_cast<double>(c.n_layer * c.kv_dim() * (position + 1)) * static_cast<double>(kv_elem_bytes);
    return bytes;
}
}  // namespace

Handler add_bench(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode speed of an engine");
    add_model_options(cmd, a->model);
    cmd->add_option("--input_len", a->input_len, "Prompt tokens")->transform(integer_in(1, kMaxFlagTokens));
    cmd->add_option("--output_len", a->output_len, "Generated tokens")->transform(integer_in(1, kMaxFlagTokens));
    cmd->add_option("--repeats", a->repeats, "Timed repetitions (min and median are reported)")->transform(integer_in(1, INT32_MAX));
    cmd->add_option("--batch_size", a->batch_size, "Sequences decoded together")->transform(integer_in(1, kMaxFlagBatch));
    cmd->add_option("--json", a->json, "Also write the results to this JSON file");
    cmd->add_flag("--profile", a->profile, "Also print time per op group for one prefill and decode steps");
    return [a] {
        OpenedEngine opened = open_engine(a->model, {a->batch_size, a->input_len, a->output_len});
        const Engine& engine = *opened.engine;
        if (a->input_len > engine.limits().max_input_len)
            throw Error("--input_len " + std::to_string(a->input_len) + " exceeds the engine's max_input_len " +
                        std::to_string(engine.limits().max_input_len));
        auto backend = make_backend(a->model, opened);
        Generator gen(engine, *backend, a->batch_size, a->model.kv_cache_bytes);
        std::mt19937 rng(1234);
        std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(engine.config().n_vocab - 1));
        std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(a->batch_size));
        for (auto& p : prompts)
            for (int64_t i = 0; i < a->input_len; ++i) p.push_back(token(rng));
        GenerationParams params;
        params.max_new_tokens = a->output_len;
        params.sampling.temperature = 0.0f;  // greedy, no stop ids: exactly output_len steps

        std::vector<double> prefill_tps, decode_tps, first_token_ms;
        gen.generate(prompts, {params.max_new_tokens > 4 ? 4 : params.max_new_tokens, params.sampling, {}, {}});  // warm-up
        Progress bar("bench", static_cast<double>(a->repeats), "runs");
        for (int64_t r = 0; r < a->repeats; ++r) {
            gen.generate(prompts, params);
            const GenerationStats& s = gen.stats();
            prefill_tps.push_back(static_cast<double>(s.prompt_tokens) / s.prefill_seconds);
            decode_tps.push_back(static_cast<double>(s.decode_steps * a->batch_size) / s.decode_seconds);
            first_token_ms.push_back(1e3 * s.first_token_seconds);
            char note[64];
            std::snprintf(note, sizeof note, "decode %.1f tok/s", decode_tps.back());
            if (r + 1 < a->repeats) bar.update(static_cast<double>(r + 1), note);
            else bar.finish(note);
        }
        // Tensor parallel: one more run with the collectives timed (their events are left out of the runs
        // above), for the time rank 0 spends in all-reduces and the logits all-gather per decode step.
        double collective_ms = 0.0;
        if (engine.tp_size() > 1) {
            gen.runner().set_collective_timing(true);
            gen.generate(prompts, params);
            gen.runner().set_collective_timing(false);
            const GenerationStats& s = gen.stats();
            collective_ms = 1e3 * s.decode_collective_seconds / static_cast<double>(std::max<int64_t>(1, s.decode_steps));
        }
        // Average bytes per decode step over the positions the decode visits.
        const size_t kv_bytes = dtype_size(backend->kv_cache_dtype());
        double step_bytes = 0.0;
        for (int64_t p = a->input_len; p < a->input_len + a->output_len - 1; ++p)
            step_bytes += decode_step_bytes(engine, p, kv_bytes);
        step_bytes /= static_cast<double>(std::max<int64_t>(1, a->output_len - 1));
        const double best_decode = *std::max_element(decode_tps.begin(), decode_tps.end());
        const double steps_per_s = best_decode / static_cast<double>(a->batch_size);
        const double achieved = step_bytes * steps_per_s;
        const double ceiling = backend->name() == "cpu" ? host_copy_bandwidth() : 0.0;

        std::printf("lamina bench: %s, %s, %lld layers, n_embd %lld, batch %lld, input %lld, output %lld, %lld repeats\n",
                    backend->name().c_str(), std::string(dtype_name(engine.dtype())).c_str(),
                    static_cast<long long>(engine.config().n_layer), static_cast<long long>(engine.config().n_embd),
                    static_cast<long long>(a->batch_size), static_cast<long long>(a->input_len),
                    static_cast<long long>(a->output_len), static_cast<long long>(a->repeats));
        std::printf("| metric | best | median |\n|---|---|---|\n");
        std::printf("| prefill tokens/s | %.1f | %.1f |\n", *std::max_element(prefill_tps.begin(), prefill_tps.end()),
                    median(prefill_tps));
        std::printf("| decode tokens/s | %.1f | %.1f |\n", best_decode, median(decode_tps));
        std::printf("| decode ms/step | %.2f | %.2f |\n", 1e3 / steps_per_s,
                    1e3 * static_cast<double>(a->batch_size) / median(decode_tps));
        std::printf("| time to first token ms | %.1f | %.1f |\n", *std::min_element(first_token_ms.begin(), first_token_ms.end()),
                    median(first_token_ms));
        const char* per = engine.tp_size() > 1 ? " per rank" : "";
        std::printf("| decode bytes/step MB%s | %.1f | |\n", per, step_bytes / 1e6);
        if (ceiling > 0)
            std::printf("| decode achieved GB/s%s | %.2f (%.0f%% of copy %.2f GB/s) | |\n", per, achieved / 1e9,
                        100.0 * achieved / ceiling, ceiling / 1e9);
        else
            std::printf("| decode achieved GB/s%s | %.2f | |\n", per, achieved / 1e9);
        if (engine.tp_size() > 1)
            std::printf("| decode collectives ms/step (rank 0, waits included) | %.3f | |\n", collective_ms);
        if (a->profile) print_profile(gen, prompts, a->batch_size);
        if (!a->json.empty()) {
            nlohmann::json j = {{"device", backend->name()},
                                {"dtype", dtype_name(engine.dtype())},
                                {"model", a->model.engine_dir.empty() ? a->model.model_dir : a->model.engine_dir},
                                {"threads", a->model.threads},
                                {"batch_size", a->batch_size},
                                {"tp_size", engine.tp_size()},
                                {"decode_collective_ms_per_step", collective_ms},
                                {"input_len", a->input_len},
                                {"output_len", a->output_len},
                                {"prefill_tokens_per_s", prefill_tps},
                                {"decode_tokens_per_s", decode_tps},
                                {"first_token_ms", first_token_ms},
                                {"decode_bytes_per_step", step_bytes},
                                {"decode_achieved_gb_per_s", achieved / 1e9},
                                {"copy_bandwidth_gb_per_s", ceiling / 1e9}};
            write_json_file(a->json, j, "--json");
        }
        return 0;
    };
}

}  // namespace lamina::cli
