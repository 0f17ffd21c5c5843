#include "build/engine_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "build/engine_format.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "io/weight_names.h"
#include "parallel/sharding.h"

namespace lamina {

namespace fmt = engine_format;

namespace {

// Appends tensors to one weights file at aligned offsets and records them in the tensor table.
class WeightsWriter {
public:
    WeightsWriter(const std::filesystem::path& dir, std::string file, int version, ThreadPool& pool)
        : path_(dir / file), file_(std::move(file)), version_(version), pool_(pool),
          out_(path_, std::ios::binary | std::ios::trunc) {
        if (!out_) throw Error(path_.string() + ": cannot create");
        std::vector<char> header(fmt::kAlignment, 0);
        out_.write(header.data(), static_cast<std::streamsize>(header.size()));
        offset_ = fmt::kAlignment;
    }

    uint64_t bytes_written() const { return offset_; }

    void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<float>& values) {
        const size_t bytes = values.size() * dtype_size(dtype);
        std::vector<char> buf(bytes);
        constexpr int64_t kConvertGrain = 1 << 16;  // values per chunk: ~0.1 ms of f32 -> f16 rounding
        pool_.parallel_for(static_cast<int64_t>(values.size()), kConvertGrain, [&](int64_t i0, int64_t i1) {
            convert_from_f32(dtype, values.data() + i0, buf.data() + static_cast<size_t>(i0) * dtype_size(dtype),
                             static_cast<size_t>(i1 - i0));
        });
        out_.write(buf.data(), static_cast<std::streamsize>(bytes));
        table_.push_back({{"name", name}, {"dtype", dtype_name(dtype)}, {"shape", shape}, {"offset", offset_}, {"bytes", bytes}});
        offset_ += bytes;
        const uint64_t pad = (fmt::kAlignment - offset_ % fmt::kAlignment) % fmt::kAlignment;
        std::vector<char> zeros(pad, 0);
        out_.write(zeros.data(), static_cast<std::streamsize>(pad));
        offset_ += pad;
        if (!out_) throw Error(path_.string() + ": write failed (disk full?)");
    }

    nlohmann::json finish() {
        fmt::WeightsHeader h{};
        std::memcpy(h.magic, fmt::kWeightsMagic, sizeof h.magic);
        h.version = static_cast<uint32_t>(version_);
        h.file_bytes = offset_;
        out_.seekp(0);
        out_.write(reinterpret_cast<const char*>(&h), sizeof h);
        out_.close();
        if (!out_) throw Error(path_.string() + ": write failed");
        return {{"file", file_}, {"bytes", offset_}, {"tensors", table_}};
    }

private:
    std::filesystem::path path_;
    std::string file_;
    int version_;
    ThreadPool& pool_;
    std::ofstream out_;
    uint64_t offset_ = 0;
    nlohmann::json table_ = nlohmann::json::array();
};

std::vector<float> read_weight(const ModelSpec& spec, const std::string& name, const std::vector<int64_t>& shape) {
    const WeightSource& w = spec.weight(name, shape);
    std::vector<float> v(static_cast<size_t>(w.n_elements()));
    w.read(v.data());
    return v;
}

// Progress of a build: tensors read from the checkpoint against the spec's count, bytes written against
// an estimate from the spec (each tensor at the engine dtype; norms and biases, stored f32, make it low
// by a little).
class BuildMeter {
public:
    BuildMeter(const ModelSpec& spec, DType dtype, const BuildProgressFn& fn) : fn_(fn) {
        p_.tensors_total = static_cast<int64_t>(spec.weights.size());
        for (const auto& [name, w] : spec.weights) p_.bytes_total += static_cast<uint64_t>(w.n_elements()) * dtype_size(dtype);
    }
    // Called after an engine tensor is written, with the checkpoint tensors it was made of.
    void tensors_done(int64_t n, uint64_t bytes_written) {
        p_.tensors_done += n;
        p_.bytes_done = bytes_written;
        p_.bytes_total = std::max(p_.bytes_total, bytes_written);
        if (fn_) fn_(p_);
    }

private:
    const BuildProgressFn& fn_;
    BuildProgress p_;
};

// Rows [first, first + n) of a row-major matrix with `cols` columns (a vector: cols 1); rows past its
// end are zeros (the padding of the last vocabulary shard).
std::vector<float> row_block(const std::vector<float>& m, int64_t cols, int64_t first, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n * cols), 0.0f);
    const int64_t end = std::min(static_cast<int64_t>(m.size()) / cols, first + n);
    if (end > first) std::copy(m.begin() + first * cols, m.begin() + end * cols, out.begin());
    return out;
}

