// The step loop: packing of prompt chunks and decode tokens, sequences joining and leaving between
// steps, steps that mix policies of different outputs, and tokens that do not depend on what a sequence
// shares its steps with. On the tiny_llama engine (CPU, f32, max_input_len 24, max_batch_size 4).
#include <gtest/gtest.h>

#include <deque>

#include "../test_util.h"
#include "backend/cpu/cpu_sampling.h"
#include "runtime/generator.h"
#include "runtime/kv_budget.h"
#include "runtime/prefill_packer.h"
#include "runtime/sampling_policy.h"
#include "runtime/step_loop.h"

namespace lamina {
namespace {

TEST(PrefillPacker, PacksInOrderAndCutsWhatDoesNotFit) {
    PrefillPacker p(5);
    const std::vector<int32_t> a = {10, 11, 12}, b = {20, 21, 22, 23};
    EXPECT_EQ(p.add(a, 0, 2), 3u);
    EXPECT_EQ(p.add(b, 7, 0), 2u);  // only 2 fit: b continues in a later step, without a logits row
    EXPECT_EQ(p.room(), 0u);
    EXPECT_EQ(p.add(a, 0, 1), 0u);
    EXPECT_EQ(p.ids, (std::vector<int32_t>{10, 11, 12, 20, 21}));
    EXPECT_EQ(p.positions, (std::vector<int32_t>{0, 1, 2, 7, 8}));
    EXPECT_EQ(p.slots, (std::vector<int32_t>{2, 2, 2, 0, 0}));
    EXPECT_EQ(p.logit_rows, (std::vector<int32_t>{2}));
    p.clear();
    EXPECT_EQ(p.add(std::span(b).subspan(2), 9, 0), 2u);
    EXPECT_EQ(p.positions, (std::vector<int32_t>{9, 10}));
    EXPECT_EQ(p.logit_rows, (std::vector<int32_t>{1}));
}

// A Logits policy of one sequence: appends the argmax of the row it gets (kept in `generated`).
class HostArgmaxPolicy : public SequencePolicy {
public:
    explicit HostArgmaxPolicy(int64_t max_new_tokens) : max_new_tokens_(max_new_tokens) {}
    StepOutput output() const override { return StepOutput::Logits; }
    void on_step(StepLoop&, std::span<const StepResult> results) override {
        for (const StepResult& r : results) {
            EXPECT_EQ(r.id, -1);
            generated.push_back(argmax(r.logits));
            r.seq->tokens.push_back(generated.back());
            r.seq->finished = r.seq->n_generated() >= max_new_tokens_;
        }
    }
    std::vector<int32_t> generated;

private:
    int64_t max_new_tokens_;
};

class StepLoopTiny : public test::TinyEngineTest {
protected:
    SamplingParams greedy() const {
        SamplingParams p;
        p.temperature = 0.0f;
        return p;
    }
    SamplingParams sampled() const {
        SamplingParams p;
        p.temperature = 0.8f;
        p.top_k = 20;
        p.seed = 7;
        return p;
    }
    // A model of n_slot slots whose steps carry at most max_step_tokens tokens.
    std::unique_ptr<StepModel> model(int64_t n_slot, int64_t max_step_tokens) {
        ModelLimits limits = plan_model_limits(*engine, n_slot, backend->activation_dtype(), 0);
        limits.max_step_tokens = max_step_tokens;
        return make_step_runner(*engine, *backend, limits);
    }
    // Adds a sequence with a SamplingPolicy whose tokens go to out[index]; returns the sequence.
    Sequence& add(StepLoop& loop, const std::vector<int32_t>& prompt, int32_t slot, size_t index,
                  const SamplingParams& p, int64_t max_new_tokens) {
        if (out.size() <= index) out.resize(index + 1);
        SamplingPolicy& policy = policies.emplace_back(p, max_new_tokens, std::span<const int32_t>{},
                                                       [this](const Sequence& s, int32_t id) { out[s.index].push_back(id); });
        return loop.add(Sequence(prompt, slot, &policy, index));
    }
    // The tokens of one prompt generated alone, its prompt in one step.
    std::vector<int32_t> alone(const std::vector<int32_t>& prompt, const SamplingParams& p, int64_t max_new_tokens) {
        auto m = model(1, 24);
        StepLoop loop(*m);
        out.clear();
        add(loop, prompt, 0, 0, p, max_new_tokens);
        loop.run();
        return out.at(0);
    }

