// Opening the user's files safely. Every input (model, tokenizer, config, prompt and dataset files) is
// opened with O_NONBLOCK and fstat-checked to be a regular file before a byte is read: a FIFO or a
// device given as a model would otherwise block forever in open() or read(). Temporary directories are
// private (mkdtemp: a random name, mode 0700) so nothing is written through a predictable path.
#pragma once

#include <filesystem>
#include <string>

namespace lamina {

// A read-only descriptor of a regular file, closed on destruction. `what` names the file in errors:
// "<what> is not a regular file: <path>", "<what> <path>: cannot open: <reason>".
class RegularFile {
public:
    RegularFile(const std::filesystem::path& path, const std::string& what);
    ~RegularFile();
    RegularFile(const RegularFile&) = delete;
    RegularFile& operator=(const RegularFile&) = delete;

    int fd() const { return fd_; }
    size_t size() const { return size_; }

private:
    int fd_ = -1;
    size_t size_ = 0;
};

// The whole content of a regular file (see RegularFile for the errors).
std::string read_regular_file(const std::filesystem::path& path, const std::string& what);

// A new directory `parent`/`prefix`XXXXXX with a random suffix and mode 0700 (mkdtemp), removed with
// what it holds when the object goes away, and on SIGINT or SIGTERM while it lives (the signal then
// ends the process as it would have). Throws lamina::Error naming `parent` if it cannot be created.
class PrivateTempDir {
public:
    PrivateTempDir(const std::filesystem::path& parent, const std::string& prefix);
    ~PrivateTempDir();
    PrivateTempDir(const PrivateTempDir&) = delete;
    PrivateTempDir& operator=(const PrivateTempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    // Keeps the directory (e.g. once renamed into place): neither destruction nor a signal removes it.
    void release();

private:
    std::filesystem::path path_;
    int slot_ = -1;
};

}  // namespace lamina