// Columns [first, first + n) of a row-major matrix with `cols` columns.
std::vector<float> col_block(const std::vector<float>& m, int64_t cols, int64_t first, int64_t n) {
    const int64_t rows = static_cast<int64_t>(m.size()) / cols;
    std::vector<float> out(static_cast<size_t>(rows * n));
    for (int64_t r = 0; r < rows; ++r)
        std::copy(m.begin() + r * cols + first, m.begin() + r * cols + first + n, out.begin() + r * n);
    return out;
}

std::vector<float> concat(std::initializer_list<std::vector<float>> parts) {
    std::vector<float> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

// Removes weight files of another rank layout left by an earlier build into the same directory.
void remove_stale_weights(const std::filesystem::path& dir) {
    std::filesystem::remove(dir / fmt::kWeightsFile);
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("weights.rank", 0) == 0 && e.path().extension() == ".bin") std::filesystem::remove(e.path());
    }
}

}  // namespace

void build_engine(const ModelSpec& spec, const BuildOptions& opts, const std::filesystem::path& out_dir,
                  const BuildProgressFn& progress) {
    const ModelConfig& c = spec.config;
    c.validate(spec.source);
    if (opts.max_batch_size < 1 || opts.max_input_len < 1 || opts.max_output_len < 1)
        throw Error("--max_batch_size, --max_input_len and --max_output_len must be at least 1");
    c.check_context(opts.max_input_len + opts.max_output_len, spec.source);
    const TpSharding tp = plan_tensor_parallel(c, opts.tp_size);
    const int n_rank = tp.tp_size;
    const ModelConfig rc = tp.rank_config(c);  // == c when tp_size is 1
    std::filesystem::create_directories(out_dir);
    // Write the weights first and the config last: a directory without config.json is no engine.
    std::filesystem::remove(out_dir / fmt::kConfigFile);
    remove_stale_weights(out_dir);

    const int version = n_rank == 1 ? fmt::kFormatVersion : fmt::kFormatVersionTp;
    ThreadPool pool(opts.threads);  // dtype conversion of each tensor
    std::vector<std::unique_ptr<WeightsWriter>> writers;
    for (int r = 0; r < n_rank; ++r)
        writers.push_back(std::make_unique<WeightsWriter>(out_dir, n_rank == 1 ? fmt::kWeightsFile : fmt::rank_weights_file(r), version, pool));
    // Each tensor is read from the checkpoint once and written to every rank, cut to the rank's share
    // (with one rank the share is the whole tensor, so tp 1 engines are what they were before ranks).
    BuildMeter meter(spec, opts.dtype, progress);
    int64_t tensors_read = 0;  // checkpoint tensors read since the last engine tensor was written
    auto read = [&](const std::string& name, const std::vector<int64_t>& shape) {
        ++tensors_read;
        return read_weight(spec, name, shape);
    };
    auto written = [&] {
        uint64_t bytes = 0;
        for (const auto& w : writers) bytes += w->bytes_written();
        meter.tensors_done(std::exchange(tensors_read, 0), bytes);
    };
    auto add = [&](const std::string& name, DType dtype, std::vector<int64_t> shape, const auto& share) {
        for (int r = 0; r < n_rank; ++r) writers[r]->add(name, dtype, shape, share(r));
        written();
    };
    // o_proj and down biases go to rank 0 only: the all-reduce after them must add them once.
    auto add_rank0 = [&](const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
        writers[0]->add(name, DType::F32, shape, values);
        written();
    };
    auto all = [](const std::vector<float>& v) { return [&v](int) -> const std::vector<float>& { return v; }; };

    const DType dt = opts.dtype;
    const int64_t E = c.n_embd, D = c.head_dim, V = c.n_vocab, Vs = tp.n_vocab_shard;
    // Vocabulary shard of rank r; tok_embd gets the extra zero row that ids of other ranks map to.
    auto vocab_rows = [&](const std::vector<float>& table, int r, bool zero_row) {
        auto rows = row_block(table, E, tp.first_vocab(r), Vs);
        if (zero_row) rows.resize(rows.size() + static_cast<size_t>(E), 0.0f);
        return rows;
    };
    {
        const auto embd = read(hf_names::embed, {V, E});
        if (n_rank == 1) add("tok_embd", dt, {V, E}, all(embd));
        else add("tok_embd", dt, {Vs + 1, E}, [&](int r) { return vocab_rows(embd, r, true); });
    }
    add("output_norm", DType::F32, {E}, all(read(hf_names::norm, {E})));
    if (!c.tied_embeddings) {
        const auto head = read(hf_names::lm_head, {V, E});
        if (n_rank == 1) add("output", dt, {V, E}, all(head));
        else add("output", dt, {Vs, E}, [&](int r) { return vocab_rows(head, r, false); });
    }

    for (int64_t i = 0; i < c.n_layer; ++i) {
        auto L = [&](const char* suffix) { return hf_names::layer(i, suffix); };
        auto T = [&](const char* name) { return fmt::layer_tensor(i, name); };
        // The rank's q heads, then its KV heads' k and v: rows of a [heads * head_dim, cols] matrix.
        auto qkv_share = [&](const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                             int64_t cols) {
            return [&, cols](int r) {
                return concat({row_block(q, cols, tp.first_head(r) * D, rc.q_dim()),
                               row_block(k, cols, tp.first_head_kv(r) * D, rc.kv_dim()),
                               row_block(v, cols, tp.first_head_kv(r) * D, rc.kv_dim())});
            };
        };
        auto gate_up_share = [&](const std::vector<float>& gate, const std::vector<float>& up, int64_t cols) {
            return [&, cols](int r) {
                return concat({row_block(gate, cols, tp.first_ff(r), rc.n_ff), row_block(up, cols, tp.first_ff(r), rc.n_ff)});
            };
        };
        add(T("attn_norm"), DType::F32, {E}, all(read(L("input_layernorm.weight"), {E})));
        {
            const auto q = read(L("self_attn.q_proj.weight"), {c.q_dim(), E});
            const auto k = read(L("self_attn.k_proj.weight"), {c.kv_dim(), E});
            const auto v = read(L("self_attn.v_proj.weight"), {c.kv_dim(), E});
            add(T("wqkv"), dt, {rc.qkv_dim(), E}, qkv_share(q, k, v, E));
        }
        if (c.attn_bias) {
            const auto q = read(L("self_attn.q_proj.bias"), {c.q_dim()});
            const auto k = read(L("self_attn.k_proj.bias"), {c.kv_dim()});
            const auto v = read(L("self_attn.v_proj.bias"), {c.kv_dim()});
            add(T("bqkv"), DType::F32, {rc.qkv_dim()}, qkv_share(q, k, v, 1));
        }
        {
            const auto wo = read(L("self_attn.o_proj.weight"), {E, c.q_dim()});
            add(T("wo"), dt, {E, rc.q_dim()}, [&](int r) { return col_block(wo, c.q_dim(), tp.first_head(r) * D, rc.q_dim()); });
        }
        if (c.attn_bias) add_rank0(T("bo"), {E}, read(L("self_attn.o_proj.bias"), {E}));
        add(T("ffn_norm"), DType::F32, {E}, all(read(L("post_attention_layernorm.weight"), {E})));
        {
            const auto gate = read(L("mlp.gate_proj.weight"), {c.n_ff, E});
            const auto up = read(L("mlp.up_proj.weight"), {c.n_ff, E});
            add(T("w_gate_up"), dt, {2 * rc.n_ff, E}, gate_up_share(gate, up, E));
        }
        if (c.mlp_bias) {
            const auto gate = read(L("mlp.gate_proj.bias"), {c.n_ff});
            const auto up = read(L("mlp.up_proj.bias"), {c.n_ff});
            add(T("b_gate_up"), DType::F32, {2 * rc.n_ff}, gate_up_share(gate, up, 1));
        }
        {
            const auto down = read(L("mlp.down_proj.weight"), {E, c.n_ff});
            add(T("w_down"), dt, {E, rc.n_ff}, [&](int r) { return col_block(down, c.n_ff, tp.first_ff(r), rc.n_ff); });
        }
        if (c.mlp_bias) add_rank0(T("b_down"), {E}, read(L("mlp.down_proj.bias"), {E}));
    }
    nlohmann::json weights = nlohmann::json::array();
    for (auto& w : writers) weights.push_back(w->finish());

    const bool has_tokenizer = !spec.vocab.tokens.empty();
    if (has_tokenizer) {
        if (static_cast<int64_t>(spec.vocab.tokens.size()) > c.n_vocab)
            throw Error(spec.source + ": tokenizer has " + std::to_string(spec.vocab.tokens.size()) +
                        " tokens but the model's vocabulary is " + std::to_string(c.n_vocab));
        save_vocab(spec.vocab, out_dir / fmt::kTokenizerFile);
    }
    nlohmann::json config = {
        {"format", fmt::kFormatName},
        {"format_version", version},
        {"model", c},
        {"dtype", dtype_name(opts.dtype)},
        {"build", {{"source", spec.source}, {"rmsnorm_plugin", opts.rmsnorm_plugin}}},
        {"limits",
         {{"max_batch_size", opts.max_batch_size}, {"max_input_len", opts.max_input_len}, {"max_output_len", opts.max_output_len}}},
        {"tokenizer", has_tokenizer ? nlohmann::json(fmt::kTokenizerFile) : nlohmann::json(nullptr)},
        // One rank: the weights.bin object, as format version 1 has it; tp_size > 1: one object per rank.
        {"weights", n_rank == 1 ? weights.front() : weights},
    };
    if (n_rank > 1)
        config["tensor_parallel"] = {{"tp_size", n_rank}, {"n_vocab_shard", Vs}, {"kv_replicas", tp.kv_replicas}};
    std::ofstream out(out_dir / fmt::kConfigFile);
    out << config.dump(2) << "\n";
    if (!out) throw Error((out_dir / fmt::kConfigFile).string() + ": write failed");
}

