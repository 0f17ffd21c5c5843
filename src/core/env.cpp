#include "core/env.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace lamina {

namespace {

// The variable's value, or nullptr when it is unset or empty.
const char* value_of(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr || *v == '\0' ? nullptr : v;
}

// `v` as a decimal int, or false when it is not one (sign allowed; nothing after the digits).
bool parse_int(const char* v, int& out) {
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE || n < INT_MIN || n > INT_MAX) return false;
    out = static_cast<int>(n);
    return true;
}

[[noreturn]] void refuse(const char* name, const char* v, const std::string& takes) {
    throw Error(std::string(name) + "=" + v + ": expected " + takes);
}

}  // namespace

bool env_switch(const char* name, bool fallback) {
    return env_choice(name, fallback ? 1 : 0, {0, 1}) != 0;
}

int env_int(const char* name, int fallback, int min) {
    const char* v = value_of(name);
    if (v == nullptr) return fallback;
    int n = 0;
    if (!parse_int(v, n) || n < min)
        refuse(name, v, min == 1 ? "a positive integer" : "an integer >= " + std::to_string(min));
    return n;
}

int env_choice(const char* name, int fallback, std::initializer_list<int> allowed) {
    const char* v = value_of(name);
    if (v == nullptr) return fallback;
    int n = 0;
    if (parse_int(v, n) && std::find(allowed.begin(), allowed.end(), n) != allowed.end()) return n;
    std::string takes;
    for (const int a : allowed)
        takes += (takes.empty() ? "" : a == *(allowed.end() - 1) ? " or " : ", ") + std::to_string(a);
    refuse(name, v, takes);
}

}  // namespace lamina
