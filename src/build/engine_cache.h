// Engines built on the fly and kept: `run --model_dir M` (and summarize, bench, logits) build M's engine
// once into a cache directory and open it on later calls instead of writing a new one each time.
//
// An entry is <cache_dir>/<source name>-<key>/, an ordinary engine directory. The key hashes what the
// weights depend on: the source's canonical path and, for each of its files (the .gguf, or every regular
// file of a Hugging Face directory), name, size and modification time; the engine dtype, rmsnorm_plugin
// and tp_size; the engine format and lamina's version. Limits are not in the key: the weights do not
// depend on them, and each run opens the entry with its own (Engine::set_limits).
//
// A build goes to a private temporary directory (mkdtemp: a random name, mode 0700; removed on error
// and on SIGINT/SIGTERM) renamed into place when complete, so concurrent runs and interrupted builds
// never leave a half-written entry. The cache keeps the kMaxEntries most recently used entries and
// removes older ones after adding a new one.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "build/engine_writer.h"

namespace lamina {

struct EngineCache {
    static constexpr size_t kMaxEntries = 4;

    std::filesystem::path dir;

    // $XDG_CACHE_HOME/lamina/engines, else $HOME/.cache/lamina/engines; empty when neither is set.
    static std::filesystem::path default_dir();

    // The entry's directory for this source and options (it may not exist yet).
    std::filesystem::path entry(const std::filesystem::path& source, const BuildOptions& opts) const;

    // The engine directory of `source` built with `opts`: the cached one, or a new one built now (with
    // `progress`). `built` (optional) says which.
    std::filesystem::path get_or_build(const std::filesystem::path& source, const BuildOptions& opts,
                                       const BuildProgressFn& progress = {}, bool* built = nullptr) const;
};

}  // namespace lamina