namespace {

ModelConfig preset_config(const std::string& preset) {
    ModelConfig c;
    if (preset == "tiny") {
        c.n_vocab = 512; c.n_embd = 96; c.n_layer = 2; c.n_head = 6; c.n_head_kv = 2; c.head_dim = 16;
        c.n_ff = 256; c.n_ctx = 1024; c.rms_eps = 1e-5f;
    } else if (preset == "llama-7b") {
        c.n_vocab = 32000; c.n_embd = 4096; c.n_layer = 32; c.n_head = 32; c.n_head_kv = 32; c.head_dim = 128;
        c.n_ff = 11008; c.n_ctx = 4096; c.rms_eps = 1e-5f;
    } else {
        throw Error("unknown --random_weights preset '" + preset + "' (expected tiny or llama-7b)");
    }
    return c;
}

// splitmix64: a tiny, well-mixed generator; each tensor gets its own stream.
uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void fill_uniform(float* dst, int64_t n, uint64_t seed, float stddev, int n_threads) {
    // Uniform on [-a, a] has std a / sqrt(3).
    const float a = stddev * std::sqrt(3.0f);
    constexpr int64_t kChunk = 1 << 16;  // independent streams per chunk, so threads agree with serial runs
    ThreadPool pool(n_threads);          // per tensor: starting threads costs ~0.1 ms, a tensor ms to seconds
    pool.parallel_for((n + kChunk - 1) / kChunk, 1, [&](int64_t first_chunk, int64_t end_chunk) {
        for (int64_t chunk = first_chunk; chunk < end_chunk; ++chunk) {
            uint64_t state = seed ^ (static_cast<uint64_t>(chunk) * 0xd1b54a32d192ed03ull);
            const int64_t end = std::min(n, (chunk + 1) * kChunk);
            for (int64_t i = chunk * kChunk; i < end; ++i) {
                const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;  // [0, 1)
                dst[i] = static_cast<float>((2.0 * u - 1.0) * a);
            }
        }
    });
}

}  // namespace

