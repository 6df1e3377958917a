#pragma once
// Backward-pass profiler: time per op name over the reverse passes run while
// it is on. Each node's closure is timed between device synchronisations, so
// the numbers attribute GPU time to ops (at the price of the overlap a normal
// pass has); gradient bookkeeping (dtype casts, summing fan-in, accumulating
// into .grad) is reported as "(accumulate)". Off by default; on with
// set_backward_profiling(true) or NQ_PROFILE_BACKWARD=1.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../core/tensor.hpp"
#include "../cuda/runtime.hpp"

namespace nq::autograd {

struct OpTime {
  double seconds = 0.0;
  int64_t calls = 0;
};

namespace detail {
struct ProfileState {
  bool enabled = false;
  std::mutex mu;
  std::map<std::string, OpTime> times;
  ProfileState() {
    const char* e = std::getenv("NQ_PROFILE_BACKWARD");
    enabled = e && *e && std::string(e) != "0";
  }
};
inline ProfileState& profile_state() {
  static ProfileState s;
  return s;
}
}  // namespace detail

inline void set_backward_profiling(bool on) { detail::profile_state().enabled = on; }
inline bool backward_profiling() { return detail::profile_state().enabled; }
inline void reset_backward_profile() {
  auto& s = detail::profile_state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.times.clear();
}
// (name, time) pairs, most time first.
inline std::vector<std::pair<std::string, OpTime>> backward_profile() {
  auto& s = detail::profile_state();
  std::lock_guard<std::mutex> lock(s.mu);
  std::vector<std::pair<std::string, OpTime>> v(s.times.begin(), s.times.end());
  std::sort(v.begin(), v.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  return v;
}
// A text table of the `top` most expensive ops: name, calls, total ms, share.
inline std::string backward_profile_table(size_t top = 20) {
  auto v = backward_profile();
  double total = 0;
  for (auto& kv : v) total += kv.second.seconds;
  std::string out =
      "backward profile (synchronised per op)\n  op                     calls   total ms   share\n";
  char line[160];
  for (size_t i = 0; i < v.size() && i < top; ++i) {
    std::snprintf(line, sizeof line, "  %-22s %6lld %10.3f %6.1f%%\n", v[i].first.c_str(),
                  static_cast<long long>(v[i].second.calls), v[i].second.seconds * 1e3,
                  total > 0 ? 100.0 * v[i].second.seconds / total : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-22s %6s %10.3f\n", "total", "", total * 1e3);
  return out + line;
}

namespace detail {
// Times one piece of a backward pass on `device` (no-op when profiling is off).
class ScopedOpTimer {
 public:
  ScopedOpTimer(const std::string& name, Device device) : on_(backward_profiling()) {
    if (!on_) return;
    name_ = name;
    device_ = device;
    sync();
    t0_ = std::chrono::steady_clock::now();
  }
  ~ScopedOpTimer() {
    if (!on_) return;
    sync();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    auto& st = profile_state();
    std::lock_guard<std::mutex> lock(st.mu);
    auto& t = st.times[name_];
    t.seconds += s;
    ++t.calls;
  }
  ScopedOpTimer(const ScopedOpTimer&) = delete;
  ScopedOpTimer& operator=(const ScopedOpTimer&) = delete;

 private:
  void sync() const {
    if (device_.is_cuda()) ::nq::cuda::synchronize(device_.index);
  }
  bool on_;
  std::string name_;
  Device device_;
  std::chrono::steady_clock::time_point t0_;
};
}  // namespace detail

}  // namespace nq::autograd
