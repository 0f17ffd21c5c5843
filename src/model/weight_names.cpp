#include "model/weight_names.h"

#include "core/error.h"
#include "parallel/sharding.h"

namespace lamina {

int64_t dim_size(Dim d, const ModelConfig& c) {
    switch (d) {
        case Dim::None: return 1;
        case Dim::Vocab: return c.n_vocab;
        case Dim::Embd: return c.n_embd;
        case Dim::QDim: return c.q_dim();
        case Dim::KvDim: return c.kv_dim();
        case Dim::Ff: return c.n_ff;
    }
    LAMINA_CHECK(false, "unknown Dim");
    return 0;
}

std::string FamilyNames::hf_name(const CheckpointTensor& part, int64_t layer) const {
    return layer < 0 ? std::string(part.hf) : hf_layer_prefix + std::to_string(layer) + "." + part.hf;
}

std::string FamilyNames::gguf_name(const CheckpointTensor& part, int64_t layer) const {
    return layer < 0 ? std::string(part.gguf) : gguf_layer_prefix + std::to_string(layer) + "." + part.gguf;
}

namespace {

// The layer index of `name` when it is prefix + digits + "." + suffix, else -1.
int64_t layer_of(std::string_view name, std::string_view prefix, std::string_view suffix) {
    if (name.size() <= prefix.size() + suffix.size() + 1 || name.substr(0, prefix.size()) != prefix ||
        name.substr(name.size() - suffix.size()) != suffix || name[name.size() - suffix.size() - 1] != '.')
        return -1;
    const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size() - 1);
    constexpr size_t kMaxDigits = 9;  // far past any model's layer count, and no overflow
    if (digits.empty() || digits.size() > kMaxDigits || (digits.size() > 1 && digits[0] == '0')) return -1;
    int64_t layer = 0;
    for (char ch : digits) {
        if (ch < '0' || ch > '9') return -1;
        layer = layer * 10 + (ch - '0');
    }
    return layer;
}

template <typename NameOf>
std::optional<FamilyNames::Found> find_name(const FamilyNames& f, std::string_view name, std::string_view layer_prefix,
                                            NameOf name_of) {
    for (const auto& t : f.globals)
        for (const auto& p : t.parts)
            if (name == name_of(p)) return FamilyNames::Found{&t, &p, -1};
    for (const auto& t : f.layer)
        for (const auto& p : t.parts)
            if (const int64_t layer = layer_of(name, layer_prefix, name_of(p)); layer >= 0)
                return FamilyNames::Found{&t, &p, layer};
    return std::nullopt;
}

}  // namespace

std::optional<FamilyNames::Found> FamilyNames::find_hf(std::string_view name) const {
    return find_name(*this, name, hf_layer_prefix, [](const CheckpointTensor& p) { return std::string_view(p.hf); });
}

std::optional<FamilyNames::Found> FamilyNames::find_gguf(std::string_view name) const {
    return find_name(*this, name, gguf_layer_prefix, [](const CheckpointTensor& p) { return std::string_view(p.gguf); });
}

const GlobalTensorName& FamilyNames::global(std::string_view engine_name) const {
    for (const auto& t : globals)
        if (engine_name == t.name) return t;
    LAMINA_CHECK(false, "no global engine tensor '" + std::string(engine_name) + "' in the name table");
    return globals.front();
}

const LayerTensorName& FamilyNames::layer_tensor(std::string_view engine_name) const {
    for (const auto& t : layer)
        if (engine_name == t.name) return t;
    LAMINA_CHECK(false, "no layer engine tensor '" + std::string(engine_name) + "' in the name table");
    return layer.front();
}

const FamilyNames& weight_names(const std::string& arch) {
    if (arch == "llama") return llama_weight_names();
    throw Error("no weight names for architecture '" + arch + "' (lamina has them for: llama)");
}

bool is_present(const EngineTensorName& t, const ModelConfig& c) {
    switch (t.presence) {
        case Presence::Always: return true;
        case Presence::AttnBias: return c.block.attn_bias;
        case Presence::MlpBias: return c.block.mlp_bias;
        case Presence::UntiedHead: return !c.block.tied_embeddings;
    }
    return false;
}

std::vector<int64_t> checkpoint_shape(const EngineTensorName& t, const CheckpointTensor& part, const ModelConfig& c) {
    if (t.cols == Dim::None) return {dim_size(part.rows, c)};
    return {dim_size(part.rows, c), dim_size(t.cols, c)};
}

int64_t rank_dim_size(Dim d, const ModelConfig& rank_config, const TpSharding& tp) {
    return d == Dim::Vocab && tp.tp_size > 1 ? tp.n_vocab_shard : dim_size(d, rank_config);
}

std::vector<int64_t> engine_shape(const EngineTensorName& t, const ModelConfig& rank_config, const TpSharding& tp) {
    int64_t rows = 0;
    for (const auto& p : t.parts) rows += rank_dim_size(p.rows, rank_config, tp);
    if (t.split == TpSplit::RowsAndZeroRow && tp.tp_size > 1) rows += 1;
    if (t.cols == Dim::None) return {rows};
    return {rows, rank_dim_size(t.cols, rank_config, tp)};
}

int64_t gguf_rope_heads(const CheckpointTensor& part, const ModelConfig& c) {
    return part.gguf_rope_rows ? dim_size(part.rows, c) / c.head_dim : 0;
}

std::vector<CheckpointName> checkpoint_names(const ModelConfig& c) {
    const FamilyNames& names = weight_names(c.arch);
    std::vector<CheckpointName> out;
    auto add = [&](const EngineTensorName& t, int64_t layer) {
        if (!is_present(t, c)) return;
        for (const auto& p : t.parts)
            out.push_back({names.hf_name(p, layer), names.gguf_name(p, layer), checkpoint_shape(t, p, c), t.role});
    };
    for (const auto& t : names.globals) add(t, -1);
    for (int64_t i = 0; i < c.n_layer; ++i)
        for (const auto& t : names.layer) add(t, i);
    return out;
}

}  // namespace lamina
