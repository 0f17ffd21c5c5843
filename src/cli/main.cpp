// lamina: build engines from LLaMA checkpoints and run them. Every command's bad input ends here as
// one line on stderr and exit code 1 (2 for a bad command line).
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
    CLI::App app{"lamina: a LLaMA-family inference engine (CPU and CUDA)"};
    app.require_subcommand(1);
    app.failure_message([](const CLI::App*, const CLI::Error& e) { return std::string("lamina: ") + e.what() + "\n"; });
    std::vector<std::pair<CLI::App*, lamina::cli::Handler>> commands;
    for (auto add : {lamina::cli::add_build, lamina::cli::add_run, lamina::cli::add_tokenize, lamina::cli::add_bench,
                     lamina::cli::add_rouge, lamina::cli::add_summarize, lamina::cli::add_logits}) {
        const size_t before = app.get_subcommands({}).size();
        lamina::cli::Handler h = add(app);
        commands.emplace_back(app.get_subcommands({})[before], std::move(h));
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        for (auto& [sub, handler] : commands)
            if (sub->parsed()) return handler();
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
    return 0;
}
