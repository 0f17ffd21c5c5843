#include "model/model_config.h"

#include <cmath>
#include <numbers>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lamina {

void ModelConfig::validate(const std::string& origin) const {
    auto positive = [&](int64_t v, const char* name) {
        if (v <= 0) throw Error(origin + ": " + name + " must be positive, got " + std::to_string(v));
    };
    positive(n_vocab, "n_vocab");
    positive(n_embd, "n_embd");
    positive(n_layer, "n_layer");
    positive(n_head, "n_head");
    positive(n_head_kv, "n_head_kv");
    positive(head_dim, "head_dim");
    positive(n_ff, "n_ff");
    positive(n_ctx, "n_ctx");
    if (n_head % n_head_kv != 0)
        throw Error(origin + ": n_head " + std::to_string(n_head) + " is not a multiple of n_head_kv " +
                    std::to_string(n_head_kv));
    if (head_dim % 2 != 0) throw Error(origin + ": head_dim " + std::to_string(head_dim) + " must be even for RoPE");
    if (!(rope_theta > 0) || !(rms_eps > 0)) throw Error(origin + ": rope_theta and rms_eps must be positive");
    if (!(rope_scaling.factor > 0)) throw Error(origin + ": rope_scaling factor must be positive");
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
    const int64_t half = c.head_dim / 2;
    std::vector<float> inv(half);
    for (int64_t i = 0; i < half; ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
        inv[i] = 1.0f / std::pow(c.rope_theta, exponent);
    }
    const RopeScaling& s = c.rope_scaling;
    if (s.kind == RopeScaling::Kind::Linear) {
        for (auto& f : inv) f /= s.factor;
    } else if (s.kind == RopeScaling::Kind::Llama3) {
        // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
        const float old_ctx = static_cast<float>(s.original_max_position);
        const float low_freq_wavelen = old_ctx / s.low_freq_factor;
        const float high_freq_wavelen = old_ctx / s.high_freq_factor;
        for (auto& f : inv) {
            const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
            if (wavelen > low_freq_wavelen) {
                f = f / s.factor;
            } else if (wavelen >= high_freq_wavelen) {
                const float smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                f = (1.0f - smooth) * f / s.factor + smooth * f;
            }
        }
    }
    return inv;
}

namespace {
const char* rope_kind_name(RopeScaling::Kind k) {
    switch (k) {
        case RopeScaling::Kind::Linear: return "linear";
        case RopeScaling::Kind::Llama3: return "llama3";
        default: return "none";
    }
}
}  // namespace

void to_json(nlohmann::json& j, const ModelConfig& c) {
    j = nlohmann::json{{"arch", c.arch},           {"n_vocab", c.n_vocab},     {"n_embd", c.n_embd},
                       {"n_layer", c.n_layer},     {"n_head", c.n_head},       {"n_head_kv", c.n_head_kv},
                       {"head_dim", c.head_dim},   {"n_ff", c.n_ff},           {"n_ctx", c.n_ctx},
                       {"rope_theta", c.rope_theta}, {"rms_eps", c.rms_eps},
                       {"tied_embeddings", c.tied_embeddings}, {"attn_bias", c.attn_bias},
                       {"mlp_bias", c.mlp_bias}};
    j["rope_scaling"] = {{"type", rope_kind_name(c.rope_scaling.kind)},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position", c.rope_scaling.original_max_position}};
}

void from_json(const nlohmann::json& j, ModelConfig& c) {
    c.arch = j.at("arch").get<std::string>();
    c.n_vocab = j.at("n_vocab");
    c.n_embd = j.at("n_embd");
    c.n_layer = j.at("n_layer");
    c.n_head = j.at("n_head");
    c.n_head_kv = j.at("n_head_kv");
    c.head_dim = j.at("head_dim");
    c.n_ff = j.at("n_ff");
    c.n_ctx = j.at("n_ctx");
    c.rope_theta = j.at("rope_theta");
    c.rms_eps = j.at("rms_eps");
    c.tied_embeddings = j.at("tied_embeddings");
    c.attn_bias = j.at("attn_bias");
    c.mlp_bias = j.at("mlp_bias");
    const auto& r = j.at("rope_scaling");
    const std::string type = r.at("type");
    c.rope_scaling.kind = type == "linear"   ? RopeScaling::Kind::Linear
                          : type == "llama3" ? RopeScaling::Kind::Llama3
                          : type == "none"   ? RopeScaling::Kind::None
                                             : throw Error("unknown rope_scaling type '" + type + "'");
    c.rope_scaling.factor = r.at("factor");
    c.rope_scaling.low_freq_factor = r.at("low_freq_factor");
    c.rope_scaling.high_freq_factor = r.at("high_freq_factor");
    c.rope_scaling.original_max_position = r.at("original_max_position");
}

}  // namespace lamina
