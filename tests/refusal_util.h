// Helpers of the hardening tests: a refusal is one line naming what was wrong, and a hostile file may not
// cost memory in proportion to what it claims.
#pragma once

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <string>

#include "test_util.h"

namespace lamina::test {

// Fails the test unless `f` throws a lamina::Error of one line holding every needle (and not nlohmann's text).
inline void expect_refusal(const std::function<void()>& f, std::initializer_list<std::string> needles) {
    const std::string msg = error_of(f);
    ASSERT_FALSE(msg.empty()) << "accepted; expected an error mentioning " << *needles.begin();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    EXPECT_EQ(msg.find("json.exception"), std::string::npos) << "nlohmann's own text: " << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "no '" << n << "' in: " << msg;
}

// The peak resident memory of this process so far, in bytes.
inline size_t peak_rss() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<size_t>(u.ru_maxrss) * 1024;
}

}  // namespace lamina::test
