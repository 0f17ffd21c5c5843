// Shared by the CPU and CUDA tests: greedy decoding with steps issued ahead (Generator::set_issue_ahead)
// must give the tokens of steps issued one at a time.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "runtime/generator.h"

namespace lamina::test {

// Five prompts on four slots (so a second group follows the first); budgets of 1, 2 and 12 tokens; then stop
// ids that end two sequences of the first group early while the others go on (the step issued ahead is
// dropped there, and the next one issued for the live sequences alone).
inline void expect_issuing_ahead_changes_nothing(const Engine& engine, Backend& backend) {
    const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41, 42}, {1, 7}, {1, 100, 200, 300, 50}, {1, 300}, {9}};
    Generator plain(engine, backend, 4), ahead(engine, backend, 4);
    plain.set_issue_ahead(false);
    ahead.set_issue_ahead(true);
    ASSERT_TRUE(ahead.issue_ahead());
    GenerationParams p;
    p.sampling.temperature = 0.0f;
    for (int64_t budget : {1, 2, 12}) {
        p.max_new_tokens = budget;
        EXPECT_EQ(ahead.generate(prompts, p), plain.generate(prompts, p)) << "budget " << budget;
        EXPECT_EQ(ahead.stats().decode_steps, plain.stats().decode_steps) << "budget " << budget;
    }
    const auto free_run = plain.generate(prompts, p);
    p.stop_ids = {free_run[0][2], free_run[2][5]};
    const auto stopped = plain.generate(prompts, p);
    EXPECT_EQ(ahead.generate(prompts, p), stopped);
    EXPECT_EQ(ahead.stats().decode_steps, plain.stats().decode_steps);
    // The case is what it says: a sequence stopped early while another of its group went on.
    EXPECT_LE(stopped[0].size(), 3u);
    EXPECT_TRUE(std::any_of(stopped.begin(), stopped.begin() + 4, [](const auto& s) { return s.size() > 6; }));
}

}  // namespace lamina::test
