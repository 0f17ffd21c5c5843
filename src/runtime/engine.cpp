#include "runtime/engine.h"

#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

#include "build/engine_format.h"
#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"
#include "model/weight_names.h"

namespace lamina {

namespace fmt = engine_format;

namespace {

struct TableEntry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t offset;
    uint64_t bytes;
};

class TensorTable {
public:
    TensorTable(const nlohmann::json& tensors, const MappedFile& file, const std::string& where)
        : file_(file), where_(where) {
        for (const auto& t : tensors) {
            TableEntry e{dtype_from_name(t.at("dtype").get<std::string>()), t.at("shape").get<std::vector<int64_t>>(),
                         t.at("offset").get<uint64_t>(), t.at("bytes").get<uint64_t>()};
            const std::string name = t.at("name");
            const std::string what = where + ": tensor '" + name + "'";
            const uint64_t n_bytes = checked_mul(static_cast<uint64_t>(checked_product(e.shape, (what + " element count").c_str())),
                                                 uint64_t{dtype_size(e.dtype)}, (what + " bytes").c_str());
            if (e.bytes != n_bytes || e.offset % fmt::kAlignment != 0 ||
                e.offset > file.size() || e.bytes > file.size() - e.offset)
                throw Error(where + ": tensor '" + name + "' entry is inconsistent with weights.bin (corrupt engine?)");
            entries_[name] = e;
        }
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
    const std::string text = read_regular_file(config_path, "engine config");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(where + ": not valid JSON: " + e.what());
    }
    try {
        if (j.value("format", std::string{}) != fmt::kFormatName) throw Error(where + ": not a lamina engine config");
        const int version = j.at("format_version");
        if (version != fmt::kFormatVersion && version != fmt::kFormatVersionTp)
            throw Error(where + ": engine format version " + std::to_string(version) + " is not supported (this lamina reads " +
                        std::to_string(fmt::kFormatVersion) + " and " + std::to_string(fmt::kFormatVersionTp) +
                        "); rebuild the engine");
        try {
            config_ = j.at("model").get<ModelConfig>();
        } catch (const Error& e) {
            throw Error(where + ": model: " + e.what());
        }
        config_.validate(where);
        dtype_ = dtype_from_name(j.at("dtype").get<std::string>());
        rmsnorm_plugin_ = j.at("build").value("rmsnorm_plugin", true);
        const auto& lim = j.at("limits");
        limits_ = {lim.at("max_batch_size"), lim.at("max_input_len"), lim.at("max_output_len")};
        check_limits(limits_, config_, "limits.", where);

        // Format 1: "weights" is weights.bin's object; format 2: one object per rank.
        int64_t tp_size = 1;
        if (version == fmt::kFormatVersionTp) tp_size = j.at("tensor_parallel").at("tp_size").get<int64_t>();
        try {
            sharding_ = plan_tensor_parallel(config_, tp_size);
        } catch (const Error& e) {
            throw Error(where + ": " + e.what());
        }
        if (version == fmt::kFormatVersionTp &&
            (tp_size < 2 || j["tensor_parallel"].at("n_vocab_shard") != sharding_.n_vocab_shard ||
             j["tensor_parallel"].at("kv_replicas") != sharding_.kv_replicas))
            throw Error(where + ": tensor_parallel does not match the model's shapes (corrupt engine?)");
        const auto& wj = j.at("weights");
        if (version == fmt::kFormatVersionTp && (!wj.is_array() || static_cast<int64_t>(wj.size()) != tp_size))
            throw Error(where + ": \"weights\" must list one file per rank (" + std::to_string(tp_size) + ")");
        ranks_.reserve(static_cast<size_t>(tp_size));
        for (int r = 0; r < tp_size; ++r)
            load_rank(version == fmt::kFormatVersionTp ? wj[static_cast<size_t>(r)] : wj, r, version, where);
        if (j.contains("tokenizer") && !j["tokenizer"].is_null()) {
            const std::string tok = j["tokenizer"];
            if (tok != fmt::kTokenizerFile) throw Error(where + ": unexpected tokenizer file '" + tok + "'");
            Vocab vocab = load_vocab(dir / tok);
            if (vocab.n_vocab() > config_.n_vocab)
                throw Error(where + ": the tokenizer has " + std::to_string(vocab.n_vocab()) +
                            " tokens but the model's embedding has " + std::to_string(config_.n_vocab) + " rows");
            pad_vocab(vocab, static_cast<int32_t>(config_.n_vocab));  // engines built before build padded it
            tokenizer_ = std::make_unique<Tokenizer>(std::move(vocab));
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error(where + ": missing or malformed field: " + e.what());
    }
}

void Engine::load_rank(const nlohmann::json& wj, int r, int version, const std::string& where) {
    const std::string file = wj.at("file");
    const std::string expected_file = version == fmt::kFormatVersionTp ? fmt::rank_weights_file(r) : fmt::kWeightsFile;
    if (file != expected_file) throw Error(where + ": unexpected weights file '" + file + "'");
    EngineRank& R = ranks_.emplace_back();
    R.file = MappedFile(dir_ / file);
    const std::string path = R.file.path().string();
    const uint64_t expected = wj.at("bytes");
    fmt::WeightsHeader h{};
    if (R.file.size() < sizeof h) throw Error(path + ": truncated (no header)");
    std::memcpy(&h, R.file.data(), sizeof h);
    if (std::memcmp(h.magic, fmt::kWeightsMagic, sizeof h.magic) != 0) throw Error(path + ": bad magic (not a lamina weights file)");
    if (h.version != static_cast<uint32_t>(version))
        throw Error(path + ": weights format version " + std::to_string(h.version) + " does not match " + std::to_string(version));
    if (h.file_bytes != expected || R.file.size() != expected)
        throw Error(path + ": size " + std::to_string(R.file.size()) + " bytes, expected " + std::to_string(expected) +
                    " (truncated or corrupt engine)");

    TensorTable table(wj.at("tensors"), R.file, where);
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
        return table.get(name, engine_shape(t, c, s), engine_dtype(t, dtype_));
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

void Engine::set_limits(const EngineLimits& l) {
    check_limits(l, config_, "--", dir_.string());
    limits_ = l;
}

const Tokenizer& Engine::tokenizer() const {
    if (!tokenizer_) throw Error(dir_.string() + ": engine has no tokenizer (built from random weights without --tokenizer)");
    return *tokenizer_;
}

}  // namespace lamina
