// Helpers of the hardening tests: a refusal is one line naming what was wrong, and a hostile file may not
// cost memory in proportion to what it claims.
#pragma once

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
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

// Fails the test unless `lamina ARGS` exits non-zero within 60 s with one line of output, from lamina,
// holding `needle`.
inline void expect_command_refusal(const std::string& args, const std::string& needle) {
    const auto r = run_command("timeout 60 " + lamina_binary() + " " + args);
    EXPECT_NE(r.status, 124) << "hung: lamina " << args;
    EXPECT_NE(r.status, 0) << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "want '" << needle << "' in: " << r.output;
    EXPECT_EQ(r.output.rfind("lamina", 0), 0u) << r.output;
}

// The peak resident memory of this process so far, in bytes.
inline size_t peak_rss() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<size_t>(u.ru_maxrss) * 1024;
}

}  // namespace lamina::test
