// Checked size arithmetic: every product or sum of integers read from a file (config dimensions, tensor
// shapes, KV-cache sizes) goes through these, so a hostile value throws lamina::Error naming what was being
// computed instead of wrapping around into a small allocation and an out-of-bounds write later.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "core/error.h"

namespace lamina {

namespace detail {
template <typename T>
[[noreturn]] void overflowed(const char* what, const char* op, T a, T b) {
    throw Error(std::string(what) + ": " + std::to_string(a) + " " + op + " " + std::to_string(b) +
                " overflows a " + (std::is_signed_v<T> ? "signed " : "unsigned ") + "64-bit integer");
}
}  // namespace detail

// a * b, or lamina::Error "<what>: a * b overflows ..." (`what` names the quantity, e.g. "n_head * head_dim").
template <typename T>
T checked_mul(T a, T b, const char* what) {
    static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>);
    T r;
    if (__builtin_mul_overflow(a, b, &r)) detail::overflowed(what, "*", a, b);
    return r;
}

template <typename T>
T checked_add(T a, T b, const char* what) {
    static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>);
    T r;
    if (__builtin_add_overflow(a, b, &r)) detail::overflowed(what, "+", a, b);
    return r;
}

// The product of a shape's dimensions (each in [0, 2^63)), or lamina::Error naming `what`.
template <typename Range>
int64_t checked_product(const Range& dims, const char* what) {
    int64_t n = 1;
    for (auto d : dims) {
        bool bad;
        if constexpr (std::is_signed_v<decltype(d)>) bad = d < 0;
        else bad = d > static_cast<uint64_t>(INT64_MAX);
        if (bad) throw Error(std::string(what) + ": dimension " + std::to_string(d) + " is out of range");
        n = checked_mul(n, static_cast<int64_t>(d), what);
    }
    return n;
}

}  // namespace lamina
