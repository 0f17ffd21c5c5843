#include "runtime/shared_weights.h"

#include <atomic>
#include <map>
#include <mutex>
#include <utility>

#include "core/error.h"

namespace lamina {

namespace {

// Rebases a view of the mapped weights file onto the same offset inside the uploaded copy.
TensorView rebase(const TensorView& v, const uint8_t* file_base, void* device_base) {
    if (v.empty()) return v;
    TensorView r = v;
    r.data = static_cast<char*>(device_base) + (static_cast<const uint8_t*>(v.data) - file_base);
    return r;
}

std::atomic<int64_t> g_uploads{0};

// Live copies by (mapped file, backend). A copy is shared while a runner holds it; an expired entry is
// replaced by the next get.
std::mutex g_mutex;
std::map<std::pair<const void*, const Backend*>, std::weak_ptr<const SharedWeights>> g_live;

}  // namespace

std::shared_ptr<const SharedWeights> SharedWeights::get(const Engine& engine, int rank, Backend& backend) {
    const EngineRank& r = engine.rank(rank);
    const std::pair<const void*, const Backend*> key{r.file.data(), &backend};
    std::lock_guard<std::mutex> lock(g_mutex);
    if (auto live = g_live[key].lock()) return live;
    std::shared_ptr<const SharedWeights> made(new SharedWeights(r, backend));
    g_live[key] = made;
    return made;
}

int64_t SharedWeights::uploads() { return g_uploads.load(); }

SharedWeights::SharedWeights(const EngineRank& rank, Backend& backend) : backend_(backend) {
    if (backend.shares_host_memory()) {
        views_ = rank.weights;
        return;
    }
    const LlamaWeights& w = rank.weights;
    // The GPU backend computes on float weights only so far.
    auto check_float = [&](const TensorView& v, const std::string& name) {
        if (!v.empty() && dtype_is_block(v.dtype))
            throw Error(rank.file.path().string() + ": tensor " + name + " is " + std::string(dtype_name(v.dtype)) + ", and the " +
                        backend.name() + " backend computes on float weights only: rebuild the engine with --weights float");
    };
    check_float(w.tok_embd, "tok_embd");
    check_float(w.output, "output");
    for (size_t i = 0; i < w.layers.size(); ++i) {
        const LayerWeights& L = w.layers[i];
        for (const TensorView* v : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) check_float(*v, "of layer " + std::to_string(i));
    }
    const MappedFile& f = rank.file;
    device_copy_ = backend.alloc(f.size());
    backend.to_device(device_copy_, f.data(), f.size());
    ++g_uploads;
    auto rb = [&](const TensorView& v) { return rebase(v, f.data(), device_copy_); };
    views_.tok_embd = rb(w.tok_embd);
    views_.output_norm = rb(w.output_norm);
    views_.output = rb(w.output);
    for (const LayerWeights& L : w.layers)
        views_.layers.push_back({rb(L.attn_norm), rb(L.wqkv), rb(L.bqkv), rb(L.wo), rb(L.bo), rb(L.ffn_norm),
                                 rb(L.w_gate_up), rb(L.b_gate_up), rb(L.w_down), rb(L.b_down)});
}

SharedWeights::~SharedWeights() {
    if (device_copy_ == nullptr) return;
    try {  // on a failed device the free fails with it, and nothing is left to release
        backend_.synchronize();
        backend_.free(device_copy_);
    } catch (const Error&) {
    }
}

}  // namespace lamina
