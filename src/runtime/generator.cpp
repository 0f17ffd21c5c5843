#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/kv_budget.h"
#include "runtime/prefill_packer.h"

namespace lamina {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

ModelLimits limits_for(const Engine& e, Backend& backend, int64_t n_slot, uint64_t kv_cache_bytes) {
    if (n_slot < 1 || n_slot > e.limits().max_batch_size)
        throw Error("batch size " + std::to_string(n_slot) + " is outside [1, max_batch_size " +
                    std::to_string(e.limits().max_batch_size) + "] of the engine");
    return plan_model_limits(e, n_slot, backend.activation_dtype(), kv_cache_bytes);
}
}  // namespace

Generator::Generator(const Engine& engine, Backend& backend, int64_t n_slot, uint64_t kv_cache_bytes)
    : engine_(engine), model_(engine, backend, limits_for(engine, backend, n_slot, kv_cache_bytes)) {}

void Generator::check_prompt(const std::vector<int32_t>& prompt, size_t index) const {
    if (prompt.empty()) throw Error("prompt " + std::to_string(index) + " is empty");
    const int64_t max_in = engine_.limits().max_input_len;
    if (static_cast<int64_t>(prompt.size()) > max_in)
        throw Error("prompt " + std::to_string(index) + " has " + std::to_string(prompt.size()) +
                    " tokens, more than the engine's max_input_len " + std::to_string(max_in));
    for (int32_t id : prompt)
        if (id < 0 || id >= model_.config().n_vocab)
            throw Error("prompt " + std::to_string(index) + " has token id " + std::to_string(id) + " outside the vocabulary");
}

