#include "build/engine_cache.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "build/engine_format.h"
#include "core/error.h"
#include "core/file_util.h"
#include "model/model_spec.h"

namespace lamina {

namespace fs = std::filesystem;

namespace {

// FNV-1a, 64 bits: a stable hash of the key text (not for security: the cache is the user's own).
uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

void describe_file(const fs::path& p, std::string& key) {
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    if (ec) throw Error(p.string() + ": cannot read (" + ec.message() + ")");
    const auto mtime = fs::last_write_time(p, ec).time_since_epoch().count();
    key += p.filename().string() + "\t" + std::to_string(size) + "\t" + std::to_string(mtime) + "\n";
}

std::string key_text(const fs::path& source, const BuildOptions& opts) {
    std::error_code ec;
    const fs::path canonical = fs::canonical(source, ec);
    if (ec) throw Error(source.string() + ": no such file or directory");
    std::string key = "lamina " LAMINA_VERSION " engine format " + std::to_string(engine_format::kFormatVersion) +
                      " revision " + std::to_string(engine_format::kWriterRevision) + "\nsource " + canonical.string() + "\n";
    if (fs::is_directory(canonical)) {
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(canonical))
            if (e.is_regular_file()) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) describe_file(f, key);
    } else {
        describe_file(canonical, key);
    }
    key += "dtype " + std::string(dtype_name(opts.dtype)) + "\nweights " + weights_mode_name(opts) + "\nrmsnorm_plugin " +
           std::to_string(opts.rmsnorm_plugin) + "\ntp_size " + std::to_string(opts.tp_size) + "\n";
    return key;
}

// Marks an entry used now: the modification time of its directory orders the entries for eviction.
void touch(const fs::path& dir) {
    std::error_code ec;
    fs::last_write_time(dir, fs::file_time_type::clock::now(), ec);
}

// Removes all but the kMaxEntries most recently used entries (and temporary directories of builds that
// died more than a day ago).
void evict(const fs::path& cache_dir, size_t keep) {
    std::error_code ec;
    std::vector<std::pair<fs::file_time_type, fs::path>> entries;
    const auto day_ago = fs::file_time_type::clock::now() - std::chrono::hours(24);
    for (const auto& e : fs::directory_iterator(cache_dir, ec)) {
        if (!e.is_directory()) continue;
        const auto t = fs::last_write_time(e.path(), ec);
        if (e.path().filename().string().starts_with(".tmp-")) {
            if (t < day_ago) fs::remove_all(e.path(), ec);
            continue;
        }
        if (fs::exists(e.path() / engine_format::kConfigFile)) entries.emplace_back(t, e.path());
    }
    if (entries.size() <= keep) return;
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t i = keep; i < entries.size(); ++i) fs::remove_all(entries[i].second, ec);
}

}  // namespace

fs::path EngineCache::default_dir() {
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0')
        return fs::path(xdg) / "lamina" / "engines";
    if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
        return fs::path(home) / ".cache" / "lamina" / "engines";
    return {};
}

fs::path EngineCache::entry(const fs::path& source, const BuildOptions& opts) const {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a(key_text(source, opts))));
    std::string name = fs::path(source).lexically_normal().filename().string();
    if (name.empty() || name == "." || name == "..") name = fs::canonical(source).filename().string();
    const std::string format = opts.weights == WeightsMode::Float ? std::string(dtype_name(opts.dtype)) : weights_mode_name(opts);
    return dir / (name + "-" + format + "-" + hex);
}

fs::path EngineCache::get_or_build(const fs::path& source, const BuildOptions& opts, const BuildProgressFn& progress,
                                   bool* built) const {
    if (built != nullptr) *built = false;
    const fs::path target = entry(source, opts);
    if (fs::exists(target / engine_format::kConfigFile)) {
        touch(target);
        return target;
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(dir.string() + ": cannot create the engine cache (" + ec.message() + "); pass --cache_dir");
    // Random name, mode 0700 (mkdtemp), removed on error and on SIGINT/SIGTERM: nothing is written
    // through a name another process could have planted.
    PrivateTempDir building(dir, ".tmp-" + target.filename().string() + "-");
    const fs::path tmp = building.path();
    {
        ModelSpec spec = load_model_spec(source);
        BuildOptions o = opts;
        // The stored limits are placeholders (every run sets its own): the exact context, one sequence.
        const int64_t ctx = spec.config.max_exact_context();
        o.max_batch_size = 1;
        o.max_input_len = std::max<int64_t>(1, ctx / 2);
        o.max_output_len = std::max<int64_t>(1, ctx - o.max_input_len);
        build_engine(spec, o, tmp, progress);
    }
    fs::rename(tmp, target, ec);
    if (ec) {  // another process finished the same entry first: use it (ours goes with `building`)
        if (!fs::exists(target / engine_format::kConfigFile))
            throw Error(target.string() + ": cannot create the cached engine");
        touch(target);
        return target;
    }
    building.release();  // it is the entry now
    if (built != nullptr) *built = true;
    evict(dir, kMaxEntries);
    return target;
}

}  // namespace lamina
