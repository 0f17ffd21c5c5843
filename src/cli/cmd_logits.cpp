// lamina logits: the numbers behind a parity check against another implementation. Reads prompt ids,
// writes the logits at the last prompt position and the greedy continuation as JSON.
#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/file_util.h"
#include "runtime/generator.h"

namespace lamina::cli {

namespace {
struct LogitsArgs {
    ModelArgs model;
    std::string input_ids, output;
    int64_t greedy = 0;
};

std::vector<int32_t> read_ids(const std::string& path) {
    std::istringstream in(read_regular_file(path, "--input_ids"));
    std::vector<int32_t> ids;
    std::string word;
    while (in >> word) {
        try {
            size_t used = 0;
            const long v = std::stol(word, &used);
            if (used != word.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(word);
            ids.push_back(static_cast<int32_t>(v));
        } catch (const std::exception&) {
            throw Error(path + ": '" + word + "' is not a token id");
        }
    }
    if (ids.empty()) throw Error(path + ": no token ids");
    return ids;
}
}  // namespace

Handler add_logits(CLI::App& app) {
    auto a = std::make_shared<LogitsArgs>();
    CLI::App* cmd = app.add_subcommand("logits", "Write last-position logits and a greedy continuation as JSON");
    add_model_options(cmd, a->model);
    cmd->add_option("--input_ids", a->input_ids, "File of whitespace-separated prompt token ids")->required();
    cmd->add_option("--output", a->output, "JSON file to write")->required();
    cmd->add_option("--greedy", a->greedy, "Also generate this many greedy tokens")->transform(integer_in(0, kMaxFlagTokens));
    return [a] {
        const std::vector<int32_t> ids = read_ids(a->input_ids);
        OpenedEngine opened = open_engine(a->model, {1, static_cast<int64_t>(ids.size()), std::max<int64_t>(a->greedy, 1)});
        const Engine& engine = *opened.engine;
        auto backend = make_backend(a->model, opened);
        Generator gen(engine, *backend, 1, a->model.kv_cache_bytes);
        const int64_t n_vocab = engine.config().n_vocab;
        const std::vector<float> all = gen.prompt_logits(ids);
        nlohmann::json j;
        j["device"] = backend->name();
        j["dtype"] = dtype_name(engine.dtype());
        j["last_logits"] = std::vector<float>(all.end() - n_vocab, all.end());
        if (a->greedy > 0) {
            GenerationParams p;
            p.max_new_tokens = a->greedy;
            p.sampling.temperature = 0.0f;
            j["greedy_ids"] = gen.generate({ids}, p)[0];
        }
        write_json_file(a->output, j, "--output", -1);
        return 0;
    };
}

}  // namespace lamina::cli
