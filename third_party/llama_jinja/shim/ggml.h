// Lamina's stand-in for llama.cpp's ggml.h, which common/json.cpp includes only for GGML_ASSERT, its
// JSON_ASSERT. assert(x) is nlohmann's own default JSON_ASSERT, so json.cpp expands nlohmann's inline
// functions exactly as every other file in the program does (one definition of each).
#pragma once

#include <cassert>

#define GGML_ASSERT(x) assert(x)
