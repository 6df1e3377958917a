#pragma once
// Learning-rate schedules as multipliers of a base learning rate, and the
// LRScheduler that applies one to an optimizer.
//
// A Schedule maps (step t, run length N) to a multiplier; schedule(t) uses the
// N it was built with. Past N the multiplier stays at its final value.
//
//   ConstantLR(f)               f
//   LinearLR(N, end)            1 - (1 - end) * t / N
//   CosineLR(N, min)            min + (1 - min) * (1 + cos(pi * t / N)) / 2
//   Warmup(inner, W)            (t + 1) / W for t < W, then inner at t - W over N - W
//
// so Warmup(CosineLR(10, 0.1), 3) gives 1/3, 2/3, 1, then
// 0.1 + 0.9 * (1 + cos(pi * (t - 3) / 7)) / 2. Schedules are values (copy
// them freely) and nest: Warmup wraps any schedule, including another Warmup.
//
// LRScheduler, in PyTorch's convention: constructing it sets every group's lr
// to initial_lr * schedule(0); each step(), called after optimizer.step(),
// advances t and sets initial_lr * schedule(t). Each group's initial_lr is
// its lr when the first scheduler is attached (and is saved with the
// optimizer state); the scheduler's own state is its step counter.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <numbers>
#include <string>
#include <utility>

#include "optimizer.hpp"

namespace nq::optim {

class Schedule {
 public:
  // fn(t, n): the multiplier at step t of a run of n steps; n = 0 means the
  // schedule does not depend on the run length.
  using Fn = std::function<double(int64_t t, int64_t n)>;
  Schedule(Fn fn, int64_t total_steps) : fn_(std::move(fn)), total_(total_steps) {
    NQ_CHECK(fn_, "Schedule", "empty schedule function");
    NQ_CHECK(total_ >= 0, "Schedule", "negative total_steps ", total_);
  }
  // The multiplier at step t (t >= 0) over this schedule's own length.
  double operator()(int64_t t) const { return at(t, total_); }
  // The multiplier at step t over a run of n steps (what wrappers call).
  double at(int64_t t, int64_t n) const {
    NQ_CHECK(t >= 0, "Schedule", "negative step ", t);
    return fn_(t, n);
  }
  int64_t total_steps() const { return total_; }

 private:
  Fn fn_;
  int64_t total_;
};

namespace detail {
// t / n clamped to [0, 1]; a run of length 0 counts as finished.
inline double progress(int64_t t, int64_t n) { return n <= 0 ? 1.0 : std::min(1.0, double(t) / double(n)); }
}  // namespace detail

// A constant multiplier.
struct ConstantLR : Schedule {
  explicit ConstantLR(double factor = 1.0) : Schedule([factor](int64_t, int64_t) { return factor; }, 0) {
    NQ_CHECK(std::isfinite(factor) && factor >= 0, "ConstantLR", "invalid factor ", factor);
  }
};

// Linear from 1 at t = 0 to end_ratio at t = total_steps, then constant.
struct LinearLR : Schedule {
  LinearLR(int64_t total_steps, double end_ratio = 0.0)
      : Schedule(
            [end_ratio](int64_t t, int64_t n) { return 1.0 - (1.0 - end_ratio) * detail::progress(t, n); },
            total_steps) {
    NQ_CHECK(total_steps > 0, "LinearLR", "total_steps must be positive, got ", total_steps);
    NQ_CHECK(std::isfinite(end_ratio) && end_ratio >= 0, "LinearLR", "invalid end_ratio ", end_ratio);
  }
};

// Half a cosine from 1 at t = 0 to min_ratio at t = total_steps, then constant.
struct CosineLR : Schedule {
  CosineLR(int64_t total_steps, double min_ratio = 0.0)
      : Schedule(
            [min_ratio](int64_t t, int64_t n) {
              return min_ratio +
                     (1.0 - min_ratio) * 0.5 * (1.0 + std::cos(std::numbers::pi * detail::progress(t, n)));
            },
            total_steps) {
    NQ_CHECK(total_steps > 0, "CosineLR", "total_steps must be positive, got ", total_steps);
    NQ_CHECK(std::isfinite(min_ratio) && min_ratio >= 0, "CosineLR", "invalid min_ratio ", min_ratio);
  }
};

// Linear warmup (t + 1) / warmup_steps for the first warmup_steps steps, then
// `inner` shifted by warmup_steps over the remaining total - warmup_steps.
// The total is inner's (0 for length-free schedules such as ConstantLR).
struct Warmup : Schedule {
  Warmup(const Schedule& inner, int64_t warmup_steps)
      : Schedule(
            [inner, warmup_steps](int64_t t, int64_t n) {
              if (t < warmup_steps) return double(t + 1) / double(warmup_steps);
              return inner.at(t - warmup_steps, n > 0 ? n - warmup_steps : 0);
            },
            inner.total_steps()) {
    NQ_CHECK(warmup_steps >= 0, "Warmup", "negative warmup_steps ", warmup_steps);
    NQ_CHECK(inner.total_steps() == 0 || warmup_steps < inner.total_steps(), "Warmup", "warmup_steps ",
             warmup_steps, " must be below the schedule's total_steps ", inner.total_steps());
  }
};

class LRScheduler {
 public:
  // Records each group's initial_lr (if not yet set) and applies step 0.
  LRScheduler(Optimizer& opt, Schedule schedule) : opt_(&opt), schedule_(std::move(schedule)) {
    for (auto& g : opt_->groups())
      if (std::isnan(g.initial_lr)) g.initial_lr = g.lr;
    apply();
  }

  // Advance one step (call after optimizer.step()) and set the new lr.
  void step() {
    ++t_;
    apply();
  }
  // The current step (0 after construction).
  int64_t step_index() const { return t_; }
  // The multiplier and group 0's lr at the current step.
  double multiplier() const { return schedule_(t_); }
  double lr(size_t group = 0) const { return opt_->lr(group); }
  const Schedule& schedule() const { return schedule_; }

  // State for checkpoints: {"scheduler.step": t}.
  std::map<std::string, std::string> state_meta() const { return {{"scheduler.step", std::to_string(t_)}}; }
  // Restores the step and sets the lr of every group for it. Unknown keys are
  // ignored, so the map may be shared with other checkpoint parts.
  void load_state(const std::map<std::string, std::string>& meta) {
    const int64_t t = detail::meta_int(meta, "scheduler.step", "LRScheduler.load_state");
    set_step(t);
  }
  void set_step(int64_t t) {
    NQ_CHECK(t >= 0, "LRScheduler", "negative step ", t);
    t_ = t;
    apply();
  }

 private:
  void apply() {
    const double m = schedule_(t_);
    for (auto& g : opt_->groups()) {
      if (std::isnan(g.initial_lr)) g.initial_lr = g.lr;  // a group added after construction
      g.lr = g.initial_lr * m;
    }
  }

  Optimizer* opt_;
  Schedule schedule_;
  int64_t t_ = 0;
};

}  // namespace nq::optim
