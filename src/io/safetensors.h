// Safetensors reader: u64 header length, a JSON header {name: {dtype, shape, data_offsets}}, then the
// raw little-endian data. Also reads sharded checkpoints through model.safetensors.index.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mmap_file.h"

namespace lamina {

struct SafetensorsTensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::span<const uint8_t> data;
    const std::filesystem::path* file = nullptr;
};

class SafetensorsFile {
public:
    // Validates the header and every tensor's offsets; throws lamina::Error naming the file and tensor.
    explicit SafetensorsFile(const std::filesystem::path& path);
    const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
    const std::filesystem::path& path() const { return file_.path(); }

private:
    MappedFile file_;
    std::map<std::string, SafetensorsTensor> tensors_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards listed in
// model.safetensors.index.json (each shard checked to hold the tensors the index assigns it).
class SafetensorsCheckpoint {
public:
    explicit SafetensorsCheckpoint(const std::filesystem::path& dir);
    const std::map<std::string, const SafetensorsTensor*>& tensors() const { return index_; }

private:
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::map<std::string, const SafetensorsTensor*> index_;
};

}  // namespace lamina
