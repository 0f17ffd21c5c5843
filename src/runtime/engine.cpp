#include "runtime/engine.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "build/engine_format.h"
#include "core/checked.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "model/weight_names.h"

namespace lamina {

namespace fmt = engine_format;

namespace {

// An engine's config.json is lamina's own, but read as hostile as any input: its tensor table is a few MB for the
// largest models (~150 bytes a tensor), and a hand-edited or damaged one must not crash or misread.
constexpr size_t kMaxConfigBytes = size_t{64} << 20;

DType engine_dtype_of(const JsonFields& f, const char* key) {
    const std::string name = f.string(key);
    try {
        return dtype_from_name(name);
    } catch (const Error& e) {
        f.fail(key, e.what());
    }
}

struct TableEntry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t offset;
    uint64_t bytes;
};

class TensorTable {
public:
    // `weights` is one weights file's object of config.json: its "tensors" list of {name, dtype, shape, offset, bytes}.
    TensorTable(const JsonFields& weights, const MappedFile& file) : file_(file), where_(weights.file()) {
        const std::string file_name = file.path().filename().string();
        const nlohmann::json& list = weights.array("tensors");
        struct ByteRange {
            uint64_t begin, end;
            const std::string* name;
        };
        std::vector<ByteRange> ranges;
        for (size_t i = 0; i < list.size(); ++i) {
            const JsonFields t(list[i], where_, weights.prefix() + "tensors[" + std::to_string(i) + "].");
            const std::string name = t.string("name");
            const std::string what = where_ + ": tensor '" + printable(name) + "'";
            TableEntry e{engine_dtype_of(t, "dtype"), t.integers("shape", 0), static_cast<uint64_t>(t.integer("offset", 0)),
                         static_cast<uint64_t>(t.integer("bytes", 0))};
            const DTypeBlock block = dtype_block(e.dtype);
            if (block.elems > 1 && (e.shape.empty() || e.shape.back() % block.elems != 0))
                t.fail("shape", "does not hold whole " + std::string(dtype_name(e.dtype)) + " blocks of " + std::to_string(block.elems) +
                                    " a row (corrupt engine?)");
            const uint64_t n_bytes =
                checked_mul(static_cast<uint64_t>(checked_product(e.shape, (what + " element count").c_str())) / static_cast<uint64_t>(block.elems),
                            static_cast<uint64_t>(block.bytes), (what + " bytes").c_str());
            if (e.bytes != n_bytes) t.fail("bytes", "is inconsistent with its shape, which needs " + std::to_string(n_bytes));
            // Tensors start past the 64-byte header, aligned, and end within the file.
            if (e.offset < fmt::kAlignment || e.offset % fmt::kAlignment != 0 || e.offset > file.size() ||
                e.bytes > file.size() - e.offset)
                t.fail("offset", "is inconsistent with " + file_name + " of " + std::to_string(file.size()) +
                                     " bytes (a multiple of 64 past the header, with the tensor inside the file; corrupt engine?)");
            const auto [it, inserted] = entries_.emplace(name, e);
            if (!inserted) t.fail("name", "appears twice in the tensor table");
            if (e.bytes > 0) ranges.push_back({e.offset, e.offset + e.bytes, &it->first});
        }
        // Tensors sharing bytes would alias each other's weights.
        std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
        for (size_t i = 1; i < ranges.size(); ++i)
            if (ranges[i].begin < ranges[i - 1].end)
                throw Error(where_ + ": tensors '" + printable(*ranges[i - 1].name) + "' and '" + printable(*ranges[i].name) + "' of " +
                            file_name + " overlap at bytes " + std::to_string(ranges[i].begin) + " to " +
                            std::to_string(std::min(ranges[i].end, ranges[i - 1].end)) + " (corrupt engine?)");
    }

