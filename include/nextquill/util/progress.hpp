#pragma once
// A one-line progress bar for long loops: bar, step/total, caller-supplied
// fields (loss, ...), throughput and ETA. On a terminal it redraws in place
// (\r); otherwise (logs, CI) it prints a full line every `log_every` seconds.
//
//   nq::ProgressBar bar(total, "train");
//   for (...) { ...; bar.update(step, "loss 2.31"); }
//   bar.finish("done");
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace nq {

class ProgressBar {
 public:
  ProgressBar(int64_t total, std::string label = "", int64_t start = 0, double log_every_s = 10.0,
              std::FILE* out = stderr)
      : total_(total),
        start_(start),
        label_(std::move(label)),
        log_every_(log_every_s),
        out_(out),
        tty_(isatty(fileno(out)) != 0),
        t0_(clock::now()),
        last_(t0_) {}

  // `done` steps of `total` are complete; `fields` is shown after the counter.
  // `units` counts work per step (e.g. tokens) for the throughput.
  void update(int64_t done, const std::string& fields = "", double units_per_step = 0,
              const char* unit = "") {
    const auto now = clock::now();
    const bool last = done >= total_;
    if (!last && !tty_ && seconds(now - last_) < log_every_) return;
    if (!last && tty_ && seconds(now - last_) < 0.1) return;  // redraw at most 10x per second
    last_ = now;
    const double el = seconds(now - t0_);
    const int64_t n = done - start_;
    const double rate = el > 0 ? n / el : 0;  // steps per second (this run)
    const double eta = rate > 0 ? (total_ - done) / rate : 0;
    std::string bar;
    if (total_ > 0) {
      const int w = 24, fill = static_cast<int>(w * std::min<double>(1.0, double(done) / double(total_)));
      bar = "[" + std::string(fill, '#') + std::string(w - fill, '.') + "] ";
    }
    char speed[64] = "";
    if (units_per_step > 0 && rate > 0)
      std::snprintf(speed, sizeof speed, " | %.0f %s/s", rate * units_per_step, unit);
    std::fprintf(out_, "%s%s%s%lld/%lld %s%s | %s elapsed, ETA %s%s", tty_ ? "\r" : "", label_.c_str(),
                 label_.empty() ? "" : " ", static_cast<long long>(done), static_cast<long long>(total_),
                 bar.c_str(), fields.c_str(), format_time(el).c_str(), format_time(eta).c_str(), speed);
    std::fprintf(out_, tty_ ? "\033[K" : "\n");
    std::fflush(out_);
  }
  // Ends the line (on a terminal) and prints a closing message.
  void finish(const std::string& msg = "") {
    if (tty_) std::fprintf(out_, "\n");
    if (!msg.empty()) std::fprintf(out_, "%s\n", msg.c_str());
    std::fflush(out_);
  }
  double elapsed() const { return seconds(clock::now() - t0_); }

  static std::string format_time(double s) {
    char b[32];
    const long long t = static_cast<long long>(s + 0.5);
    if (t >= 3600)
      std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
      std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
    else
      std::snprintf(b, sizeof b, "%llds", t);
    return b;
  }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }
  int64_t total_, start_;
  std::string label_;
  double log_every_;
  std::FILE* out_;
  bool tty_;
  clock::time_point t0_, last_;
};

}  // namespace nq
