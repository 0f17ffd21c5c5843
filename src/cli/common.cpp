#include "cli/common.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstdio>
#include <fstream>
#include <random>

#include "build/engine_cache.h"
#include "build/engine_format.h"
#include "cli/progress.h"
#include "core/error.h"
#include "io/gguf.h"
#include "model/model_spec.h"
#include "tokenizer/unicode.h"

#ifdef LAMINA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace lamina::cli {

std::string default_weights(const std::string& model_dir) {
    std::error_code ec;
    return !model_dir.empty() && std::filesystem::is_regular_file(model_dir, ec) ? "keep" : "float";
}

namespace {
// Largest model (parameters) that --dtype auto builds in float32 for the CPU; above it float16 halves
// the memory (a 7B model is 27 GB in float32).
constexpr double kMaxF32Params = 3e9;

DType auto_dtype(const std::string& device, const ModelSpec& spec) {
    if (device == "cuda") return DType::F16;
    double params = 0;
    for (const auto& [name, w] : spec.weights) params += static_cast<double>(w.n_elements());
    return params <= kMaxF32Params ? DType::F32 : DType::F16;
}

// --max_input_len / --max_output_len for a checkpoint run: the flags, else what the command needs, and
// the rest of the model's context (at most kDefaultMaxContext) for the other.
EngineLimits limits_for(const ModelArgs& a, const Needs& needs, const ModelConfig& config) {
    const int64_t n_ctx = config.max_exact_context();
    const int64_t ctx = std::min(n_ctx, kDefaultMaxContext);
    EngineLimits l;
    l.max_batch_size = a.max_batch_size > 0 ? a.max_batch_size : std::max<int64_t>(needs.batch, 1);
    l.max_output_len = a.max_output_len > 0 ? a.max_output_len : needs.output_len > 0 ? needs.output_len : ctx / 2;
    if (a.max_input_len > 0) {
        l.max_input_len = a.max_input_len;
    } else {
        l.max_input_len = needs.input_len > 0 ? needs.input_len : ctx - l.max_output_len;
        if (l.max_input_len < 1)
            throw Error(std::to_string(l.max_output_len) + " new tokens leave no room for a prompt in the model's " +
                        std::to_string(n_ctx) + "-token context (lower --max_output_len)");
    }
    return l;
}
}  // namespace

std::string resolve_device(const std::string& device) {
    if (device == "cpu") return "cpu";
#ifdef LAMINA_HAS_CUDA
    if (device == "cuda") return "cuda";
    if (device == "auto") return cuda_device_count() > 0 ? "cuda" : "cpu";
#else
    if (device == "cuda") throw Error("--device cuda: this lamina was built without CUDA (configure with -DLAMINA_CUDA=ON)");
    if (device == "auto") return "cpu";
#endif
    throw Error("--device '" + device + "' is not one of cpu, cuda, auto");
}

std::unique_ptr<Backend> make_backend(const ModelArgs& a, const OpenedEngine& opened) {
#ifdef LAMINA_HAS_CUDA
    if (opened.device == "cuda") return make_cuda_backend(opened.engine->dtype());
#endif
    // Quantized weights move few bytes a step, so the KV cache's share counts: half of it in float16, as llama.cpp
    // keeps it. Float engines keep float32 K and V, which the CPU's parity with transformers rests on.
    return make_cpu_backend(a.threads, opened.engine->has_block_weights() ? DType::F16 : DType::F32);
}

OpenedEngine::~OpenedEngine() {
    engine.reset();  // unmapped before its files are removed
    temp_dir.reset();
}