    // A view of the named tensor, checked to have this shape (and dtype when given).
    TensorView get(const std::string& name, std::vector<int64_t> shape, std::optional<DType> dtype) const {
        auto it = entries_.find(name);
        if (it == entries_.end()) throw Error(where_ + ": engine is missing tensor '" + name + "'");
        const TableEntry& e = it->second;
        if (e.shape != shape || (dtype && e.dtype != *dtype))
            throw Error(where_ + ": engine tensor '" + name + "' has the wrong shape or dtype (corrupt engine?)");
        const int64_t rows = shape.size() == 2 ? shape[0] : 1;
        return make_view(file_.data() + e.offset, e.dtype, rows, shape.back());
    }

private:
    const MappedFile& file_;
    std::string where_;
    std::map<std::string, TableEntry> entries_;
};

// Limits from an engine's config.json (`prefix` "limits.") or a command's flags ("--"): each in [1, its bound
// in model_config.h], so that max_input_len + max_output_len and the KV cache's size stay far from overflow,
// and a context the model runs exactly (ModelConfig::check_context).
void check_limits(const EngineLimits& l, const ModelConfig& c, const std::string& prefix, const std::string& origin) {
    auto bounded = [&](int64_t v, const char* key, int64_t max, const char* max_name) {
        if (v < 1 || v > max)
            throw Error(origin + ": " + prefix + key + " = " + std::to_string(v) + ": must be in [1, " + max_name + " = " +
                        std::to_string(max) + "]");
    };
    bounded(l.max_batch_size, "max_batch_size", kMaxDimension, "2^20");
    bounded(l.max_input_len, "max_input_len", kMaxContext, "2^24");
    bounded(l.max_output_len, "max_output_len", kMaxContext, "2^24");
    c.check_context(l.max_input_len + l.max_output_len, origin);
}

}  // namespace

Engine::Engine(const std::filesystem::path& dir) : dir_(dir) {
    const auto config_path = dir / fmt::kConfigFile;
    const std::string where = config_path.string();
    if (!std::filesystem::is_directory(dir)) throw Error(dir.string() + ": engine directory does not exist");
    if (!std::filesystem::exists(config_path))
        throw Error(where + ": missing (not an engine directory? build one with `lamina build`)");
    const nlohmann::json j = read_json_file(config_path, "engine config", kMaxConfigBytes);
    const JsonFields top(j, where);
    if (const nlohmann::json* format = top.find("format"); !format || *format != fmt::kFormatName)
        throw Error(where + ": not a lamina engine config");
    const int64_t version = top.integer("format_version");
    if (version != fmt::kFormatVersion && version != fmt::kFormatVersionTp)
        throw Error(where + ": engine format version " + std::to_string(version) + " is not supported (this lamina reads " +
                    std::to_string(fmt::kFormatVersion) + " and " + std::to_string(fmt::kFormatVersionTp) +
                    "); rebuild the engine");
    config_ = model_config_from_json(top.object("model"));
    config_.validate(where);
    dtype_ = engine_dtype_of(top, "dtype");
    if (dtype_is_block(dtype_)) top.fail("dtype", "must be float32, float16 or bfloat16 (the engine's float type)");
    rmsnorm_plugin_ = top.object("build").boolean_or("rmsnorm_plugin", true);
    const JsonFields lim = top.object("limits");
    limits_ = {lim.integer("max_batch_size"), lim.integer("max_input_len"), lim.integer("max_output_len")};
    check_limits(limits_, config_, "limits.", where);

    // Format 1: "weights" is weights.bin's object; format 2: one object per rank.
    int64_t tp_size = 1;
    std::optional<JsonFields> tp;
    if (version == fmt::kFormatVersionTp) {
        tp.emplace(top.object("tensor_parallel"));
        tp_size = tp->integer("tp_size", 2, 64);
    }
    try {
        sharding_ = plan_tensor_parallel(config_, tp_size);
    } catch (const Error& e) {
        throw Error(where + ": " + e.what());
    }
    if (tp && (tp->integer("n_vocab_shard") != sharding_.n_vocab_shard || tp->integer("kv_replicas") != sharding_.kv_replicas))
        throw Error(where + ": tensor_parallel does not match the model's shapes (corrupt engine?)");
    ranks_.reserve(static_cast<size_t>(tp_size));
    if (version == fmt::kFormatVersionTp) {
        const nlohmann::json& wj = top.array("weights");
        if (static_cast<int64_t>(wj.size()) != tp_size)
            top.fail("weights", "must list one file per rank (" + std::to_string(tp_size) + ")");
        for (int r = 0; r < tp_size; ++r)
            load_rank(JsonFields(wj[static_cast<size_t>(r)], where, "weights[" + std::to_string(r) + "]."), r, version);
    } else {
        load_rank(top.object("weights"), 0, version);
    }
    if (const auto tok = top.string_opt("tokenizer")) {
        if (*tok != fmt::kTokenizerFile) top.fail("tokenizer", "unexpected tokenizer file (expected " + std::string(fmt::kTokenizerFile) + ")");
        Vocab vocab = load_vocab(dir / *tok);
        if (vocab.n_vocab() > config_.n_vocab)
            throw Error(where + ": the tokenizer has " + std::to_string(vocab.n_vocab()) +
                        " tokens but the model's embedding has " + std::to_string(config_.n_vocab) + " rows");
        pad_vocab(vocab, static_cast<int32_t>(config_.n_vocab));  // engines built before build padded it
        tokenizer_ = std::make_unique<Tokenizer>(std::move(vocab));
    }
}

