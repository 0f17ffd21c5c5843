// Progress of long work on stderr: on a terminal, one line redrawn in place (a bar, count, rate, time
// left) at most 10 times a second; otherwise (a log, a pipe) a plain line every few seconds, so logs stay
// readable and nothing floods them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "build/engine_writer.h"

namespace lamina::cli {

class Progress {
public:
    // `what` names the work ("build", "summarize"), `unit` what is counted ("tensors", "examples").
    Progress(std::string what, double total, std::string unit);
    ~Progress();  // ends a terminal line left open (an error then prints on its own line)
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    // `done` of the total so far, and a short note shown after the counts (a rate, a score so far).
    void update(double done, const std::string& note = {});
    // The final line (always printed), with the elapsed time.
    void finish(const std::string& note = {});

    static constexpr double kLogIntervalSeconds = 5.0;

private:
    void print(double done, const std::string& note, bool final);

    std::string what_, unit_;
    double total_;
    bool tty_;
    bool drawn_ = false;  // a terminal line is on screen and must be ended
    std::chrono::steady_clock::time_point start_, last_;
};

// An engine build's progress as a Progress line: checkpoint tensors converted, bytes written of the
// estimate. Pass `fn()` to build_engine; the printer must outlive the build.
class BuildProgressPrinter {
public:
    explicit BuildProgressPrinter(std::string what) : what_(std::move(what)) {}
    BuildProgressFn fn() {
        return [this](const BuildProgress& p) { print(p); };
    }

private:
    void print(const BuildProgress& p);
    std::string what_;
    std::unique_ptr<Progress> bar_;
};

// Bytes in human units: "512.0 MB", "13.48 GB".
std::string human_bytes(double bytes);

}  // namespace lamina::cli
