#pragma once
// The two causal preference effects on target-row logits.
//
// z_h, z_0: (N, V) logits at the N target positions with and without the
// user's history (row k of both predicts the same gold token y_k).
//   model-side effect  MCE_k = z_h,k - z_0,k        (a vector over the vocabulary)
//   data-side effect   DCE_k = p(y_k | h) - p(y_k | no h)   (a scalar per token)
// Probabilities come from logsumexp + gather (cross_entropy with no
// reduction), never from a full softmax copy. Rows whose target is
// ignore_index (-100) get DCE 0.
#include <cmath>
#include <vector>

#include "../ops/api.hpp"
#include "../ops/loss.hpp"

namespace nq::causal {

// log p(y_k) per row (0 at ignored rows), no gradient; on z's device, in z's
// dtype (fp32 logits from CausalLM also under autocast).
inline Tensor gold_logprob(const Tensor& z, const Tensor& y) {
  NoGradGuard ng;
  CrossEntropyOptions o;
  o.reduction = Reduction::None;
  return neg(cross_entropy(z.detach(), y.to(z.device()), o));
}

// DCE (N) = p_h(y) - p_0(y) from estimator logits, no gradient.
inline Tensor data_effect(const Tensor& ze_h, const Tensor& ze_0, const Tensor& y) {
  NoGradGuard ng;
  NQ_CHECK(ze_h.shape() == ze_0.shape(), "data_effect", "with-history logits ", shape_str(ze_h.shape()),
           " and no-history logits ", shape_str(ze_0.shape()), " must have the same shape");
  Tensor d = sub(exp(gold_logprob(ze_h, y)), exp(gold_logprob(ze_0, y)));
  // Ignored rows: both log-probs are 0, so d = 0 exactly.
  return d;
}

// MCE at the gold token (N): z_h[y] - z_0[y], no gradient (for inspection).
inline std::vector<double> model_effect_at_gold(const Tensor& z_h, const Tensor& z_0, const Tensor& y) {
  NoGradGuard ng;
  // On the host (the inspector's per-token view; copies (N,V) from a device).
  Tensor zh = z_h.cpu().to(kFloat64).contiguous(), z0 = z_0.cpu().to(kFloat64).contiguous(),
         yc = y.cpu().contiguous();
  const int64_t N = zh.size(0), V = zh.size(1);
  const double *a = zh.data_ptr<double>(), *b = z0.data_ptr<double>();
  const int64_t* t = yc.data_ptr<int64_t>();
  std::vector<double> out(N, 0.0);
  for (int64_t k = 0; k < N; ++k)
    if (t[k] >= 0 && t[k] < V) out[k] = a[k * V + t[k]] - b[k * V + t[k]];
  return out;
}

}  // namespace nq::causal
