#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "model/weight_names.h"

namespace lamina {

namespace {

// A float as %g prints it: short, and "inf" or "nan" for what a config must never hold.
std::string show(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

}  // namespace

void ModelConfig::validate(const std::string& origin) const {
    auto fail = [&](const std::string& key, const std::string& value, const std::string& why) {
        throw Error(origin + ": " + key + " = " + value + ": " + why);
    };
    auto in_range = [&](int64_t v, const char* name, int64_t max, const char* max_name) {
        if (v <= 0) fail(name, std::to_string(v), "must be positive");
        if (v > max) fail(name, std::to_string(v), std::string("exceeds ") + max_name + " = " + std::to_string(max) + ", the most lamina accepts");
    };
    try {
        weight_names(arch);
    } catch (const Error& e) {
        throw Error(origin + ": " + e.what());
    }
    // The bounds first: every product below is of values within them.
    in_range(n_vocab, "n_vocab", kMaxVocab, "2^24");
    for (auto [v, name] : {std::pair{n_embd, "n_embd"}, {n_layer, "n_layer"}, {n_head, "n_head"}, {n_head_kv, "n_head_kv"},
                           {head_dim, "head_dim"}, {n_ff, "n_ff"}})
        in_range(v, name, kMaxDimension, "2^20");
    in_range(n_ctx, "n_ctx", kMaxContext, "2^24");
    if (n_head % n_head_kv != 0)
        throw Error(origin + ": n_head " + std::to_string(n_head) + " is not a multiple of n_head_kv " +
                    std::to_string(n_head_kv));
    if (head_dim % 2 != 0) throw Error(origin + ": head_dim " + std::to_string(head_dim) + " must be even for RoPE");
    if (!std::isfinite(rope_theta) || !(rope_theta > 0)) fail("rope_theta", show(rope_theta), "must be a finite number above 0");
    if (!std::isfinite(rms_eps) || !(rms_eps > 0) || !(rms_eps < 1)) fail("rms_eps", show(rms_eps), "must be a finite number in (0, 1)");
    if (sliding_window < 0) throw Error(origin + ": sliding_window must not be negative, got " + std::to_string(sliding_window));
    if (sliding_window > kMaxContext) in_range(sliding_window, "sliding_window", kMaxContext, "2^24");
    const BlockDescription& b = block;
    if (b.attention_pattern.empty()) throw Error(origin + ": the per-layer attention pattern is empty");
    for (auto kind : b.attention_pattern)
        if (kind == BlockDescription::Attention::Sliding && sliding_window == 0)
            throw Error(origin + ": sliding-window attention layers need a sliding_window above 0");
    if (!(b.embedding_scale > 0) || !std::isfinite(b.embedding_scale))
        throw Error(origin + ": embedding_scale must be a positive number, got " + show(b.embedding_scale));
    const RopeScaling& s = rope_scaling;
    using K = RopeScaling::Kind;
    auto finite_positive = [&](float v, const char* name) {
        if (!(v > 0) || !std::isfinite(v))
            fail(std::string("rope scaling ") + name, show(v), "must be a finite number above 0");
    };
    finite_positive(s.factor, "factor");
    // transformers warns below 1 (it would shrink the context); above the longest context it means nothing.
    if ((s.kind == K::Linear || s.kind == K::Dynamic || s.kind == K::Llama3 || s.kind == K::Yarn) &&
        (s.factor < 1 || s.factor > static_cast<float>(kMaxContext)))
        fail("rope scaling factor", show(s.factor), "must be in [1, 2^24]");
    finite_positive(s.attention_factor, "attention_factor");
    if (s.kind == K::Llama3 || s.kind == K::Yarn)
        in_range(s.original_max_position, "rope scaling original_max_position_embeddings", kMaxContext, "2^24");
    if (s.kind == K::Llama3) {
        finite_positive(s.low_freq_factor, "low_freq_factor");
        finite_positive(s.high_freq_factor, "high_freq_factor");
        if (s.low_freq_factor == s.high_freq_factor)
            throw Error(origin + ": llama3 rope scaling needs low_freq_factor != high_freq_factor (both " +
                        show(s.low_freq_factor) + ")");
    }
    if (s.kind == K::Yarn) {
        finite_positive(s.beta_fast, "beta_fast");
        finite_positive(s.beta_slow, "beta_slow");
    }
    if (s.kind == K::FreqFactors) {
        if (static_cast<int64_t>(s.freq_factors.size()) != head_dim / 2)
            throw Error(origin + ": " + std::to_string(s.freq_factors.size()) + " RoPE frequency factors for head_dim " +
                        std::to_string(head_dim) + " (expected " + std::to_string(head_dim / 2) + ")");
        for (float f : s.freq_factors) finite_positive(f, "frequency factor");
    }
}

void ModelConfig::check_context(int64_t n_positions, const std::string& origin) const {
    const std::string asked = "max_input_len + max_output_len = " + std::to_string(n_positions);
    // transformers recomputes dynamic NTK's frequencies from the sequence length once it passes
    // max_position_embeddings, and keeps the keys it cached under the old ones: no fixed table equals that.
    if (rope_scaling.kind == RopeScaling::Kind::Dynamic && n_positions > n_ctx)
        throw Error(origin + ": rope_type 'dynamic' changes RoPE past max_position_embeddings " + std::to_string(n_ctx) +
                    ", and " + asked + " goes past it (lamina runs dynamic NTK only up to max_position_embeddings)");
    if (n_positions > n_ctx) throw Error(asked + " exceeds the model's context length " + std::to_string(n_ctx));
    if (sliding_window > 0 && n_positions > sliding_window)
        throw Error(origin + ": sliding_window " + std::to_string(sliding_window) + " is shorter than " + asked +
                    " (lamina runs full attention, the same math only while a sequence fits in the window; ask for at most " +
                    std::to_string(sliding_window) + " positions)");
}

std::vector<BlockDescription::Attention> uniform_attention_pattern(int64_t sliding_window) {
    return {sliding_window > 0 ? BlockDescription::Attention::Sliding : BlockDescription::Attention::Full};
}

namespace {

// transformers' _compute_yarn_parameters.find_correction_dim: the dimension whose wavelength turns
// `rotations` times over the original context, in double as Python computes it.
double yarn_correction_dim(double rotations, int64_t dim, double base, int64_t original_max_position) {
    return (static_cast<double>(dim) * std::log(static_cast<double>(original_max_position) / (rotations * 2.0 * std::numbers::pi))) /
           (2.0 * std::log(base));
}

}  // namespace

// Each branch follows its transformers function op by op in float32 (torch evaluates `x / tensor` as
// reciprocal(tensor) * x, and casts Python scalars to float32), so the frequencies agree to the last bit or two.
std::vector<float> rope_inv_freq(const ModelConfig& c) {
    const int64_t dim = c.head_dim, half = dim / 2;
    std::vector<float> pos_freq(half), inv(half);  // base^(2i / dim) and its reciprocal
    for (int64_t i = 0; i < half; ++i) {
        pos_freq[i] = std::pow(c.rope_theta, static_cast<float>(2 * i) / static_cast<float>(dim));
        inv[i] = 1.0f / pos_freq[i];
    }
    const RopeScaling& s = c.rope_scaling;
    switch (s.kind) {
        case RopeScaling::Kind::None:
        case RopeScaling::Kind::Dynamic:  // its base only grows past max_position_embeddings (check_context)
            break;
        case RopeScaling::Kind::Linear:
            for (auto& f : inv) f /= s.factor;
            break;
        case RopeScaling::Kind::Llama3: {
            // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
            const auto old_ctx = static_cast<double>(s.original_max_position);
            const auto low_freq_wavelen = static_cast<float>(old_ctx / s.low_freq_factor);
            const auto high_freq_wavelen = static_cast<float>(old_ctx / s.high_freq_factor);
            const auto band = static_cast<float>(static_cast<double>(s.high_freq_factor) - s.low_freq_factor);
            const auto two_pi = static_cast<float>(2.0 * std::numbers::pi);
            for (auto& f : inv) {
                const float wavelen = (1.0f / f) * two_pi;
                if (wavelen > low_freq_wavelen) {
                    f = f / s.factor;
                } else if (!(wavelen < high_freq_wavelen)) {
                    const float smooth = ((1.0f / wavelen) * static_cast<float>(old_ctx) - s.low_freq_factor) / band;
                    f = (1.0f - smooth) * f / s.factor + smooth * f;
                }
            }
            break;
        }
        case RopeScaling::Kind::Yarn: {
            // YaRN: frequencies that turn fewer than beta_slow times over the original context are interpolated
            // (divided by factor), those turning more than beta_fast times kept, a linear ramp between.
            double low = yarn_correction_dim(s.beta_fast, dim, c.rope_theta, s.original_max_position);
            double high = yarn_correction_dim(s.beta_slow, dim, c.rope_theta, s.original_max_position);
            if (s.truncate) {
                low = std::floor(low);
                high = std::ceil(high);
            }
            low = std::max(low, 0.0);
            high = std::min(high, static_cast<double>(dim - 1));
            if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
            const auto ramp_low = static_cast<float>(low), ramp_width = static_cast<float>(high - low);
            for (int64_t i = 0; i < half; ++i) {
                const float ramp = std::clamp((static_cast<float>(i) - ramp_low) / ramp_width, 0.0f, 1.0f);
                const float extrapolation = 1.0f - ramp;  // the share of the unscaled frequency
                const float interpolated = 1.0f / (s.factor * pos_freq[i]);
                inv[i] = interpolated * (1.0f - extrapolation) + inv[i] * extrapolation;
            }
            break;
        }
        case RopeScaling::Kind::FreqFactors:
            // llama.cpp's rope_freqs: theta_i = p * base^(-2i/d) / freq_factors[i].
            for (int64_t i = 0; i < half; ++i) inv[i] /= s.freq_factors[i];
            break;
    }
    return inv;
}

namespace {

constexpr std::pair<RopeScaling::Kind, const char*> kRopeKindNames[] = {
    {RopeScaling::Kind::None, "none"},       {RopeScaling::Kind::Linear, "linear"},
    {RopeScaling::Kind::Llama3, "llama3"},   {RopeScaling::Kind::Dynamic, "dynamic"},
    {RopeScaling::Kind::Yarn, "yarn"},       {RopeScaling::Kind::FreqFactors, "freq_factors"},
};

const char* rope_kind_name(RopeScaling::Kind k) {
    for (const auto& [kind, name] : kRopeKindNames)
        if (kind == k) return name;
    return "?";
}

std::optional<RopeScaling::Kind> rope_kind_from_name(const std::string& name) {
    for (const auto& [kind, n] : kRopeKindNames)
        if (name == n) return kind;
    return std::nullopt;
}

}  // namespace

void to_json(nlohmann::json& j, const ModelConfig& c) {
    // config.json stores the block description as attn_bias, mlp_bias, tied_embeddings and sliding_window; a
    // block that differs from LLaMA's in anything else needs keys of its own (and a format version) first.
    const BlockDescription& b = c.block;
    using B = BlockDescription;
    LAMINA_CHECK(b.norm == B::Norm::RmsNorm && !b.qk_norm && b.activation == B::Activation::Silu &&
                     b.position == B::Position::Rope && b.embedding_scale == 1.0f &&
                     b.attention_pattern == uniform_attention_pattern(c.sliding_window),
                 "the engine format cannot store this block description");
    j = nlohmann::json{{"arch", c.arch},           {"n_vocab", c.n_vocab},     {"n_embd", c.n_embd},
                       {"n_layer", c.n_layer},     {"n_head", c.n_head},       {"n_head_kv", c.n_head_kv},
                       {"head_dim", c.head_dim},   {"n_ff", c.n_ff},           {"n_ctx", c.n_ctx},
                       {"rope_theta", c.rope_theta}, {"rms_eps", c.rms_eps},
                       {"tied_embeddings", b.tied_embeddings}, {"attn_bias", b.attn_bias},
                       {"mlp_bias", b.mlp_bias},   {"sliding_window", c.sliding_window}};
    const RopeScaling& r = c.rope_scaling;
    j["rope_scaling"] = {{"type", rope_kind_name(r.kind)},
                         {"factor", r.factor},
                         {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor},
                         {"original_max_position", r.original_max_position},
                         {"beta_fast", r.beta_fast},
                         {"beta_slow", r.beta_slow},
                         {"truncate", r.truncate},
                         {"attention_factor", r.attention_factor},
                         {"freq_factors", r.freq_factors}};
}

// Engines written before yarn, dynamic, frequency factors and sliding windows lack those keys: their
// defaults are what such an engine ran. The block description is LLaMA's, with the stored biases, tied head
// and sliding window. Sizes are only read as JSON integers here; validate() bounds them.
ModelConfig model_config_from_json(const JsonFields& f) {
    ModelConfig c;
    c.arch = f.string("arch");
    c.n_vocab = f.integer("n_vocab");
    c.n_embd = f.integer("n_embd");
    c.n_layer = f.integer("n_layer");
    c.n_head = f.integer("n_head");
    c.n_head_kv = f.integer("n_head_kv");
    c.head_dim = f.integer("head_dim");
    c.n_ff = f.integer("n_ff");
    c.n_ctx = f.integer("n_ctx");
    c.rope_theta = static_cast<float>(f.number("rope_theta"));
    c.rms_eps = static_cast<float>(f.number("rms_eps"));
    c.sliding_window = f.integer_or("sliding_window", 0);
    c.block = BlockDescription{};
    c.block.tied_embeddings = f.boolean("tied_embeddings");
    c.block.attn_bias = f.boolean("attn_bias");
    c.block.mlp_bias = f.boolean("mlp_bias");
    c.block.attention_pattern = uniform_attention_pattern(c.sliding_window);
    const JsonFields r = f.object("rope_scaling");
    RopeScaling& s = c.rope_scaling;
    const std::string type = r.string("type");
    const auto kind = rope_kind_from_name(type);
    if (!kind) r.fail("type", "unknown rope scaling type (an engine from a newer lamina? rebuild it)");
    s.kind = *kind;
    s.factor = static_cast<float>(r.number("factor"));
    s.low_freq_factor = static_cast<float>(r.number("low_freq_factor"));
    s.high_freq_factor = static_cast<float>(r.number("high_freq_factor"));
    s.original_max_position = r.integer("original_max_position");
    s.beta_fast = static_cast<float>(r.number_or("beta_fast", 32.0));
    s.beta_slow = static_cast<float>(r.number_or("beta_slow", 1.0));
    s.truncate = r.boolean_or("truncate", true);
    s.attention_factor = static_cast<float>(r.number_or("attention_factor", 1.0));
    if (r.has("freq_factors")) {
        const nlohmann::json& factors = r.array("freq_factors");
        for (size_t i = 0; i < factors.size(); ++i) {
            const nlohmann::json& v = factors[i];
            if (!v.is_number() || !(std::fabs(v.get<double>()) <= std::numeric_limits<float>::max()))
                r.fail("freq_factors", "element " + std::to_string(i) + " is not a number within a 32-bit float's range");
            s.freq_factors.push_back(static_cast<float>(v.get<double>()));
        }
    }
    return c;
}

void from_json(const nlohmann::json& j, ModelConfig& c) { c = model_config_from_json(JsonFields(j, "engine config", "model.")); }

}  // namespace lamina
