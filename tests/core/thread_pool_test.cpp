// The thread pool's contract (core/thread_pool.h): every index exactly once, in ranges of at least the
// grain, the thread index a valid per-thread scratch slot, inline runs where it says so, nested calls
// inline, exceptions rethrown in the caller, and back-to-back and concurrent calls that stay correct.
#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace lamina {
namespace {

// Runs parallel_for(n, grain) counting each index; checks the ranges and that no thread index is used by
// two chunks at once.
void expect_each_index_once(ThreadPool& pool, int64_t n, int64_t grain) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(std::max<int64_t>(n, 0)));
    std::vector<std::atomic<int>> in_use(static_cast<size_t>(pool.size()));
    std::atomic<bool> bad_range{false}, bad_thread{false};
    pool.parallel_for(n, grain, [&](int64_t begin, int64_t end, int thread) {
        if (begin < 0 || end > n || begin >= end) bad_range = true;
        if (thread < 0 || thread >= pool.size() || in_use[static_cast<size_t>(thread)].exchange(1) != 0) {
            bad_thread = true;
            return;
        }
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
        in_use[static_cast<size_t>(thread)] = 0;
    });
    const std::string what = "pool " + std::to_string(pool.size()) + ", n " + std::to_string(n) + ", grain " +
                             std::to_string(grain);
    EXPECT_FALSE(bad_range) << what;
    EXPECT_FALSE(bad_thread) << what;
    int64_t wrong = 0;
    for (const auto& h : hits) wrong += h.load() != 1;
    EXPECT_EQ(wrong, 0) << what << ": indices not covered exactly once";
}

TEST(ThreadPool, EveryIndexIsCoveredExactlyOnce) {
    // 8 threads on a 2-core machine too: oversubscribed pools must stay correct.
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        ASSERT_EQ(pool.size(), threads);
        for (int64_t n : {1, 2, 7, 16, 17, 100, 1000, 100003})
            for (int64_t grain : {1, 3, 64}) expect_each_index_once(pool, n, grain);
    }
}

TEST(ThreadPool, ChunksAreAtLeastTheGrainExceptTheLast) {
    ThreadPool pool(4);
    for (int64_t grain : {1, 5, 100}) {
        const int64_t n = 1003;
        std::atomic<int> short_chunks{0};
        pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
            if (end - begin < grain && end != n) ++short_chunks;
        });
        EXPECT_EQ(short_chunks.load(), 0) << "grain " << grain;
    }
}

TEST(ThreadPool, EmptyRangesCallNothing) {
    ThreadPool pool(2);
    int calls = 0;
    pool.parallel_for(0, 1, [&](int64_t, int64_t) { ++calls; });
    pool.parallel_for(-3, 1, [&](int64_t, int64_t) { ++calls; });
    EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, RangesWithinOneGrainRunInlineOnTheCaller) {
    ThreadPool pool(4);
    for (int64_t n : {1, 5, 8}) {
        std::vector<std::thread::id> ran_on;
        std::vector<std::pair<int64_t, int64_t>> ranges;
        pool.parallel_for(n, 8, [&](int64_t begin, int64_t end, int thread) {
            ran_on.push_back(std::this_thread::get_id());
            ranges.emplace_back(begin, end);
            EXPECT_EQ(thread, 0);
        });
        ASSERT_EQ(ranges.size(), 1u) << "n " << n;
        EXPECT_EQ(ranges[0], std::make_pair(int64_t{0}, n));
        EXPECT_EQ(ran_on[0], std::this_thread::get_id());
    }
}

TEST(ThreadPool, APoolOfOneThreadRunsEverythingInline) {
    ThreadPool pool(1);
    EXPECT_EQ(pool.size(), 1);
    const auto caller = std::this_thread::get_id();
    int calls = 0;
    pool.parallel_for(100000, 1, [&](int64_t begin, int64_t end, int thread) {
        ++calls;  // not atomic: one thread only
        EXPECT_EQ(begin, 0);
        EXPECT_EQ(end, 100000);
        EXPECT_EQ(thread, 0);
        EXPECT_EQ(std::this_thread::get_id(), caller);
    });
    EXPECT_EQ(calls, 1);
}

