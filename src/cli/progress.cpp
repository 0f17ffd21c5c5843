#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace lamina::cli {

namespace {
double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

std::string duration(double s) {
    char buf[32];
    if (s < 60) std::snprintf(buf, sizeof buf, "%.0f s", s);
    else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
    else std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, static_cast<int>(s) / 60 % 60);
    return buf;
}

// What fits a progress line: counts as integers when they are whole, else with one decimal.
std::string count(double v) {
    char buf[32];
    if (v == static_cast<double>(static_cast<int64_t>(v))) std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    else std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}
}  // namespace

std::string human_bytes(double bytes) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (bytes >= 1000.0 && u < 4) {
        bytes /= 1000.0;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
    return buf;
}

Progress::Progress(std::string what, double total, std::string unit)
    : what_(std::move(what)), unit_(std::move(unit)), total_(std::max(total, 0.0)), tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

Progress::~Progress() {
    if (drawn_) std::fputc('\n', stderr);
}

void Progress::update(double done, const std::string& note) {
    const auto now = std::chrono::steady_clock::now();
    const double since = seconds_between(last_, now);
    if (since < (tty_ ? 0.1 : kLogIntervalSeconds)) return;
    last_ = now;
    print(done, note, false);
}

void Progress::finish(const std::string& note) { print(total_, note, true); }

void Progress::print(double done, const std::string& note, bool final) {
    const double elapsed = seconds_between(start_, std::chrono::steady_clock::now());
    const double frac = total_ > 0 ? std::clamp(done / total_, 0.0, 1.0) : 1.0;
    std::string line = what_;
    line.append(": ");
    if (tty_) {
        constexpr int kWidth = 24;
        const int filled = static_cast<int>(kWidth * frac);
        line.push_back('[');
        line.append(static_cast<size_t>(filled), '#');
        line.append(static_cast<size_t>(kWidth - filled), ' ');
        line.append("] ");
    }
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3.0f%%", 100.0 * frac);
    line.append(pct).append(" ").append(count(done)).append("/").append(count(total_)).append(" ").append(unit_);
    if (!note.empty()) line.append(", ").append(note);
    line.append(", ").append(duration(elapsed));
    if (!final && frac > 0.0 && frac < 1.0) line.append(", ETA ").append(duration(elapsed / frac * (1.0 - frac)));
    if (tty_) {
        std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
        drawn_ = !final;
    } else {
        std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
}

void BuildProgressPrinter::print(const BuildProgress& p) {
    if (!bar_) bar_ = std::make_unique<Progress>(what_, static_cast<double>(p.tensors_total), "tensors");
    const std::string note =
        human_bytes(static_cast<double>(p.bytes_done)) + " of ~" + human_bytes(static_cast<double>(p.bytes_total));
    if (p.tensors_done >= p.tensors_total) bar_->finish(note);
    else bar_->update(static_cast<double>(p.tensors_done), note);
}

}  // namespace lamina::cli
