// One tensor-parallel rank's weights in a backend's memory, uploaded once per process and backend and shared by
// every runner over them (generators, beam searches, servers: each runner holds a reference, the last one
// frees the copy). A backend that shares host memory (the CPU) reads the mapped engine file in place.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/backend.h"
#include "model/llama_weights.h"
#include "runtime/engine.h"

namespace lamina {

class SharedWeights {
public:
    // The weights of `engine`'s rank `rank` on `backend`: the copy another runner already holds, or a new one.
    static std::shared_ptr<const SharedWeights> get(const Engine& engine, int rank, Backend& backend);
    // Weight files copied to a backend's memory by this process so far (tests count them).
    static int64_t uploads();

    ~SharedWeights();
    SharedWeights(const SharedWeights&) = delete;
    SharedWeights& operator=(const SharedWeights&) = delete;

    const LlamaWeights& views() const { return views_; }

private:
    SharedWeights(const EngineRank& rank, Backend& backend);

    Backend& backend_;
    void* device_copy_ = nullptr;  // the uploaded weights file; null when views_ point into the mapped file
    LlamaWeights views_;
};

}  // namespace lamina