std::vector<std::vector<int32_t>> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                      const GenerationParams& params,
                                                      const std::function<void(size_t, int32_t)>& on_token) {
    params.sampling.validate();
    if (params.max_new_tokens < 1 || params.max_new_tokens > engine_.limits().max_output_len)
        throw Error("max new tokens " + std::to_string(params.max_new_tokens) + " is outside [1, max_output_len " +
                    std::to_string(engine_.limits().max_output_len) + "] of the engine");
    for (size_t i = 0; i < prompts.size(); ++i) {
        check_prompt(prompts[i], i);
        check_fits_kv_cache(model_.limits(), static_cast<int64_t>(prompts[i].size()), params.max_new_tokens, i);
    }

    stats_ = {};
    const auto t_start = Clock::now();
    const int64_t n_slot = model_.limits().n_slot;
    const int64_t step = model_.limits().max_step_tokens;
    std::vector<std::vector<int32_t>> outputs(prompts.size());
    std::vector<SampleRowParams> row_params;
    std::vector<double> uniforms;
    std::vector<int32_t> ids, pos, slots, logit_rows;
    auto is_stop = [&](int32_t id) {
        return std::find(params.stop_ids.begin(), params.stop_ids.end(), id) != params.stop_ids.end();
    };

    for (size_t g0 = 0; g0 < prompts.size(); g0 += static_cast<size_t>(n_slot)) {
        const size_t g1 = std::min(prompts.size(), g0 + static_cast<size_t>(n_slot));
        // Each sequence gets its own sampler seeded the same way, so batching never changes a result.
        std::vector<Sampler> samplers;
        std::vector<std::vector<int32_t>> history(g1 - g0);
        for (size_t i = g0; i < g1; ++i) {
            samplers.emplace_back(params.sampling);
            history[i - g0] = prompts[i];
        }
        std::vector<bool> live(g1 - g0, true);
        // Greedy without penalties needs only the argmax; otherwise the backend samples. Either way only
        // ids come back from the device.
        const bool device_greedy = params.sampling.greedy() && params.sampling.repetition_penalty == 1.0f;
        std::vector<int32_t> chosen;
        auto run = [&](std::span<const int32_t> rows, const std::vector<size_t>& seqs) {
            chosen.resize(rows.size());
            if (device_greedy) {
                model_.forward_argmax(ids, pos, slots, rows, chosen.data());
                return;
            }
            // Each row is sampled where the logits are (Backend::sample_rows), from its sequence's seeded
            // uniform stream: only the ids come back.
            row_params.clear();
            uniforms.clear();
            for (size_t s : seqs) {
                row_params.push_back(params.sampling.row(history[s]));
                uniforms.push_back(samplers[s].next_uniform());
            }
            model_.forward_sample(ids, pos, slots, rows, row_params, uniforms, chosen.data());
        };
        auto accept = [&](size_t s, int32_t id) {
            history[s].push_back(id);
            outputs[g0 + s].push_back(id);
            ++stats_.generated_tokens;
            if (on_token) on_token(g0 + s, id);
            if (is_stop(id) || static_cast<int64_t>(outputs[g0 + s].size()) >= params.max_new_tokens ||
                (params.stop_requested && params.stop_requested(g0 + s)))
                live[s] = false;
        };

        // Prefill: prompt tokens of the group packed into steps of at most `step` tokens; sequence s of
        // the group uses KV slot s.
        std::vector<std::span<const int32_t>> group_prompts;
        std::vector<int32_t> group_slots;
        for (size_t i = g0; i < g1; ++i) {
            group_prompts.emplace_back(prompts[i]);
            group_slots.push_back(static_cast<int32_t>(i - g0));
        }
        PrefillPacker packer(std::move(group_prompts), std::move(group_slots), step);
        while (packer.next()) {
            ids = packer.ids;
            pos = packer.positions;
            slots = packer.slots;
            logit_rows = packer.logit_rows;
            const std::vector<size_t>& finishing = packer.finishing;
            const auto t0 = Clock::now();
            if (!logit_rows.empty()) {
                run(logit_rows, finishing);
            } else {  // a chunk in the middle of a long prompt: its last token's choice is unused
                const int32_t last = static_cast<int32_t>(ids.size() - 1);
                model_.forward_argmax(ids, pos, slots, std::span<const int32_t>(&last, 1), &chosen.emplace_back());
            }
            stats_.prefill_seconds += seconds_since(t0);
            stats_.prompt_tokens += static_cast<int64_t>(ids.size());
            for (size_t r = 0; r < finishing.size(); ++r) accept(finishing[r], chosen[r]);
        }
        if (g0 == 0) stats_.first_token_seconds = seconds_since(t_start);

        // Decode: one token for every live sequence per step.
        while (std::find(live.begin(), live.end(), true) != live.end()) {
            ids.clear(); pos.clear(); slots.clear(); logit_rows.clear();
            std::vector<size_t> active;
            for (size_t s = 0; s < live.size(); ++s) {
                if (!live[s]) continue;
                logit_rows.push_back(static_cast<int32_t>(ids.size()));
                ids.push_back(history[s].back());
                pos.push_back(static_cast<int32_t>(history[s].size() - 1));
                slots.push_back(static_cast<int32_t>(s));
                active.push_back(s);
            }
            const double c0 = model_.collective_seconds();  // reading it may synchronize: outside the step's time
            const auto t0 = Clock::now();
            run(logit_rows, active);
            stats_.decode_seconds += seconds_since(t0);
            stats_.decode_collective_seconds += model_.collective_seconds() - c0;
            ++stats_.decode_steps;
            for (size_t r = 0; r < active.size(); ++r) accept(active[r], chosen[r]);
        }
    }
    return outputs;
}

std::vector<float> Generator::prompt_logits(const std::vector<int32_t>& prompt) {
    check_prompt(prompt, 0);
    const int64_t n_vocab = model_.config().n_vocab;
    const int64_t step = model_.limits().max_step_tokens;
    std::vector<float> out(prompt.size() * static_cast<size_t>(n_vocab));
    std::vector<int32_t> ids, pos, slots, rows;
    for (size_t c0 = 0; c0 < prompt.size(); c0 += static_cast<size_t>(step)) {
        const size_t c1 = std::min(prompt.size(), c0 + static_cast<size_t>(step));
        ids.assign(prompt.begin() + static_cast<std::ptrdiff_t>(c0), prompt.begin() + static_cast<std::ptrdiff_t>(c1));
        pos.clear(); slots.assign(ids.size(), 0); rows.clear();
        for (size_t j = c0; j < c1; ++j) {
            pos.push_back(static_cast<int32_t>(j));
            rows.push_back(static_cast<int32_t>(j - c0));
        }
        model_.forward(ids, pos, slots, rows, out.data() + c0 * static_cast<size_t>(n_vocab));
    }
    return out;
}

}  // namespace lamina
