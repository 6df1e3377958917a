#pragma once
// Gradient accumulation: k micro-batches per optimizer step.
//
// Leaf gradients accumulate (+=) across backward passes until zero_grad(), so
// k backward passes of loss_i / k leave in .grad the gradient of the mean
// loss over the k micro-batches, the same as one batch k times larger
// (exactly so when every micro-batch has the same number of loss terms and
// the loss is a mean). Scale the loss, not the gradients:
//
//   nq::optim::GradAccumulator acc{4};
//   for (auto& micro : batches) {
//     nq::Tensor loss = model_loss(micro) * acc.loss_scale();   // 1/4
//     loss.backward();
//     if (acc.should_step()) {                 // true after every 4th micro-batch
//       nq::optim::clip_grad_norm(opt.parameters(), 1.0);   // on the full gradient
//       opt.step();
//       sched.step();
//       opt.zero_grad();
//     }
//   }
//
// Clipping, the optimizer step and the LR schedule all count optimizer steps,
// not micro-batches. With token-weighted losses whose micro-batches hold
// different token counts, divide by the total count over the k micro-batches
// instead of using loss_scale(). For a checkpoint taken mid-accumulation, save
// micro_step() (and the partial gradients) or checkpoint only on step
// boundaries, where micro_step() is 0.
#include <cstdint>

#include "../core/error.hpp"

namespace nq::optim {

class GradAccumulator {
 public:
  explicit GradAccumulator(int steps) : steps_(steps) {
    NQ_CHECK(steps >= 1, "GradAccumulator", "steps must be at least 1, got ", steps);
  }

  // Micro-batches per optimizer step.
  int steps() const { return steps_; }
  // The factor to multiply each micro-batch's loss by: 1 / steps.
  double loss_scale() const { return 1.0 / steps_; }
  // Call once after each micro-batch's backward. True when this micro-batch
  // completes a group of `steps`: step the optimizer and zero the gradients.
  bool should_step() {
    if (++micro_ < steps_) return false;
    micro_ = 0;
    return true;
  }
  // Micro-batches seen since the last optimizer step (0 at a step boundary).
  int micro_step() const { return micro_; }
  void set_micro_step(int m) {
    NQ_CHECK(m >= 0 && m < steps_, "GradAccumulator", "micro step ", m, " out of range [0, ", steps_, ")");
    micro_ = m;
  }
  void reset() { micro_ = 0; }

 private:
  int steps_;
  int micro_ = 0;
};

}  // namespace nq::optim
