// Errors. Bad input (files, flags, prompts) throws lamina::Error carrying what was wrong and where;
// each command catches it once and prints one line. Broken invariants use LAMINA_CHECK, which aborts
// with file:line: they are bugs, not user errors.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace lamina {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
    std::fprintf(stderr, "lamina: internal check failed: %s at %s:%d %s\n", expr, file, line, msg.c_str());
    std::abort();
}

}  // namespace lamina

#define LAMINA_CHECK(cond, ...)                                                          \
    do {                                                                                 \
        if (!(cond)) ::lamina::check_failed(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
    } while (0)
