#pragma once
// CUDA launchers of the optimizers (optim/*.hpp): fused AdamW and SGD updates
// of one parameter, the sum of squares of a list of gradients (one host read
// for the whole list) and in-place scaling / zeroing. Defined in
// kernels/optim.cu. Tensors are contiguous CUDA tensors of one dtype (float32
// or float64: parameters and moments are fp32 masters); the updates run on
// the parameter's stream and do not synchronise. No autograd here.
#include "../config.hpp"

#if NEXTQUILL_WITH_CUDA
#include <vector>

#include "../core/tensor.hpp"

namespace nq::cuda {

// One AdamW update, element arithmetic in the parameter's dtype exactly as
// optim/adamw.hpp (scalars are precomputed in double by the caller):
//   x = has_decay ? p * decay : p
//   m = lerp_low ? m + w1 (g - m) : g - (g - m) b1       (w1 = 1 - b1)
//   v = v b2 + w2 g g                                    (w2 = 1 - b2)
//   p = x + neg_step * m / (sqrt(v) / c2 + eps)
struct AdamWScalars {
  double decay, w1, b1, b2, w2, neg_step, c2, eps;
  bool has_decay, lerp_low;
};
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWScalars& s);

// One SGD update as optim/sgd.hpp; buf undefined: no momentum (mode 0);
// first: the first step of this parameter (buf = d).
void sgd_step(const Tensor& p, const Tensor& g, const Tensor& buf, double lr, double weight_decay,
              double momentum, double dampening, bool nesterov, bool first);

// sum_i sum(t_i^2) over tensors on one CUDA device, in float64 with a fixed
// summation order (deterministic), read back once (synchronises). 0 for an
// empty list.
double sum_squares(const std::vector<Tensor>& ts);

// t *= T(coef) in place, in t's dtype (as the CPU clip_grad_norm).
void scale_(const Tensor& t, double coef);
// t = 0 in place (a memset on t's stream).
void zero_(const Tensor& t);

}  // namespace nq::cuda
#endif
