#pragma once
// Whether ops record the graph. Thread-local, like PyTorch's.
namespace nq {

struct GradMode {
  static bool& flag() {
    thread_local bool enabled = true;
    return enabled;
  }
  static bool is_enabled() { return flag(); }
  static void set_enabled(bool on) { flag() = on; }
};

// RAII scope in which no graph is recorded: `{ nq::NoGradGuard g; ... }`.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// The reverse: record even inside a no_grad scope.
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(true); }
  ~EnableGradGuard() { GradMode::set_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace nq
