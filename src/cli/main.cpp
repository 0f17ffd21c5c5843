// lamina: build engines from LLaMA checkpoints and run them. Every command's bad input ends here as
// one line on stderr: exit code 2 for a bad command line (with a hint, and a "did you mean" for a
// misspelled flag), 1 for anything else that is wrong (a file, a value, a request).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"

namespace {

constexpr int kUsageExit = 2;

// Levenshtein distance, for suggesting the flag a typo meant.
size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// The command's flag nearest to `arg` (its part before any '='), if one is near enough to be a typo.
std::string suggestion(const CLI::App* cmd, const std::string& arg) {
    const std::string word = arg.substr(0, arg.find('='));
    std::string best;
    size_t best_d = std::max<size_t>(3, word.size() / 3) + 1;
    for (const CLI::Option* opt : cmd->get_options()) {
        for (const std::string& name : opt->get_lnames()) {
            const size_t d = edit_distance(word, "--" + name);
            if (d < best_d) {
                best_d = d;
                best = "--" + name;
            }
        }
    }
    return best;
}

int usage_error(const std::string& what, const CLI::App* cmd) {
    const std::string name = cmd != nullptr && cmd->get_parent() != nullptr ? "lamina " + cmd->get_name() : "lamina";
    std::fprintf(stderr, "lamina: error: %s (see '%s --help')\n", what.c_str(), name.c_str());
    return kUsageExit;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"lamina " LAMINA_VERSION ": a LLaMA-family inference engine (CPU and CUDA)", "lamina"};
    app.set_version_flag("--version", "lamina " LAMINA_VERSION);
    app.require_subcommand(0, 1);
    app.allow_extras();  // an unknown command is reported below, with a suggestion
    app.option_defaults()->always_capture_default();  // every --help shows each flag's default
    app.footer("Run 'lamina COMMAND --help' for a command's flags. Documentation: README.md and docs/.");
    std::vector<std::pair<CLI::App*, lamina::cli::Handler>> commands;
    for (auto add : {lamina::cli::add_build, lamina::cli::add_run, lamina::cli::add_summarize, lamina::cli::add_bench,
                     lamina::cli::add_perplexity, lamina::cli::add_logits, lamina::cli::add_tokenize,
                     lamina::cli::add_rouge}) {
        const size_t before = app.get_subcommands({}).size();
        lamina::cli::Handler h = add(app);
        CLI::App* sub = app.get_subcommands({})[before];
        sub->allow_extras();  // unknown arguments are reported below, with a suggestion
        commands.emplace_back(sub, std::move(h));
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);  // --help, --version
    } catch (const CLI::ParseError& e) {
        const CLI::App* failed = nullptr;
        for (auto& [sub, handler] : commands)
            if (sub->parsed()) failed = sub;
        return usage_error(e.what(), failed);
    }
    try {
        for (auto& [sub, handler] : commands) {
            if (!sub->parsed()) continue;
            const std::vector<std::string> extra = sub->remaining();
            if (!extra.empty()) {
                std::string what = "unknown argument '" + extra.front() + "'";
                if (const std::string s = suggestion(sub, extra.front()); !s.empty()) what += "; did you mean " + s + "?";
                return usage_error(what, sub);
            }
            return handler();
        }
    } catch (const lamina::Error& e) {
        std::fprintf(stderr, "lamina: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "lamina: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lamina: error: %s\n", e.what());
        return 1;
    }
    if (!app.remaining().empty()) {
        const std::string word = app.remaining().front();
        std::string what = "unknown command '" + word + "'", best;
        size_t best_d = 3;
        for (auto& [sub, handler] : commands)
            if (const size_t d = edit_distance(word, sub->get_name()); d < best_d) {
                best_d = d;
                best = sub->get_name();
            }
        if (!best.empty()) what += "; did you mean '" + best + "'?";
        return usage_error(what, nullptr);
    }
    std::fputs(app.help().c_str(), stdout);  // no command: the usage
    return 0;
}
