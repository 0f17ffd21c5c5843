// One file per command; each registers its subcommand and returns the handler to run when chosen.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace lamina::cli {

using Handler = std::function<int()>;

Handler add_build(CLI::App& app);
Handler add_run(CLI::App& app);
Handler add_tokenize(CLI::App& app);
Handler add_bench(CLI::App& app);
Handler add_logits(CLI::App& app);
Handler add_rouge(CLI::App& app);
Handler add_summarize(CLI::App& app);
Handler add_perplexity(CLI::App& app);

}  // namespace lamina::cli