    std::vector<std::vector<int32_t>> out;
    std::deque<SamplingPolicy> policies;
    const std::vector<std::vector<int32_t>> prompts = {
        {1, 40, 41, 42}, {1, 7}, {1, 100, 200, 300, 50, 60, 70, 80, 90, 10, 11, 12, 13, 14, 15, 16, 17}, {9}};
};

TEST_F(StepLoopTiny, ChunkedBatchedPromptsEqualEachAlone) {
    // 24 prompt tokens in steps of 5: every step but the last cuts a prompt, and the 17-token prompt
    // spans four steps beside the others' chunks.
    for (const SamplingParams& p : {greedy(), sampled()}) {
        auto m = model(4, 5);
        StepLoop loop(*m);
        out.clear();
        for (size_t i = 0; i < prompts.size(); ++i) add(loop, prompts[i], static_cast<int32_t>(3 - i), i, p, 6);
        loop.run();
        EXPECT_EQ(loop.stats().prompt_tokens, 24);
        EXPECT_EQ(loop.stats().prefill_steps, 5);  // ceil(24 / 5)
        EXPECT_EQ(loop.stats().decode_steps, 5);
        EXPECT_EQ(loop.stats().generated_tokens, 4 * 5);  // each sequence's last token is never forwarded
        const auto batched = out;
        for (size_t i = 0; i < prompts.size(); ++i)
            EXPECT_EQ(alone(prompts[i], p, 6), batched[i]) << "prompt " << i << " temperature " << p.temperature;
    }
}

TEST_F(StepLoopTiny, GreedyTokensAreTheArgmaxOfAFullPrefill) {
    // An independent reference: each generated token is the argmax of the last logits row of the whole
    // sequence so far forwarded as one prompt (Generator::prompt_logits).
    auto m = model(4, 5);
    StepLoop loop(*m);
    for (size_t i = 0; i < prompts.size(); ++i) add(loop, prompts[i], static_cast<int32_t>(i), i, greedy(), 6);
    loop.run();
    Generator reference(*engine, *backend, 1);
    const auto n_vocab = static_cast<size_t>(engine->config().n_vocab);
    for (size_t i = 0; i < prompts.size(); ++i) {
        ASSERT_EQ(out[i].size(), 6u);
        std::vector<int32_t> seq = prompts[i];
        for (int32_t id : out[i]) {
            const std::vector<float> logits = reference.prompt_logits(seq);
            EXPECT_EQ(argmax(std::span(logits).subspan(logits.size() - n_vocab)), id) << "prompt " << i << " at " << seq.size();
            seq.push_back(id);
        }
    }
}

TEST_F(StepLoopTiny, ASequenceThatStopsLeavesWhileOthersContinue) {
    auto m = model(4, 24);
    StepLoop loop(*m);
    const std::vector<int64_t> budgets = {2, 9, 5};
    for (size_t i = 0; i < budgets.size(); ++i) add(loop, prompts[i], static_cast<int32_t>(i), i, sampled(), budgets[i]);
    std::vector<size_t> sizes;
    while (loop.step()) sizes.push_back(loop.size());
    // One prefill step gives each its first token; the first leaves after its second, the third after its fifth.
    EXPECT_EQ(sizes, (std::vector<size_t>{3, 2, 2, 2, 1, 1, 1, 1, 0}));
    EXPECT_EQ(loop.stats().decode_steps, 8);
    EXPECT_EQ(loop.stats().generated_tokens, 1 + 8 + 4);
    const auto together = out;
    for (size_t i = 0; i < budgets.size(); ++i) {
        EXPECT_EQ(together[i].size(), static_cast<size_t>(budgets[i]));
        EXPECT_EQ(alone(prompts[i], sampled(), budgets[i]), together[i]) << "prompt " << i;
    }
}

TEST_F(StepLoopTiny, ASequenceJoiningMidRunGetsItsOwnTokens) {
    auto m = model(2, 8);
    StepLoop loop(*m);
    add(loop, prompts[0], 0, 0, sampled(), 10);
    for (int s = 0; s < 3; ++s) ASSERT_TRUE(loop.step());
    EXPECT_EQ(loop.stats().prefill_steps, 1);
    // Joins while the first decodes: its 17-token prompt takes three steps of 8 of their own (prompts first).
    add(loop, prompts[2], 1, 1, sampled(), 7);
    loop.run();
    EXPECT_EQ(loop.stats().prefill_steps, 4);
    EXPECT_EQ(loop.stats().decode_steps, 2 + 7);  // the first's 7 tokens left outlast the second's 6
    const auto together = out;
    EXPECT_EQ(alone(prompts[0], sampled(), 10), together[0]);
    EXPECT_EQ(alone(prompts[2], sampled(), 7), together[1]);
}

TEST_F(StepLoopTiny, StepsMixingOutputsGiveEachPolicyItsTokens) {
    // Sampled (Sample), host-argmax (Logits) and greedy (Argmax) sequences share steps: with a Logits
    // sequence the step returns logits, and the others' ids are picked from their own rows on the host
    // with the backend's math; without one, the greedy row is drawn with greedy settings.
    const std::vector<int32_t> sampled_alone = alone(prompts[1], sampled(), 8);
    const std::vector<int32_t> host_alone = alone(prompts[2], greedy(), 8);
    const std::vector<int32_t> greedy_alone = alone(prompts[0], greedy(), 8);
    for (bool with_logits : {false, true}) {
        auto m = model(3, 24);
        StepLoop loop(*m);
        out.clear();
        add(loop, prompts[1], 0, 1, sampled(), 8);
        HostArgmaxPolicy host(8);
        if (with_logits) loop.add(Sequence(prompts[2], 1, &host, 2));
        add(loop, prompts[0], 2, 0, greedy(), 8);
        loop.run();
        EXPECT_EQ(out[0], greedy_alone) << "with a Logits sequence: " << with_logits;
        EXPECT_EQ(out[1], sampled_alone) << "with a Logits sequence: " << with_logits;
        if (with_logits) {
            EXPECT_EQ(host.generated, host_alone);
        }
    }
}

}  // namespace
}  // namespace lamina
