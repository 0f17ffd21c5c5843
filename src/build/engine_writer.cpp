#include "build/engine_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "build/engine_format.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/weight_names.h"
#include "parallel/sharding.h"

namespace lamina {

namespace fmt = engine_format;

namespace {

// Appends tensors to one weights file at aligned offsets and records them in the tensor table.
class WeightsWriter {
public:
    WeightsWriter(const std::filesystem::path& dir, std::string file, int version, int rank, int tp_size)
        : path_(dir / file), file_(std::move(file)), version_(version), rank_(rank), tp_size_(tp_size),
          out_(path_, std::ios::binary | std::ios::trunc) {
        if (!out_) throw Error(path_.string() + ": cannot create");
        std::vector<char> header(fmt::kAlignment, 0);
        out_.write(header.data(), static_cast<std::streamsize>(header.size()));
        offset_ = fmt::kAlignment;
    }

    uint64_t bytes_written() const { return offset_; }

    // Appends a tensor already in its engine format (`bytes` = dtype_bytes(dtype, elements)).
    void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const std::vector<uint8_t>& bytes) {
        out_.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        table_.push_back({{"name", name}, {"dtype", dtype_name(dtype)}, {"shape", shape}, {"offset", offset_}, {"bytes", bytes.size()}});
        summary_[dtype] += bytes.size();
        offset_ += bytes.size();
        const uint64_t pad = (fmt::kAlignment - offset_ % fmt::kAlignment) % fmt::kAlignment;
        std::vector<char> zeros(pad, 0);
        out_.write(zeros.data(), static_cast<std::streamsize>(pad));
        offset_ += pad;
        if (!out_) throw Error(path_.string() + ": write failed (disk full?)");
    }

    const std::map<DType, uint64_t>& bytes_by_dtype() const { return summary_; }

    nlohmann::json finish() {
        fmt::WeightsHeader h{};
        std::memcpy(h.magic, fmt::kWeightsMagic, sizeof h.magic);
        h.version = static_cast<uint32_t>(version_);
        h.rank = static_cast<uint16_t>(rank_);
        h.tp_size = static_cast<uint16_t>(tp_size_);
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
    int rank_, tp_size_;
    std::ofstream out_;
    uint64_t offset_ = 0;
    nlohmann::json table_ = nlohmann::json::array();
    std::map<DType, uint64_t> summary_;
};

// A checkpoint tensor in engine format `dtype`: its stored bytes when the checkpoint stores it so, else read as
// f32 and converted (rounded to f16/bf16, or quantized row by row), `pool` splitting the rows.
std::vector<uint8_t> read_weight(const ModelSpec& spec, const std::string& name, const std::vector<int64_t>& shape, DType dtype,
                                 ThreadPool& pool) {
    const WeightSource& w = spec.weight(name, shape);
    const int64_t n = w.n_elements();
    std::vector<uint8_t> out(dtype_bytes(dtype, n));
    if (w.stored == dtype && w.read_stored) {
        w.read_stored(out.data());
        return out;
    }
    std::vector<float> v(static_cast<size_t>(n));
    w.read(v.data());
    const int64_t cols = shape.back(), rows = n / cols;
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / cols);  // ~0.1 ms of rounding or more a chunk
    pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
        convert_from_f32(dtype, v.data() + r0 * cols, out.data() + dtype_bytes(dtype, r0 * cols), static_cast<size_t>((r1 - r0) * cols));
    });
    return out;
}