namespace {
// A value echoed in an error: a 300-digit number is cut to its first characters and its length.
std::string shown(const std::string& text) {
    constexpr size_t kShown = 24;
    if (text.size() <= kShown) return "'" + text + "'";
    return "'" + text.substr(0, kShown) + "...' (" + std::to_string(text.size()) + " characters)";
}

// The decimal integer `text` (an optional '-', then digits), as sign and magnitude; false for anything
// else, and for a magnitude past 2^64-1.
bool parse_decimal(const std::string& text, bool& negative, uint64_t& magnitude) {
    negative = !text.empty() && text[0] == '-';
    const char* first = text.data() + (negative ? 1 : 0);
    const char* last = text.data() + text.size();
    if (first == last || *first < '0' || *first > '9') return false;
    const auto [end, ec] = std::from_chars(first, last, magnitude);
    return ec == std::errc{} && end == last;
}

bool all_digits(std::string_view s, size_t from) {
    return from < s.size() && std::all_of(s.begin() + static_cast<std::ptrdiff_t>(from), s.end(),
                                          [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Binary multipliers of --kv_cache_bytes, by lower-case suffix (as CLI11's AsSizeValue(false) had them).
constexpr std::pair<std::string_view, int> kSizeSuffixes[] = {
    {"", 0},    {"b", 0},    {"k", 10},  {"kb", 10}, {"kib", 10}, {"m", 20},  {"mb", 20},
    {"mib", 20}, {"g", 30},  {"gb", 30}, {"gib", 30}, {"t", 40},  {"tb", 40}, {"tib", 40}};
// The largest budget: a byte count that still fits the signed sizes the KV planner computes with.
constexpr uint64_t kMaxKvCacheBytes = static_cast<uint64_t>(INT64_MAX);
}  // namespace

CLI::Validator integer_in(int64_t lo, uint64_t hi) {
    const std::string range = std::to_string(lo) + " to " + std::to_string(hi);
    return CLI::Validator(
        [lo, hi, range](std::string& text) -> std::string {
            bool negative = false;
            uint64_t magnitude = 0;
            if (!parse_decimal(text, negative, magnitude)) {
                // Digits that overflow 64 bits are a number out of range, not a malformed one.
                if (all_digits(text, !text.empty() && text[0] == '-' ? 1 : 0))
                    return shown(text) + " is out of range " + range;
                return shown(text) + " is not an integer";
            }
            // -m < lo: for lo >= 0 any m > 0; else m > |lo| (written so that lo = INT64_MIN does not overflow).
            const bool below = negative && magnitude != 0
                                   ? (lo >= 0 || magnitude > static_cast<uint64_t>(-(lo + 1)) + 1)
                                   : (lo > 0 && magnitude < static_cast<uint64_t>(lo));
            if (below || (!negative && magnitude > hi)) return shown(text) + " is out of range " + range;
            text = negative && magnitude != 0 ? "-" + std::to_string(magnitude) : std::to_string(magnitude);
            return {};
        },
        "INT in " + range, "INTEGER_IN");
}

void add_kv_cache_option(CLI::App* cmd, uint64_t& bytes) {
    // Parsed here rather than by CLI::AsSizeValue, which wraps "-1" to 2^64-1 and saturates past it.
    const CLI::Validator byte_count(
        [](std::string& text) -> std::string {
            const std::string hint = " is not a byte count (an integer with an optional K, M, G or T suffix: 512M, 4GiB)";
            const size_t digits_end = std::min(text.find_first_not_of("0123456789"), text.size());
            if (!text.empty() && text[0] == '-') return shown(text) + " is negative";
            if (digits_end == 0) return shown(text) + hint;
            std::string suffix = text.substr(digits_end);
            suffix.erase(0, std::min(suffix.find_first_not_of(' '), suffix.size()));
            std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](char ch) { return static_cast<char>(std::tolower(ch)); });
            const auto* unit = std::find_if(std::begin(kSizeSuffixes), std::end(kSizeSuffixes),
                                            [&](const auto& u) { return u.first == suffix; });
            if (unit == std::end(kSizeSuffixes)) return shown(text) + hint;
            uint64_t n = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + digits_end, n);
            const uint64_t limit = kMaxKvCacheBytes >> unit->second;
            if (ec != std::errc{} || n > limit)
                return shown(text) + " is out of range 0 to " + std::to_string(kMaxKvCacheBytes) + " bytes";
            text = std::to_string(n << unit->second);
            return {};
        },
        "SIZE [b, kb(=1024b), ...]", "BYTE_COUNT");
    cmd->add_option("--kv_cache_bytes", bytes,
                    "KV cache budget in bytes (suffixes K/M/G, binary; per rank with tensor parallelism); shortens "
                    "each sequence's context to fit. 0: max_batch_size x (max_input_len + max_output_len) positions")
        ->transform(byte_count);
}

void add_model_options(CLI::App* cmd, ModelArgs& a, bool with_max_output_len) {
    cmd->add_option("--engine_dir", a.engine_dir, "Engine directory from `lamina build`");
    cmd->add_option("--model_dir", a.model_dir,
                    "Or a .gguf file / Hugging Face directory: its engine is built once into the cache and reused");
    cmd->add_option("--dtype", a.dtype,
                    "Engine dtype when building from --model_dir (auto: float16 on CUDA; float32 on the CPU up to 3B "
                    "parameters, float16 above)")
        ->check(CLI::IsMember({"auto", "float32", "float16", "bfloat16"}));
    cmd->add_option("--max_batch_size", a.max_batch_size,
                    "Sequences at once, with --model_dir (0: what the command needs)")
        ->transform(integer_in(0, kMaxFlagBatch));
    cmd->add_option("--max_input_len", a.max_input_len,
                    "Longest prompt, with --model_dir (0: the model's context, at most " +
                        std::to_string(kDefaultMaxContext) + ", less the output)")
        ->transform(integer_in(0, kMaxFlagTokens));
    if (with_max_output_len)
        cmd->add_option("--max_output_len", a.max_output_len,
                        "Most new tokens, with --model_dir (0: what the command needs)")
            ->transform(integer_in(0, kMaxFlagTokens));
    cmd->add_option("--cache_dir", a.cache_dir,
                    "Where engines built from --model_dir are kept (default $XDG_CACHE_HOME/lamina/engines or "
                    "~/.cache/lamina/engines)");
    cmd->add_option("--device", a.device, "cpu, cuda or auto (CUDA when built with it and a GPU is present)")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    cmd->add_option("--threads", a.threads, "CPU threads (0: the machine's physical cores)")
        ->transform(integer_in(0, 1024));
    add_kv_cache_option(cmd, a.kv_cache_bytes);
    cmd->add_flag("--verbose", a.verbose, "Say more on stderr: the engine used, the sampling seed");
}

OpenedEngine open_engine(const ModelArgs& a, const Needs& needs) {
    OpenedEngine e;
    if (!a.engine_dir.empty() && !a.model_dir.empty()) throw Error("give --engine_dir or --model_dir, not both");
    e.device = resolve_device(a.device);
    if (!a.engine_dir.empty()) {
        if (a.max_batch_size > 0 || a.max_input_len > 0 || a.max_output_len > 0 || a.dtype != "auto")
            throw Error("--max_batch_size, --max_input_len, --max_output_len and --dtype apply to --model_dir; an "
                        "--engine_dir keeps what it was built with (rebuild it to change them)");
        e.engine = std::make_unique<Engine>(a.engine_dir);
        return e;
    }
    if (a.model_dir.empty())
        throw Error("give --model_dir (a .gguf file or Hugging Face directory) or --engine_dir (from `lamina build`)");

    const ModelSpec spec = load_model_spec(a.model_dir);  // metadata only: weights are read when built
    BuildOptions build;
    build.dtype = a.dtype == "auto" ? auto_dtype(e.device, spec) : dtype_from_name(a.dtype);
    // The CPU computes on a GGUF's blocks as they are; the CUDA backend takes float weights.
    if (a.dtype == "auto" && e.device == "cpu") set_weights_mode(build, default_weights(a.model_dir));
    build.threads = a.threads;
    EngineCache cache{a.cache_dir.empty() ? EngineCache::default_dir() : std::filesystem::path(a.cache_dir)};
    if (cache.dir.empty()) {  // no home for a cache: a private temporary one, removed afterwards
        e.temp_dir = std::make_unique<PrivateTempDir>(std::filesystem::temp_directory_path(), "lamina-engine-");
        cache.dir = e.temp_dir->path();
    }
    BuildProgressPrinter printer("building engine");
    bool built = false;
    const std::filesystem::path dir = cache.get_or_build(a.model_dir, build, printer.fn(), &built);
    if (a.verbose) std::fprintf(stderr, "lamina: %s engine %s\n", built ? "built" : "cached", dir.string().c_str());
    e.engine = std::make_unique<Engine>(dir);
    fit_limits(a, e, needs);
    return e;
}

void fit_limits(const ModelArgs& a, OpenedEngine& opened, const Needs& needs) {
    if (a.engine_dir.empty()) opened.engine->set_limits(limits_for(a, needs, opened.engine->config()));
}

void add_sampling_options(CLI::App* cmd, SamplingArgs& s, const std::string& seed_flag) {
    s.temperature_opt = cmd->add_option("--temperature", s.temperature,
                                        "Sampling temperature; 0 is greedy. Given alone (> 0), samples with top-k off");
    s.top_k_opt = cmd->add_option("--top_k", s.top_k,
                                  "Sample from the k likeliest tokens; 1 is greedy, 0 no limit (default: 1, or 0 "
                                  "when --temperature or --top_p asks for sampling)")
                      ->transform(integer_in(0, INT32_MAX));
    s.top_p_opt = cmd->add_option("--top_p", s.top_p, "Nucleus sampling: the smallest set of tokens with this much mass");
    s.seed_opt = cmd->add_option(seed_flag, s.seed, "Sampler seed (default: a fresh one each run, reported)")
                     ->transform(integer_in(0, UINT64_MAX));
    cmd->add_option("--repetition_penalty", s.repetition_penalty, "Hugging Face repetition penalty (1: off)");
}

SamplingParams resolve_sampling(const SamplingArgs& s) {
    SamplingParams p;
    p.temperature = s.temperature;
    p.top_p = s.top_p;
    p.repetition_penalty = s.repetition_penalty;
    p.top_k = s.top_k;
    const bool asks_sampling = (s.temperature_opt->count() > 0 && s.temperature > 0.0f) ||
                               (s.top_p_opt->count() > 0 && s.top_p < 1.0f);
    if (s.top_k_opt->count() == 0) p.top_k = asks_sampling ? 0 : 1;
    p.seed = s.seed_opt->count() > 0 ? s.seed : std::random_device{}();
    p.validate();
    return p;
}

void write_json_file(const std::string& path, const nlohmann::json& j, const std::string& flag, int indent) {
    std::ofstream out(path, std::ios::trunc);
    out << j.dump(indent) << "\n";
    if (!out) throw Error(flag + " " + path + ": cannot write");
}

Tokenizer load_tokenizer(const std::filesystem::path& path) {
    if (std::filesystem::is_directory(path)) {
        if (std::filesystem::exists(path / engine_format::kConfigFile) &&
            std::filesystem::exists(path / engine_format::kTokenizerFile))
            return Tokenizer(load_vocab(path / engine_format::kTokenizerFile));
        return Tokenizer(vocab_from_hf_dir(path));
    }
    if (!std::filesystem::exists(path)) throw Error(path.string() + ": no such file or directory");
    GgufFile gguf(path);
    return Tokenizer(vocab_from_gguf(gguf));
}

std::string read_text_file(const std::string& path, const std::string& flag) {
    std::string text = read_regular_file(path, flag);
    if (const size_t bad = utf8_first_invalid(text); bad != kUtf8Valid)
        throw Error(flag + " " + path + ": not valid UTF-8 at byte " + std::to_string(bad));
    return text;
}

std::filesystem::path find_shipped_file(const std::string& relative_path, const std::string& hint) {
    if (std::filesystem::exists(relative_path)) return relative_path;
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    for (auto dir = exe.parent_path(); !ec && !dir.empty() && dir != dir.root_path(); dir = dir.parent_path())
        if (std::filesystem::exists(dir / relative_path)) return dir / relative_path;
    throw Error(relative_path + " not found: run from the repository root or " + hint);
}

}  // namespace lamina::cli