void Engine::load_rank(const JsonFields& wj, int r, int64_t version) {
    const std::string file = wj.string("file");
    const std::string expected_file = version == fmt::kFormatVersionTp ? fmt::rank_weights_file(r) : fmt::kWeightsFile;
    if (file != expected_file) wj.fail("file", "unexpected weights file (expected " + expected_file + ")");
    EngineRank& R = ranks_.emplace_back();
    R.file = MappedFile(dir_ / file);
    const std::string path = R.file.path().string();
    const uint64_t expected = static_cast<uint64_t>(wj.integer("bytes", 0));
    fmt::WeightsHeader h{};
    if (R.file.size() < sizeof h) throw Error(path + ": truncated (no header)");
    std::memcpy(&h, R.file.data(), sizeof h);
    if (std::memcmp(h.magic, fmt::kWeightsMagic, sizeof h.magic) != 0) throw Error(path + ": bad magic (not a lamina weights file)");
    if (h.version != static_cast<uint32_t>(version))
        throw Error(path + ": weights format version " + std::to_string(h.version) + " does not match " + std::to_string(version));
    if (h.file_bytes != expected || R.file.size() != expected)
        throw Error(path + ": size " + std::to_string(R.file.size()) + " bytes, expected " + std::to_string(expected) +
                    " (truncated or corrupt engine)");
    // The rank files of an engine have the same names and often the same size: swapped (renamed into each other)
    // or taken from another engine, they would load into the wrong rank's heads and compute garbage. One-rank
    // files written before the header recorded the rank say tp_size 0, and have no other rank to be mistaken for.
    const bool unrecorded_single = version == fmt::kFormatVersion && h.tp_size == 0 && h.rank == 0;
    if (version == fmt::kFormatVersionTp && h.tp_size == 0)
        throw Error(path + ": written by a lamina that did not record a rank file's rank; rebuild the engine");
    if (!unrecorded_single && (h.rank != r || h.tp_size != sharding_.tp_size))
        throw Error(path + ": holds rank " + std::to_string(h.rank) + " of a " + std::to_string(h.tp_size) +
                    "-rank engine, but the engine's config.json expects rank " + std::to_string(r) + " of " +
                    std::to_string(sharding_.tp_size) + " here (weights files renamed or mixed between engines?)");

    TensorTable table(wj, R.file);
    const TpSharding& s = sharding_;
    R.config = s.rank_config(config_);
    const ModelConfig& c = R.config;
    // With one rank the vocabulary is whole; with more, each rank has n_vocab_shard rows and tok_embd
    // one more (zeros, for the ids of other ranks).
    const int64_t vocab_rows = rank_dim_size(Dim::Vocab, c, s);
    R.vocab_begin = s.first_vocab(r);
    // Every tensor the name table lists for this model, into its LlamaWeights field; o_proj and down biases
    // (TpSplit::Rank0) live on rank 0 only, as the all-reduce after those matmuls adds them once.
    const FamilyNames& names = weight_names(c.arch);
    auto resolve = [&](const EngineTensorName& t, const std::string& name) {
        if (!is_present(t, c) || (t.split == TpSplit::Rank0 && r != 0)) return TensorView{};
        // Norms and biases are f32; matrices and embeddings are in whatever format the build chose for each.
        const bool f32 = t.role == WeightRole::Norm || t.role == WeightRole::Bias;
        return table.get(name, engine_shape(t, c, s), f32 ? std::optional<DType>(DType::F32) : std::nullopt);
    };
    LlamaWeights& w = R.weights;
    for (const auto& t : names.globals) w.*t.field = resolve(t, t.name);
    if (c.block.tied_embeddings) {
        w.output = w.tok_embd;
        w.output.rows = vocab_rows;
    }
    for (int64_t i = 0; i < c.n_layer; ++i) {
        LayerWeights L;
        for (const auto& t : names.layer) L.*t.field = resolve(t, fmt::layer_tensor(i, t.name));
        w.layers.push_back(L);
    }
}

bool Engine::has_block_weights() const {
    const LlamaWeights& w = ranks_.front().weights;
    bool any = dtype_is_block(w.tok_embd.dtype) || dtype_is_block(w.output.dtype);
    for (const LayerWeights& L : w.layers)
        for (const TensorView* v : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) any = any || dtype_is_block(v->dtype);
    return any;
}

void Engine::set_limits(const EngineLimits& l) {
    check_limits(l, config_, "--", dir_.string());
    limits_ = l;
}

const Tokenizer& Engine::tokenizer() const {
    if (!tokenizer_) throw Error(dir_.string() + ": engine has no tokenizer (built from random weights without --tokenizer)");
    return *tokenizer_;
}

}  // namespace lamina