ModelSpec random_model_spec(const std::string& preset, uint64_t seed, int n_threads) {
    ModelSpec spec;
    spec.config = preset_config(preset);
    spec.source = "random:" + preset;
    const ModelConfig& c = spec.config;
    uint64_t tensor_seed = seed;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, bool is_norm) {
        WeightSource w;
        w.shape = shape;
        w.origin = spec.source + " tensor '" + name + "'";
        const uint64_t s = splitmix64(tensor_seed);
        const int64_t n = w.n_elements();
        if (is_norm) {
            w.read = [n](float* dst) { std::fill(dst, dst + n, 1.0f); };
        } else {
            constexpr float kStd = 0.02f;  // the usual LLaMA init scale
            w.read = [n, s, n_threads](float* dst) { fill_uniform(dst, n, s, kStd, n_threads); };
        }
        spec.weights.emplace(name, std::move(w));
    };
    add(hf_names::embed, {c.n_vocab, c.n_embd}, false);
    add(hf_names::norm, {c.n_embd}, true);
    add(hf_names::lm_head, {c.n_vocab, c.n_embd}, false);
    for (int64_t i = 0; i < c.n_layer; ++i) {
        add(hf_names::layer(i, "input_layernorm.weight"), {c.n_embd}, true);
        add(hf_names::layer(i, "self_attn.q_proj.weight"), {c.q_dim(), c.n_embd}, false);
        add(hf_names::layer(i, "self_attn.k_proj.weight"), {c.kv_dim(), c.n_embd}, false);
        add(hf_names::layer(i, "self_attn.v_proj.weight"), {c.kv_dim(), c.n_embd}, false);
        add(hf_names::layer(i, "self_attn.o_proj.weight"), {c.n_embd, c.q_dim()}, false);
        add(hf_names::layer(i, "post_attention_layernorm.weight"), {c.n_embd}, true);
        add(hf_names::layer(i, "mlp.gate_proj.weight"), {c.n_ff, c.n_embd}, false);
        add(hf_names::layer(i, "mlp.up_proj.weight"), {c.n_ff, c.n_embd}, false);
        add(hf_names::layer(i, "mlp.down_proj.weight"), {c.n_embd, c.n_ff}, false);
    }
    return spec;
}

}  // namespace lamina
