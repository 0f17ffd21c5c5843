#include "io/safetensors.h"

#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"

namespace lamina {

namespace {
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit is 100 MB

DType safetensors_dtype(const std::string& s, const std::string& where) {
    if (s == "F32") return DType::F32;
    if (s == "F16") return DType::F16;
    if (s == "BF16") return DType::BF16;
    throw Error(where + ": unsupported safetensors dtype " + s + " (supported: F32, F16, BF16)");
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
    const std::string p = path.string();
    if (file_.size() < 8) throw Error(p + ": truncated safetensors file (no header length)");
    uint64_t header_len;
    std::memcpy(&header_len, file_.data(), 8);
    if (header_len > kMaxHeaderBytes || header_len > file_.size() - 8)
        throw Error(p + ": safetensors header length " + std::to_string(header_len) + " exceeds the file");
    const uint64_t data_start = 8 + header_len;
    const uint64_t data_size = file_.size() - data_start;
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(file_.data() + 8, file_.data() + data_start);
    } catch (const nlohmann::json::exception& e) {
        throw Error(p + ": safetensors header is not valid JSON: " + e.what());
    }
    if (!header.is_object()) throw Error(p + ": safetensors header is not a JSON object");
    for (const auto& [name, info] : header.items()) {
        if (name == "__metadata__") continue;
        const std::string where = p + ": tensor '" + name + "'";
        try {
            SafetensorsTensor t;
            t.name = name;
            t.dtype = safetensors_dtype(info.at("dtype").get<std::string>(), where);
            for (const auto& d : info.at("shape")) {
                const int64_t v = d.get<int64_t>();
                if (v < 0 || v > (int64_t{1} << 40)) throw Error(where + ": bad dimension " + std::to_string(v));
                t.shape.push_back(v);
            }
            const uint64_t n_bytes = checked_mul(static_cast<uint64_t>(checked_product(t.shape, (where + " element count").c_str())),
                                                 uint64_t{dtype_size(t.dtype)}, (where + " bytes").c_str());
            const auto& off = info.at("data_offsets");
            const uint64_t begin = off.at(0).get<uint64_t>(), end = off.at(1).get<uint64_t>();
            if (begin > end || end > data_size)
                throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") lie outside the data section of " + std::to_string(data_size) + " bytes (truncated?)");
            if (end - begin != n_bytes)
                throw Error(where + ": holds " + std::to_string(end - begin) + " bytes but its shape needs " +
                            std::to_string(n_bytes));
            t.data = {file_.data() + data_start + begin, end - begin};
            t.file = &file_.path();
            tensors_.emplace(name, std::move(t));
        } catch (const nlohmann::json::exception& e) {
            throw Error(where + ": malformed header entry: " + e.what());
        }
    }
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::filesystem::path& dir) {
    const auto index_path = dir / "model.safetensors.index.json";
    std::vector<std::filesystem::path> shard_paths;
    std::map<std::string, std::string> assigned;  // tensor -> shard file name, from the index
    if (std::filesystem::exists(index_path)) {
        const std::string text = read_regular_file(index_path, "safetensors index");
        nlohmann::json index;
        try {
            index = nlohmann::json::parse(text);
            std::set<std::string> shards;
            for (const auto& [tensor, shard] : index.at("weight_map").items()) {
                assigned[tensor] = shard.get<std::string>();
                shards.insert(shard.get<std::string>());
            }
            for (const auto& s : shards) {
                if (s.find('/') != std::string::npos || s.find("..") != std::string::npos)
                    throw Error(index_path.string() + ": shard name '" + s + "' is not a plain file name");
                shard_paths.push_back(dir / s);
            }
        } catch (const nlohmann::json::exception& e) {
            throw Error(index_path.string() + ": malformed index: " + e.what());
        }
    } else if (std::filesystem::exists(dir / "model.safetensors")) {
        shard_paths.push_back(dir / "model.safetensors");
    } else {
        throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json");
    }
    for (const auto& sp : shard_paths) {
        files_.push_back(std::make_unique<SafetensorsFile>(sp));
        for (const auto& [name, t] : files_.back()->tensors()) {
            if (index_.count(name)) throw Error(sp.string() + ": tensor '" + name + "' appears in two shards");
            index_[name] = &t;
        }
    }
    for (const auto& [tensor, shard] : assigned) {
        auto it = index_.find(tensor);
        if (it == index_.end() || it->second->file->filename() != shard)
            throw Error(index_path.string() + ": tensor '" + tensor + "' is not in its shard " + shard);
    }
}

}  // namespace lamina
