// The LLaMA forward pass: one loop over layers calling backend ops in the order of the paper.
// The model owns every buffer it needs, sized once from the engine's limits: the KV cache (one slot
// per sequence), the activations of one step of up to max_step_tokens tokens, the RoPE table.
// Tensor parallelism: with a communicator the model is one rank of its engine (its shard of the weights;
// all-reduce after the embedding, o_proj and down, all-gather of the logits); without one, on an engine
// with tp_size > 1, it runs all ranks through a TpModel (parallel/tp_model.h) behind this same interface.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "backend/backend.h"
#include "runtime/engine.h"

namespace lamina {

class Communicator;
class TpModel;

struct ModelLimits {
    int64_t n_slot = 1;           // sequences held at once
    int64_t n_ctx = 0;            // positions per slot
    int64_t max_step_tokens = 0;  // tokens per forward step (prefill is chunked to this)
};

class LlamaModel {
public:
    // comm: this model is rank comm->rank() of the engine's tensor-parallel group (TpModel makes these).
    LlamaModel(const Engine& engine, Backend& backend, const ModelLimits& limits, Communicator* comm = nullptr);
    ~LlamaModel();
    LlamaModel(const LlamaModel&) = delete;
    LlamaModel& operator=(const LlamaModel&) = delete;

    // One step over n tokens (ids/positions/slots on the host). Writes the logits of the tokens at
    // indices `logit_rows` into `logits` (host, [logit_rows.size(), n_vocab], f32).
    void forward(std::span<const int32_t> ids, std::span<const int32_t> positions, std::span<const int32_t> slots,
                 std::span<const int32_t> logit_rows, float* logits);
    // The same step, but only the greedy choice (argmax of each logits row, computed on the backend)
    // comes back: `next_ids` gets logit_rows.size() ids. Decode steps of this kind are replayed from a
    // captured graph on backends that have graphs.
    void forward_argmax(std::span<const int32_t> ids, std::span<const int32_t> positions,
                        std::span<const int32_t> slots, std::span<const int32_t> logit_rows, int32_t* next_ids);
    // The same step, with each logits row r sampled on the backend (Backend::sample_rows with params[r]
    // and uniforms[r]); only the ids come back. The step replays from a graph as forward() does; the
    // sampling kernel runs after it (its inputs change every step).
    void forward_sample(std::span<const int32_t> ids, std::span<const int32_t> positions,
                        std::span<const int32_t> slots, std::span<const int32_t> logit_rows,
                        std::span<const SampleRowParams> params, std::span<const double> uniforms, int32_t* next_ids);

    // Copies the KV cache of positions [0, n_positions) of slot `src` into slot `dst` (beam search
    // forks a hypothesis this way).
    void copy_slot(int64_t src, int64_t dst, int64_t n_positions);
    // Tensor-parallel engines: time rank 0 spends in collectives while timing is on (TpModel); one rank: 0.
    void set_collective_timing(bool on);
    double collective_seconds();

    // Steps issued (or captured into a graph) as one whole-step decode kernel (Backend::decode_step).
    int64_t whole_step_kernels() const { return whole_step_kernels_; }

    const ModelConfig& config() const { return config_; }
    const ModelLimits& limits() const { return limits_; }
    Backend& backend() { return backend_; }

    // Called after every named intermediate ("blk.3.attn_out", …) with its view in backend memory,
    // so a run can be diffed layer by layer against Hugging Face. Off (empty) by default.
    std::function<void(const std::string& name, const TensorView& value)> on_intermediate;

private:
    // Uploads the step's token metadata; returns the StepTokens view of it.
    StepTokens upload_step(std::span<const int32_t> ids, std::span<const int32_t> positions,
                           std::span<const int32_t> slots, std::span<const int32_t> logit_rows);
    // Issues every op of a step (no host synchronization): embedding to logits, and argmax if asked.
    void step_ops(const StepTokens& tok, int64_t n_logits, bool argmax);
    bool whole_step_decode(const StepTokens& tok, int64_t n_logits, bool argmax);
    bool fused_decode(const StepTokens& tok, int64_t n_logits, Backend::FusedDecode mode) const;
    void fused_decode_ops(const StepTokens& tok, bool argmax);
    // Copies the first n ids of next_ids_ (the step's argmax or sampled ids) to the host, once they are there.
    void read_next_ids(int32_t* next_ids, size_t n);
    // Runs step_ops, from a captured graph on a graph backend (decode steps; prefill shapes seen before).
    void run_step(const StepTokens& tok, int64_t n_logits, bool argmax);
    void trace(const std::string& name, const TensorView& v);
    TensorView activation(int64_t cols, int64_t rows);
    // Sums a row-parallel partial result over the ranks (a no-op with one rank).
    void all_reduce(const TensorView& v);

    ModelConfig config_;  // the rank's shapes (parallel/sharding.h) when comm_ is set
    Backend& backend_;
    ModelLimits limits_;
    bool rmsnorm_plugin_;
    LlamaWeights weights_;         // views in backend memory
    void* device_weights_ = nullptr;  // the uploaded weights file, when the backend has its own memory
    KvCache kv_;
    TensorView rope_cos_sin_;
    AttentionShape attn_shape_;
    std::vector<void*> buffers_;
    // activations of one step: [max_step_tokens, width]
    TensorView x_, h_, qkv_, attn_, proj_, gate_up_, ff_, last_, logits_;
    // A step's token metadata, packed (upload_step); logit_rows_ points at this step's rows inside it.
    int32_t* meta_ = nullptr;
    int32_t* logit_rows_ = nullptr;
    int32_t* next_ids_ = nullptr;  // argmax (or sampled) results
    // Page-locked host buffers: step metadata staged for its copy (rewritten once upload_fence_ is passed),
    // and the argmax ids read back.
    int32_t* upload_ = nullptr;
    uint64_t upload_fence_ = 0;
    int32_t* readback_ = nullptr;
    std::map<int64_t, int> prefill_shapes_seen_;  // run_step's graph keys of prefill steps, and how often
    int64_t whole_step_kernels_ = 0;
    // Tensor parallelism. comm_: this is one rank, and must use the plain (unfused) ops around its
    // collectives; logits_part_ holds its vocabulary columns before the gather. tp_: this is the whole
    // model of a tp_size > 1 engine, and every call goes to the ranks.
    Communicator* comm_ = nullptr;
    TensorView logits_part_;
    std::unique_ptr<TpModel> tp_;
};

}  // namespace lamina
