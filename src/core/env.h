// Development switches read from the environment: A/B switches and kernel geometry under measurement
// (docs/developing.md). Unset or empty, a switch takes its fallback; any other value must be
// one the switch takes, or it is a lamina::Error naming the variable, its value and what it takes (a typo
// must not silently measure the default).
#pragma once

#include <initializer_list>

namespace lamina {

// "0" (false) or "1" (true).
bool env_switch(const char* name, bool fallback);

// An integer of at least `min` (decimal, nothing after it).
int env_int(const char* name, int fallback, int min = 1);

// One of `allowed` (integers, e.g. {0, 1, 2} or {1, 2, 4, 8}).
int env_choice(const char* name, int fallback, std::initializer_list<int> allowed);

}  // namespace lamina
