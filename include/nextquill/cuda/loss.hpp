#pragma once
// CUDA launchers of the fused cross-entropy (ops/loss.hpp) and of its
// logit-difference form CE(softmax(z - z0), y) (NextQuill's L_p,
// causal/loss.hpp). Defined in kernels/loss.cu. Inputs are contiguous CUDA
// tensors on one device; logits are (R, V) in memory (any shape whose last dim
// is V), targets (R) int64, weights (R) in the logits' dtype or undefined.
// Forward: one block per row, one pass over the vocabulary (online max/sum in
// fp32), the per-row logsumexp saved; backward: one pass per row writing
// coef * (softmax - onehot). No softmax tensor is kept. No autograd here.
#include "../config.hpp"

#if NEXTQUILL_WITH_CUDA
#include <cstdint>

#include "../core/tensor.hpp"

namespace nq::cuda {

// Same order as nq::Reduction (ops/api.hpp); ops/loss.hpp static_asserts it.
enum class LossReduction : int { None = 0, Sum = 1, Mean = 2, WeightedMean = 3 };

struct CrossEntropyForward {
  Tensor out;  // (R) per-row w*ce (None) or () the reduced loss; logits' dtype
  Tensor lse;  // (R) float32 (float64 for float64 logits): logsumexp of row r of z (- z0); 0 at ignored rows
  Tensor denom;  // () float64: what sum(w*ce) was divided by (0: loss and gradient are 0); undefined for None
  // First row whose target is neither in [0, V) nor ignore_index, and that
  // target (-1: none). Found on the device, read back with one synchronising
  // copy; when set, the other fields are meaningless and the caller throws.
  int64_t bad_row = -1;
  int64_t bad_target = 0;
};

// logits0: undefined, or the no-history logits (same shape and dtype): the
// loss is then taken over z - z0, computed on the fly.
CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& logits0, const Tensor& targets,
                                          const Tensor& weights, int64_t ignore_index, LossReduction red);

struct CrossEntropyGrads {
  Tensor dlogits, dlogits0;  // undefined where not asked for; dlogits0 = -dlogits
};
// grad: the upstream gradient, (R) for None, () otherwise, logits' dtype.
// lse/denom: from the forward.
CrossEntropyGrads cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& logits0,
                                         const Tensor& targets, const Tensor& weights, const Tensor& lse,
                                         const Tensor& denom, int64_t ignore_index, LossReduction red,
                                         bool need_dlogits, bool need_dlogits0);

}  // namespace nq::cuda
#endif