TEST(ThreadPool, SizeZeroMeansOneThreadPerPhysicalCore) {
    const int cores = physical_core_count();
    EXPECT_GE(cores, 1);
    EXPECT_LE(cores, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    ThreadPool pool(0);
    EXPECT_EQ(pool.size(), cores);
}

TEST(ThreadPool, NestedCallsRunInlineOnTheCallingThread) {
    ThreadPool pool(3);
    const int64_t outer = 64, inner = 50;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(outer * inner));
    std::atomic<bool> moved{false};
    pool.parallel_for(outer, 1, [&](int64_t o0, int64_t o1, int thread) {
        const auto me = std::this_thread::get_id();
        for (int64_t o = o0; o < o1; ++o) {
            pool.parallel_for(inner, 1, [&](int64_t i0, int64_t i1, int inner_thread) {
                if (std::this_thread::get_id() != me || inner_thread != thread) moved = true;
                for (int64_t i = i0; i < i1; ++i) hits[static_cast<size_t>(o * inner + i)].fetch_add(1);
            });
        }
    });
    EXPECT_FALSE(moved) << "a nested loop ran on another thread";
    for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
}

TEST(ThreadPool, AnExceptionInATaskReachesTheCallerAndThePoolStaysUsable) {
    for (int threads : {1, 2, 4}) {
        ThreadPool pool(threads);
        for (int64_t bad : {0, 500, 999}) {
            std::atomic<int64_t> ran{0};
            try {
                pool.parallel_for(1000, 1, [&](int64_t begin, int64_t end) {
                    for (int64_t i = begin; i < end; ++i) {
                        if (i == bad) throw std::runtime_error("index " + std::to_string(i));
                        ++ran;
                    }
                });
                ADD_FAILURE() << "no exception, pool " << threads << ", bad " << bad;
            } catch (const std::runtime_error& e) {
                EXPECT_EQ(std::string(e.what()), "index " + std::to_string(bad));
            }
            EXPECT_LT(ran.load(), 1000);
            expect_each_index_once(pool, 1000, 1);
        }
    }
}

TEST(ThreadPool, ManyBackToBackSmallCallsStayCorrect) {
    // A decode step issues ~150 loops of microseconds each: the hand-over between loops must not lose or
    // repeat work even when a worker is still finishing the previous loop's bookkeeping.
    ThreadPool pool(std::max(2, physical_core_count()));
    std::vector<int64_t> values(64);
    int64_t total = 0, expected = 0;
    for (int call = 0; call < 20000; ++call) {
        const int64_t n = 1 + call % 64;
        std::atomic<int64_t> sum{0};
        pool.parallel_for(n, 1, [&](int64_t begin, int64_t end) {
            int64_t s = 0;
            for (int64_t i = begin; i < end; ++i) s += values[static_cast<size_t>(i)] = call + i;
            sum.fetch_add(s);
        });
        total += sum.load();
        for (int64_t i = 0; i < n; ++i) expected += call + i;
    }
    EXPECT_EQ(total, expected);
}

TEST(ThreadPool, CallsFromTwoThreadsAtOnceAreBothCorrect) {
    ThreadPool pool(3);
    auto run = [&](int64_t n, std::atomic<int64_t>& sum) {
        for (int rep = 0; rep < 200; ++rep)
            pool.parallel_for(n, 1, [&](int64_t begin, int64_t end) {
                for (int64_t i = begin; i < end; ++i) sum.fetch_add(i, std::memory_order_relaxed);
            });
    };
    std::atomic<int64_t> a{0}, b{0};
    std::thread other([&] { run(1000, b); });
    run(777, a);
    other.join();
    EXPECT_EQ(a.load(), 200 * (777 * 776 / 2));
    EXPECT_EQ(b.load(), 200 * (1000 * 999 / 2));
}

TEST(ThreadPool, LambdasWithAndWithoutTheThreadIndexBothWork) {
    ThreadPool pool(2);
    std::vector<int> seen(100, 0);
    pool.parallel_for(100, 10, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)] += 1;
    });
    pool.parallel_for(100, 10, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)] += 1;
    });
    EXPECT_EQ(std::accumulate(seen.begin(), seen.end(), 0), 200);
}

}  // namespace
}  // namespace lamina
