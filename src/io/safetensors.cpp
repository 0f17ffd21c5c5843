#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "core/checked.h"
#include "core/error.h"
#include "core/json_fields.h"

namespace lamina {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;      // the format's own limit (the safetensors crate's MAX_HEADER_SIZE)
constexpr int64_t kMaxTensorDimension = int64_t{1} << 40;  // far past any weight's, and no overflow in a few products
constexpr size_t kMaxIndexBytes = size_t{64} << 20;    // model.safetensors.index.json: ~100 bytes per tensor

DType safetensors_dtype(const JsonFields& f) {
    const std::string s = f.string("dtype");
    if (s == "F32") return DType::F32;
    if (s == "F16") return DType::F16;
    if (s == "BF16") return DType::BF16;
    f.fail("dtype", "unsupported safetensors dtype (supported: F32, F16, BF16)");
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// A tensor's byte range in the data section, for the overlap check.
struct ByteRange {
    uint64_t begin, end;
    const std::string* name;
};

// A shard name of the index that stays inside the checkpoint directory: a plain file name.
bool is_plain_file_name(const std::string& s) {
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
    const std::string p = path.string();
    if (file_.size() < 8) throw Error(p + ": truncated safetensors file (no header length)");
    uint64_t header_len;
    std::memcpy(&header_len, file_.data(), 8);
    if (header_len > file_.size() - 8)
        throw Error(p + ": safetensors header length " + std::to_string(header_len) + " exceeds the file's " +
                    std::to_string(file_.size()) + " bytes (truncated?)");
    if (header_len > kMaxHeaderBytes)
        throw Error(p + ": safetensors header length " + std::to_string(header_len) + " exceeds the format's limit of " +
                    std::to_string(kMaxHeaderBytes) + " bytes");
    const uint64_t data_start = 8 + header_len;
    const uint64_t data_size = file_.size() - data_start;
    const nlohmann::json header = parse_json({reinterpret_cast<const char*>(file_.data()) + 8, header_len}, p);
    const JsonFields top(header, p);
    if (top.has("__metadata__")) {
        // Free-form strings to strings (the safetensors crate refuses anything else); lamina reads none of them.
        const JsonFields meta = top.object("__metadata__");
        for (const auto& [key, value] : meta.json().items())
            if (!value.is_string()) meta.fail(key, "expected a string (safetensors metadata maps strings to strings)");
    }
    std::vector<ByteRange> ranges;
    for (const auto& [name, info] : header.items()) {
        if (name == "__metadata__") continue;
        const JsonFields f(info, p, "tensor '" + printable(name) + "' ");
        SafetensorsTensor t;
        t.name = name;
        t.dtype = safetensors_dtype(f);
        t.shape = f.integers("shape", 0, kMaxTensorDimension);
        const std::string what = p + ": tensor '" + printable(name) + "'";
        const uint64_t n_bytes = checked_mul(static_cast<uint64_t>(checked_product(t.shape, (what + " element count").c_str())),
                                             uint64_t{dtype_size(t.dtype)}, (what + " bytes").c_str());
        const std::vector<int64_t> off = f.integers("data_offsets", 0, INT64_MAX);
        if (off.size() != 2) f.fail("data_offsets", "expected [begin, end]");
        const uint64_t begin = static_cast<uint64_t>(off[0]), end = static_cast<uint64_t>(off[1]);
        if (begin > end) f.fail("data_offsets", "begin is past end");
        if (end > data_size)
            f.fail("data_offsets", "lies outside the data section of " + std::to_string(data_size) + " bytes (truncated?)");
        if (end - begin != n_bytes)
            f.fail("data_offsets", "holds " + std::to_string(end - begin) + " bytes but its shape needs " + std::to_string(n_bytes) +
                                       " (" + shape_text(t.shape) + " of " + std::string(dtype_name(t.dtype)) + ")");
        t.data = {file_.data() + data_start + begin, end - begin};
        t.file = &file_.path();
        const auto [it, inserted] = tensors_.emplace(name, std::move(t));
        if (begin != end) ranges.push_back({begin, end, &it->first});
    }
    // Two tensors sharing bytes would alias each other's weights. Bytes that no tensor claims are refused too, as
    // the safetensors format (and its reference reader) does: a header length off by a few bytes still parses
    // (the header is space-padded) and would shift every tensor, leaving a gap at the end.
    std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
    uint64_t covered = 0;
    for (size_t i = 0; i < ranges.size(); ++i) {
        if (i > 0 && ranges[i].begin < ranges[i - 1].end)
            throw Error(p + ": tensors '" + printable(*ranges[i - 1].name) + "' (bytes " + std::to_string(ranges[i - 1].begin) +
                        " to " + std::to_string(ranges[i - 1].end) + ") and '" + printable(*ranges[i].name) + "' (bytes " +
                        std::to_string(ranges[i].begin) + " to " + std::to_string(ranges[i].end) + ") overlap");
        if (ranges[i].begin > covered) break;
        covered = ranges[i].end;
    }
    if (covered != data_size) {
        uint64_t gap_end = data_size;
        for (const auto& r : ranges)
            if (r.begin > covered) { gap_end = r.begin; break; }
        throw Error(p + ": bytes " + std::to_string(covered) + " to " + std::to_string(gap_end) + " of the " +
                    std::to_string(data_size) + "-byte data section belong to no tensor (a wrong header length, or a damaged "
                    "file: safetensors tensors cover the data section exactly)");
    }
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::filesystem::path& dir) {
    const auto index_path = dir / "model.safetensors.index.json";
    const std::string ip = index_path.string();
    std::vector<std::filesystem::path> shard_paths;
    std::map<std::string, std::string> assigned;  // tensor -> shard file name, from the index
    if (std::filesystem::exists(index_path)) {
        const nlohmann::json index = read_json_file(index_path, "safetensors index", kMaxIndexBytes);
        const JsonFields weight_map = JsonFields(index, ip).object("weight_map");
        if (weight_map.json().empty()) throw Error(ip + ": weight_map lists no tensors");
        std::set<std::string> shards;
        for (const auto& [tensor, shard] : weight_map.json().items()) {
            if (!shard.is_string()) weight_map.fail(tensor, "expected the file name of a shard");
            const std::string s = shard.get<std::string>();
            if (!is_plain_file_name(s))
                weight_map.fail(tensor, "is not a plain file name (a shard must lie in the checkpoint's directory)");
            assigned[tensor] = s;
            shards.insert(s);
        }
        for (const auto& s : shards) shard_paths.push_back(dir / s);
    } else if (std::filesystem::exists(dir / "model.safetensors")) {
        shard_paths.push_back(dir / "model.safetensors");
    } else {
        throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json");
    }
    for (const auto& sp : shard_paths) {
        files_.push_back(std::make_unique<SafetensorsFile>(sp));
        for (const auto& [name, t] : files_.back()->tensors()) {
            const auto [it, inserted] = index_.emplace(name, &t);
            if (!inserted)
                throw Error(sp.string() + ": tensor '" + printable(name) + "' is also in " + it->second->file->string() +
                            " (two shards hold it)");
        }
    }
    for (const auto& [tensor, shard] : assigned) {
        auto it = index_.find(tensor);
        if (it == index_.end() || it->second->file->filename() != shard)
            throw Error(ip + ": weight_map." + printable(tensor) + " = \"" + printable(shard) + "\": the shard " +
                        (it == index_.end() ? std::string("lacks the tensor") : "lacks the tensor, which is in " + it->second->file->string()));
    }
}

}  // namespace lamina