// Progress of a build: tensors read from the checkpoint against the spec's count, bytes written against
// an estimate from the spec (each tensor in the build's format; norms and biases, stored f32, make it low
// by a little).
class BuildMeter {
public:
    BuildMeter(const ModelSpec& spec, const BuildOptions& opts, const BuildProgressFn& fn) : fn_(fn) {
        p_.tensors_total = static_cast<int64_t>(spec.weights.size());
        for (const auto& [name, w] : spec.weights) {
            const DType t = opts.weights == WeightsMode::Keep ? w.stored : opts.weights == WeightsMode::Quantize ? opts.quant : opts.dtype;
            const DTypeBlock b = dtype_block(t);
            p_.bytes_total += static_cast<uint64_t>(static_cast<double>(w.n_elements()) * static_cast<double>(b.bytes) / static_cast<double>(b.elems));
        }
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

// Rows [first, first + n) of a row-major matrix of `row_bytes` rows (a vector: one element a row); rows past its
// end are zeros (the padding of the last vocabulary shard: zero bytes are zeros in every format).
std::vector<uint8_t> row_block(const std::vector<uint8_t>& m, size_t row_bytes, int64_t first, int64_t n) {
    std::vector<uint8_t> out(static_cast<size_t>(n) * row_bytes, 0);
    const int64_t end = std::min(static_cast<int64_t>(m.size() / row_bytes), first + n);
    if (end > first) std::copy(m.begin() + static_cast<ptrdiff_t>(first * row_bytes), m.begin() + static_cast<ptrdiff_t>(end * row_bytes), out.begin());
    return out;
}

// Columns [first, first + n) of a row-major matrix of `dtype` with `cols` columns (whole blocks of a block type:
// the caller checked).
std::vector<uint8_t> col_block(const std::vector<uint8_t>& m, DType dtype, int64_t cols, int64_t first, int64_t n) {
    const size_t row_bytes = dtype_bytes(dtype, cols), skip = dtype_bytes(dtype, first), take = dtype_bytes(dtype, n);
    const size_t rows = m.size() / row_bytes;
    std::vector<uint8_t> out(rows * take);
    for (size_t r = 0; r < rows; ++r)
        std::copy(m.begin() + static_cast<ptrdiff_t>(r * row_bytes + skip), m.begin() + static_cast<ptrdiff_t>(r * row_bytes + skip + take),
                  out.begin() + static_cast<ptrdiff_t>(r * take));
    return out;
}

// The engine format of a tensor in this build. `stored`: how the checkpoint stores each of its parts.
DType tensor_dtype(const EngineTensorName& t, const std::vector<DType>& stored, int64_t cols, const BuildOptions& opts) {
    if (t.role == WeightRole::Norm || t.role == WeightRole::Bias) return DType::F32;
    switch (opts.weights) {
        case WeightsMode::Float: return opts.dtype;
        case WeightsMode::Keep:
            return std::all_of(stored.begin(), stored.end(), [&](DType d) { return d == stored.front(); }) ? stored.front() : opts.dtype;
        case WeightsMode::Quantize: {
            const bool vocab = std::any_of(t.parts.begin(), t.parts.end(), [](const CheckpointTensor& p) { return p.rows == Dim::Vocab; });
            const DType q = vocab ? DType::Q8_0 : opts.quant;
            return cols % dtype_block(q).elems == 0 ? q : opts.dtype;  // rows of whole blocks, else unquantized
        }
    }
    return opts.dtype;
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

std::string weights_mode_name(const BuildOptions& opts) {
    switch (opts.weights) {
        case WeightsMode::Float: return "float";
        case WeightsMode::Keep: return "keep";
        case WeightsMode::Quantize: return std::string(dtype_name(opts.quant));
    }
    return "?";
}

void set_weights_mode(BuildOptions& opts, const std::string& name) {
    if (name == "float") {
        opts.weights = WeightsMode::Float;
    } else if (name == "keep") {
        opts.weights = WeightsMode::Keep;
    } else {
        const DType q = dtype_from_name(name);
        if (!dtype_is_block(q)) throw Error("--weights " + name + ": expected keep, float or a block type (q8_0, q4_k, ...)");
        opts.weights = WeightsMode::Quantize;
        opts.quant = q;
    }
}

std::string BuildSummary::text() const {
    std::vector<std::pair<uint64_t, DType>> by_size;
    for (const auto& [t, b] : bytes_by_dtype) by_size.push_back({b, t});
    std::sort(by_size.rbegin(), by_size.rend());
    std::string s;
    char buf[64];
    for (const auto& [b, t] : by_size) {
        std::snprintf(buf, sizeof buf, "%s%s %.1f MB", s.empty() ? "" : ", ", std::string(dtype_name(t)).c_str(), static_cast<double>(b) / 1e6);
        s += buf;
    }
    return s;
}

BuildSummary build_engine(const ModelSpec& spec, const BuildOptions& opts, const std::filesystem::path& out_dir,
                          const BuildProgressFn& progress) {
    const ModelConfig& c = spec.config;
    c.validate(spec.source);
    if (opts.max_batch_size < 1 || opts.max_input_len < 1 || opts.max_output_len < 1)
        throw Error("--max_batch_size, --max_input_len and --max_output_len must be at least 1");
    LAMINA_CHECK(!dtype_is_block(opts.dtype) && (opts.weights != WeightsMode::Quantize || dtype_is_block(opts.quant)),
                 "build dtype " + std::string(dtype_name(opts.dtype)) + ", quant " + std::string(dtype_name(opts.quant)));
    c.check_context(opts.max_input_len + opts.max_output_len, spec.source);
    // A token id the embedding has no row for would be read out of bounds: refused before anything is
    // written. Fewer tokens than rows is a padded embedding, and the engine's vocab is padded to match.
    if (static_cast<int64_t>(spec.vocab.tokens.size()) > c.n_vocab)
        throw Error(spec.source + ": the tokenizer has " + std::to_string(spec.vocab.tokens.size()) +
                    " tokens but the model's embedding has " + std::to_string(c.n_vocab) +
                    " rows (vocab_size): ids from " + std::to_string(c.n_vocab) + " have no embedding (wrong tokenizer?)");
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
        writers.push_back(std::make_unique<WeightsWriter>(out_dir, n_rank == 1 ? fmt::kWeightsFile : fmt::rank_weights_file(r), version,
                                                          r, n_rank));
    // Each tensor is read from the checkpoint once and written to every rank, cut to the rank's share
    // (with one rank the share is the whole tensor, so tp 1 engines are what they were before ranks).
    BuildMeter meter(spec, opts, progress);
    int64_t tensors_read = 0;  // checkpoint tensors read since the last engine tensor was written
    auto read = [&](const std::string& name, const std::vector<int64_t>& shape, DType dtype) {
        ++tensors_read;
        return read_weight(spec, name, shape, dtype, pool);
    };
    auto written = [&] {
        uint64_t bytes = 0;
        for (const auto& w : writers) bytes += w->bytes_written();
        meter.tensors_done(std::exchange(tensors_read, 0), bytes);
    };

    // Each engine tensor from its checkpoint parts (model/weight_names.h): every rank gets its share, the parts'
    // rows concatenated. A share is one of a dimension's blocks: the rank's query heads, KV heads, n_ff columns
    // or vocabulary rows (the last shard zero-padded); at tp_size 1 the whole dimension.
    const FamilyNames& names = weight_names(c.arch);
    const int64_t D = c.head_dim;
    auto share_of = [&](Dim d, int r) -> std::pair<int64_t, int64_t> {  // first row, rows
        switch (d) {
            case Dim::QDim: return {tp.first_head(r) * D, rc.q_dim()};
            case Dim::KvDim: return {tp.first_head_kv(r) * D, rc.kv_dim()};
            case Dim::Ff: return {tp.first_ff(r), rc.n_ff};
            case Dim::Vocab: return {tp.first_vocab(r), rank_dim_size(Dim::Vocab, rc, tp)};
            default: return {0, dim_size(d, c)};
        }
    };
    auto write = [&](const EngineTensorName& t, int64_t layer) {
        if (!is_present(t, c)) return;
        const std::string name = layer < 0 ? std::string(t.name) : fmt::layer_tensor(layer, t.name);
        const int64_t cols = dim_size(t.cols, c);
        std::vector<DType> stored;
        for (const auto& p : t.parts) stored.push_back(spec.weight(names.hf_name(p, layer), checkpoint_shape(t, p, c)).stored);
        const DType dtype = tensor_dtype(t, stored, cols, opts);
        std::vector<std::vector<uint8_t>> parts;
        for (const auto& p : t.parts) parts.push_back(read(names.hf_name(p, layer), checkpoint_shape(t, p, c), dtype));
        const std::vector<int64_t> shape = engine_shape(t, rc, tp);
        const size_t row_bytes = t.cols == Dim::None ? dtype_bytes(dtype, 1) : dtype_bytes(dtype, cols);
        const bool cut_rows = t.split == TpSplit::Rows || t.split == TpSplit::RowsAndZeroRow;
        auto rank_share = [&](int r) {
            if (t.split == TpSplit::Cols) {
                LAMINA_CHECK(parts.size() == 1, t.name);
                const auto [first, n] = share_of(t.cols, r);
                if (first % dtype_block(dtype).elems != 0 || n % dtype_block(dtype).elems != 0)
                    throw Error(spec.source + ": tensor '" + name + "' (" + std::string(dtype_name(dtype)) + ", blocks of " +
                                std::to_string(dtype_block(dtype).elems) + ") cannot be cut into " + std::to_string(n_rank) +
                                " column shares of " + std::to_string(n) + ": build with --weights float or another --tp_size");
                return col_block(parts[0], dtype, cols, first, n);
            }
            std::vector<uint8_t> out;
            for (size_t i = 0; i < parts.size(); ++i) {
                if (!cut_rows) {
                    out.insert(out.end(), parts[i].begin(), parts[i].end());
                    continue;
                }
                const auto [first, n] = share_of(t.parts[i].rows, r);
                const auto rows = row_block(parts[i], row_bytes, first, n);
                out.insert(out.end(), rows.begin(), rows.end());
            }
            if (t.split == TpSplit::RowsAndZeroRow && n_rank > 1) out.resize(out.size() + row_bytes, 0);
            return out;
        };
        // o_proj and down biases go to rank 0 only: the all-reduce after them must add them once.
        const int ranks = t.split == TpSplit::Rank0 ? 1 : n_rank;
        const bool whole = n_rank == 1 || !(cut_rows || t.split == TpSplit::Cols);
        for (int r = 0; r < ranks; ++r) {
            if (whole && parts.size() == 1) writers[r]->add(name, dtype, shape, parts[0]);
            else writers[r]->add(name, dtype, shape, rank_share(r));
        }
        written();
    };
    for (const auto& t : names.globals) write(t, -1);
    for (int64_t i = 0; i < c.n_layer; ++i)
        for (const auto& t : names.layer) write(t, i);
    nlohmann::json weights = nlohmann::json::array();
    BuildSummary summary;
    for (auto& w : writers) {
        for (const auto& [t, b] : w->bytes_by_dtype()) summary.bytes_by_dtype[t] += b;
        weights.push_back(w->finish());
    }

    const bool has_tokenizer = !spec.vocab.tokens.empty();
    if (has_tokenizer) {
        Vocab vocab = spec.vocab;
        pad_vocab(vocab, static_cast<int32_t>(c.n_vocab));
        save_vocab(vocab, out_dir / fmt::kTokenizerFile);
    }
    nlohmann::json config = {
        {"format", fmt::kFormatName},
        {"format_version", version},
        {"model", c},
        {"dtype", dtype_name(opts.dtype)},
        {"build", {{"source", spec.source}, {"rmsnorm_plugin", opts.rmsnorm_plugin}, {"weights", weights_mode_name(opts)}}},
        {"limits",
         {{"max_batch_size", opts.max_batch_size}, {"max_input_len", opts.max_input_len}, {"max_output_len", opts.max_output_len}}},
        {"tokenizer", has_tokenizer ? nlohmann::json(fmt::kTokenizerFile) : nlohmann::json(nullptr)},
        // One rank: the weights.bin object, as format version 1 has it; tp_size > 1: one object per rank.
        {"weights", n_rank == 1 ? weights.front() : weights},
    };
    if (n_rank > 1)
        config["tensor_parallel"] = {{"tp_size", n_rank}, {"n_vocab_shard", tp.n_vocab_shard}, {"kv_replicas", tp.kv_replicas}};
    std::ofstream out(out_dir / fmt::kConfigFile);
    // build.source is the checkpoint's path, which on Linux may be any bytes: invalid UTF-8 is written as U+FFFD
    // rather than failing the build at its last step.
    out << config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    if (!out) throw Error((out_dir / fmt::kConfigFile).string() + ": write failed");
    return summary;
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
    for (const CheckpointName& n : checkpoint_names(c)) add(n.hf, n.shape, n.role == WeightRole::Norm);
    return spec;
}

}  // namespace lamina
