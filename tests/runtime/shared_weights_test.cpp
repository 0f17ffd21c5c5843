// Weights are copied to a backend's memory once per process however many generators, beam searches and runners
// use them. A backend with its own memory (here: a CPU backend that copies, as a GPU does) counts the uploads.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "../test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/beam_search.h"
#include "runtime/generator.h"
#include "runtime/model_runner.h"
#include "runtime/shared_weights.h"

namespace lamina {
namespace {

// The CPU's ops over memory of its own: weights must be uploaded to it, as to a GPU.
class CopyingBackend final : public Backend {
public:
    std::string name() const override { return "copying-cpu"; }
    void* alloc(size_t bytes) override { return std::malloc(std::max<size_t>(bytes, 1)); }
    void free(void* p) override { std::free(p); }
    void to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
    void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
    void copy_device(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
    bool shares_host_memory() const override { return false; }

    void embedding(const TensorView& table, const StepTokens& tok, TensorView out) override { cpu.embedding(table, tok, out); }
    void rms_norm(const TensorView& x, const TensorView& w, float eps, TensorView out) override { cpu.rms_norm(x, w, eps, out); }
    void rms_norm_fused_add(TensorView r, const TensorView& x, const TensorView& w, float eps, TensorView out) override {
        cpu.rms_norm_fused_add(r, x, w, eps, out);
    }
    void rms_norm_unfused(const TensorView& x, const TensorView& w, float eps, TensorView out) override {
        cpu.rms_norm_unfused(x, w, eps, out);
    }
    void matmul(const TensorView& x, const TensorView& w, const TensorView* b, TensorView out) override { cpu.matmul(x, w, b, out); }
    void rope_kv_write(TensorView qkv, const StepTokens& tok, const TensorView& rope, const AttentionShape& s, int64_t layer,
                       KvCache& cache) override {
        cpu.rope_kv_write(qkv, tok, rope, s, layer, cache);
    }
    void attention(const TensorView& qkv, const StepTokens& tok, const AttentionShape& s, int64_t layer, const KvCache& cache,
                   TensorView out) override {
        cpu.attention(qkv, tok, s, layer, cache, out);
    }
    void swiglu(const TensorView& gate_up, TensorView out) override { cpu.swiglu(gate_up, out); }
    void add(TensorView acc, const TensorView& x) override { cpu.add(acc, x); }
    void gather_rows(const TensorView& x, const int32_t* rows, int64_t n, TensorView out) override {
        cpu.gather_rows(x, rows, n, out);
    }
    void argmax_rows(const TensorView& logits, int32_t* ids) override { cpu.argmax_rows(logits, ids); }
    void sample_rows(const TensorView& logits, std::span<const SampleRowParams> params, std::span<const double> uniforms,
                     int32_t* ids) override {
        cpu.sample_rows(logits, params, uniforms, ids);
    }
    void rms_norm_quant_per_token(const TensorView& x, const TensorView& w, float eps, int8_t* out, float* scales) override {
        cpu.rms_norm_quant_per_token(x, w, eps, out, scales);
    }
    void rms_norm_quant_per_tensor(const TensorView& x, const TensorView& w, float eps, float scale, int8_t* out) override {
        cpu.rms_norm_quant_per_tensor(x, w, eps, scale, out);
    }

private:
    CpuBackend cpu{1};
};

class SharedWeightsTest : public test::TinyEngineTest {};

TEST_F(SharedWeightsTest, OneUploadForEveryGeneratorBeamSearchAndRunner) {
    CopyingBackend copying;
    const int64_t before = SharedWeights::uploads();
    GenerationParams p;
    p.max_new_tokens = 6;
    p.sampling.temperature = 0.0f;
    const std::vector<std::vector<int32_t>> prompts = {{1, 40, 41, 42}};
    std::vector<std::vector<int32_t>> first;
    {
        Generator a(*engine, copying, 1), b(*engine, copying, 2);
        BeamSearch beams(*engine, copying, 1, 2);
        ModelRunner runner(*engine, copying, ModelLimits{1, 8, 8});
        EXPECT_EQ(SharedWeights::uploads() - before, 1) << "four users of one engine on one backend";
        first = a.generate(prompts, p);
        EXPECT_EQ(b.generate(prompts, p), first);
        // The same text as on the CPU backend, which reads the mapped file in place: the upload is the weights.
        Generator cpu(*engine, *backend, 1);
        EXPECT_EQ(cpu.generate(prompts, p), first);
    }
    // Once every user is gone the copy is freed, and the next user uploads again.
    Generator c(*engine, copying, 1);
    EXPECT_EQ(SharedWeights::uploads() - before, 2);
    EXPECT_EQ(c.generate(prompts, p), first);
}

TEST_F(SharedWeightsTest, AnotherBackendGetsItsOwnCopy) {
    CopyingBackend one, two;
    const int64_t before = SharedWeights::uploads();
    const auto a = SharedWeights::get(*engine, 0, one), b = SharedWeights::get(*engine, 0, two);
    const auto a2 = SharedWeights::get(*engine, 0, one);
    EXPECT_EQ(a, a2);
    EXPECT_NE(a->views().tok_embd.data, b->views().tok_embd.data);
    EXPECT_EQ(SharedWeights::uploads() - before, 2);
}

}  // namespace
}  // namespace lamina
