#include "core/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace lamina {

RegularFile::RegularFile(const std::filesystem::path& path, const std::string& what) {
    // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting; O_NOCTTY: a
    // terminal device never becomes the controlling terminal. Regular files ignore both.
    fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd_ < 0) throw Error(what + " " + path.string() + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd_);
        throw Error(what + " is not a regular file: " + path.string());
    }
    size_ = static_cast<size_t>(st.st_size);
}

RegularFile::~RegularFile() { ::close(fd_); }

std::string read_regular_file(const std::filesystem::path& path, const std::string& what) {
    const RegularFile file(path, what);
    std::string bytes;
    bytes.reserve(file.size());
    char buf[1 << 16];
    for (;;) {
        const ssize_t n = ::read(file.fd(), buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            throw Error(what + " " + path.string() + ": read failed: " + std::strerror(errno));
        }
        bytes.append(buf, static_cast<size_t>(n));
    }
    return bytes;
}

namespace {

// The directories a SIGINT or SIGTERM removes. A signal handler may only read plain memory and make
// async-signal-safe calls, so the paths live in fixed buffers, each claimed through its state.
constexpr int kTempSlots = 8;
constexpr size_t kTempPathMax = 4096;
enum SlotState : int { kFree = 0, kWriting = 1, kArmed = 2 };
std::atomic<int> g_slot_state[kTempSlots];
char g_slot_path[kTempSlots][kTempPathMax];
struct sigaction g_previous[2];  // SIGINT, SIGTERM, as they were before ours
std::once_flag g_handlers_installed;

// Deepest nesting removed from a handler: the no-home cache is <temp>/<entry>/<file>.
constexpr int kMaxRemoveDepth = 4;

// Removes what directory `dfd` holds, with raw system calls only (async-signal-safe).
void remove_contents_signal_safe(int dfd, int depth) {
#ifdef SYS_getdents64
    struct LinuxDirent64 {
        uint64_t d_ino;
        int64_t d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[1];
    };
    alignas(8) char buf[4096];
    for (bool removed = true; removed;) {  // deleting while listing may skip entries: list again
        removed = false;
        ::lseek(dfd, 0, SEEK_SET);
        for (;;) {
            const long n = ::syscall(SYS_getdents64, dfd, buf, sizeof buf);
            if (n <= 0) break;
            for (long off = 0; off < n;) {
                const auto* d = reinterpret_cast<const LinuxDirent64*>(buf + off);
                off += d->d_reclen;
                const char* name = d->d_name;
                if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
                if (::unlinkat(dfd, name, 0) == 0) {
                    removed = true;
                } else if (depth > 0 && (errno == EISDIR || errno == EPERM)) {
                    const int sub = ::openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                    if (sub < 0) continue;
                    remove_contents_signal_safe(sub, depth - 1);
                    ::close(sub);
                    if (::unlinkat(dfd, name, AT_REMOVEDIR) == 0) removed = true;
                }
            }
        }
    }
#else
    (void)dfd;
    (void)depth;
#endif
}

void remove_temp_dirs_on_signal(int sig) {
    for (int i = 0; i < kTempSlots; ++i) {
        if (g_slot_state[i].load() != kArmed) continue;
        const int dfd = ::open(g_slot_path[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0) {
            remove_contents_signal_safe(dfd, kMaxRemoveDepth);
            ::close(dfd);
        }
        ::rmdir(g_slot_path[i]);
    }
    // End the process as the signal would have (or as the handler before ours chose).
    ::sigaction(sig, &g_previous[sig == SIGINT ? 0 : 1], nullptr);
    ::raise(sig);
}

void install_handlers() {
    const int signals[2] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; ++k) {
        ::sigaction(signals[k], nullptr, &g_previous[k]);
        // An ignored signal (a background job's SIGINT) stays ignored; a handler someone else installed
        // stays theirs.
        if (g_previous[k].sa_handler != SIG_DFL || (g_previous[k].sa_flags & SA_SIGINFO) != 0) continue;
        struct sigaction sa {};
        sa.sa_handler = remove_temp_dirs_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, SIGINT);
        sigaddset(&sa.sa_mask, SIGTERM);
        ::sigaction(signals[k], &sa, nullptr);
    }
}

int arm_slot(const std::string& path) {
    if (path.size() >= kTempPathMax) return -1;  // still removed on destruction, just not on a signal
    std::call_once(g_handlers_installed, install_handlers);
    for (int i = 0; i < kTempSlots; ++i) {
        int expected = kFree;
        if (!g_slot_state[i].compare_exchange_strong(expected, kWriting)) continue;
        std::memcpy(g_slot_path[i], path.c_str(), path.size() + 1);
        g_slot_state[i].store(kArmed);
        return i;
    }
    return -1;
}

void disarm_slot(int slot) {
    if (slot >= 0) g_slot_state[slot].store(kFree);
}

}  // namespace

PrivateTempDir::PrivateTempDir(const std::filesystem::path& parent, const std::string& prefix) {
    std::string templ = (parent / (prefix + "XXXXXX")).string();
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr)  // mode 0700, a fresh random name: never an existing path
        throw Error(parent.string() + ": cannot create a temporary directory: " + std::strerror(errno));
    path_ = buf.data();
    slot_ = arm_slot(path_.string());
}

PrivateTempDir::~PrivateTempDir() {
    if (path_.empty()) return;
    disarm_slot(slot_);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

void PrivateTempDir::release() {
    disarm_slot(slot_);
    slot_ = -1;
    path_.clear();
}

}  // namespace lamina
