#pragma once
// The numerics guard of `train` and `pretrain`: a NaN or infinite loss or
// gradient stops the run with a message naming the step, the first parameter
// whose gradient is not finite (or "loss") and the last good checkpoint, before
// the optimizer sees it. With --nan-policy skip such a step makes no update
// (its gradients are dropped; the step, the LR schedule and the data still
// advance) up to --max-nan-skips times.
//
// Testing aid: NQ_INJECT_NAN_AT_STEP=k makes step k's gradient of one
// parameter NaN (NQ_INJECT_NAN_PARAM=name picks it, "loss" makes the loss
// NaN; default: the last trainable parameter), so the guard can be tested.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nextquill/nextquill.hpp>
#include <string>
#include <utility>
#include <vector>

#include "args.hpp"

namespace nqcli {

struct NanPolicy {
  std::string policy = "stop";  // "stop" or "skip"
  int64_t max_skips = 10;

  void check(const std::string& prog) const {
    require(policy == "stop" || policy == "skip", prog,
            "--nan-policy must be 'stop' or 'skip', got '" + policy + "'");
    require(max_skips >= 0, prog, "--max-nan-skips must be >= 0");
  }
};

inline void add_nan_flags(ArgParser& p, NanPolicy& n) {
  p.add("--nan-policy", &n.policy, "P",
        "NaN/Inf loss or gradient: stop (name the step and parameter) or skip the step's update");
  p.add("--max-nan-skips", &n.max_skips, "N", "with --nan-policy skip: stop at the (N+1)-th such step");
}

class NanGuard {
 public:
  using Named = std::vector<std::pair<std::string, nq::Tensor>>;

  NanGuard(const char* op, NanPolicy policy, Named params)
      : op_(op), policy_(std::move(policy)), params_(std::move(params)) {
    if (const char* s = std::getenv("NQ_INJECT_NAN_AT_STEP"); s && *s) {
      char* end = nullptr;
      inject_step_ = std::strtoll(s, &end, 10);
      if (*end || inject_step_ < 1) nq::fail(op_, "NQ_INJECT_NAN_AT_STEP must be a step >= 1, got '", s, "'");
      const char* t = std::getenv("NQ_INJECT_NAN_PARAM");
      inject_target_ = t && *t ? t : params_.empty() ? "loss" : params_.back().first;
      bool known = inject_target_ == "loss";
      for (const auto& [n, p] : params_) known = known || n == inject_target_;
      if (!known) nq::fail(op_, "NQ_INJECT_NAN_PARAM: no trainable parameter '", inject_target_, "'");
    }
  }

  int64_t skipped() const { return skipped_; }
  void set_skipped(int64_t n) { skipped_ = n; }

  // After the backward pass of `step` (1-based): the testing aid's NaN.
  void inject(int64_t step, double& loss) const {
    if (step != inject_step_) return;
    if (inject_target_ == "loss") {
      loss = NAN;
      return;
    }
    for (const auto& [n, p] : params_)
      if (n == inject_target_ && p.grad().defined()) p.grad().fill_(NAN);
  }

  // `norm`: the gradient norm (clip_grad_norm leaves non-finite gradients as
  // they are). Returns false when the step is fine, true when it is to be
  // skipped (after zeroing the gradients); throws under --nan-policy stop or
  // past the skip limit. `ckpt`: the last good checkpoint ("" when none yet).
  bool bad_step(int64_t step, double loss, double norm, const std::string& ckpt, int64_t ckpt_step) {
    if (std::isfinite(loss) && std::isfinite(norm)) return false;
    const std::string what = culprit(loss);
    const std::string where =
        ckpt.empty() ? std::string("no checkpoint was written yet")
                     : "the last good checkpoint is " + ckpt + " (step " + std::to_string(ckpt_step) + ")";
    if (policy_.policy == "skip" && skipped_ < policy_.max_skips) {
      ++skipped_;
      std::fprintf(stderr, "\nwarning: step %lld: %s; step skipped (%lld of at most %lld)\n",
                   static_cast<long long>(step), what.c_str(), static_cast<long long>(skipped_),
                   static_cast<long long>(policy_.max_skips));
      for (const auto& [n, p] : params_)
        if (p.grad().defined()) p.grad().zero_();
      return true;
    }
    if (policy_.policy == "skip")
      nq::fail(op_, "step ", step, ": ", what, "; ", skipped_,
               " step(s) were skipped already (--max-nan-skips ", policy_.max_skips, "); ", where);
    nq::fail(op_, "step ", step, ": ", what, "; ", where,
             ckpt.empty() ? " (lower the learning rate, or pass --nan-policy skip)"
                          : " (lower the learning rate and --resume, or pass --nan-policy skip)");
  }

 private:
  std::string culprit(double loss) const {
    if (!std::isfinite(loss)) return "the loss is " + fmt(loss);
    for (const auto& [n, p] : params_) {
      if (!p.grad().defined()) continue;
      const double g = nq::optim::grad_norm({p});
      if (!std::isfinite(g)) return "the gradient of parameter '" + n + "' is not finite";
    }
    return "the gradient norm overflowed (every gradient is finite)";
  }
  static std::string fmt(double v) { return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

  const char* op_;
  NanPolicy policy_;
  Named params_;
  int64_t inject_step_ = -1, skipped_ = 0;
  std::string inject_target_;
};

}  // namespace nqcli
