#pragma once
// The NextQuill objective on target-row logits (causal/options.hpp has the
// formulas). Built from the checked cross_entropy op, so its gradients to
// z_h and z_0 are those of the formulas by construction:
//   dL_n/dz_h = c_n,k (softmax(z_h) - onehot(y))
//   dL_p/dz_h = c_p,k (softmax(z_h - z_0) - onehot(y)) = -dL_p/dz_0 (0 with stop_grad_z0)
#include "effects.hpp"
#include "weights.hpp"

namespace nq::causal {

struct LossParts {
  Tensor total;     // scalar, differentiable
  Tensor l_n, l_p;  // scalars (l_p is 0 when alpha == 0)
  Tensor weights;   // (N) raw token weights w_t (before normalisation), no gradient
  Tensor dce;       // (N) data-side effect (0 where not computed)
  int64_t n_valid = 0;
  // Share of valid target tokens marked preference-bearing (DCE > delta).
  double frac_preference = 0;
};

namespace detail {
inline Tensor weighted_ce(const Tensor& z, const Tensor& y, const Tensor& w, Normalization norm, int64_t B) {
  CrossEntropyOptions o;
  o.weights = w;
  switch (norm) {
    case Normalization::WeightedMean:
      o.reduction = Reduction::WeightedMean;
      return cross_entropy(z, y, o);
    case Normalization::TokenMean:
      o.reduction = Reduction::Mean;
      return cross_entropy(z, y, o);
    case Normalization::PerExample:
      o.reduction = Reduction::Sum;
      return mul(cross_entropy(z, y, o), 1.0 / static_cast<double>(std::max<int64_t>(B, 1)));
  }
  return Tensor();
}
}  // namespace detail

// Per-token values from a DCE estimator: what the weights are made of.
struct EstimatorOutput {
  Tensor dce;  // (N) p_h(y) - p_0(y)
  Tensor js;   // (N) KL(p_h||m) + KL(p_0||m); undefined unless the JS rule needs it
};

// Estimator values from a pair of estimator logits (N,V), no gradient.
inline EstimatorOutput estimate(const Tensor& ze_h, const Tensor& ze_0, const Tensor& y, WeightRule rule) {
  EstimatorOutput e;
  e.dce = data_effect(ze_h, ze_0, y);
  if (rule == WeightRule::JS) e.js = js_weights(ze_h, ze_0, y);
  return e;
}

// z_h, z_0: (N,V) trainable logits (z_0 may be undefined when there is no L_p
// and the estimator is fixed or unused); y (N) int64 (-100 ignored); B =
// number of examples in the batch; fixed: the fixed estimator's values for
// these rows (null: dynamic, from z_h/z_0 themselves, detached).
inline LossParts nextquill_loss(const Tensor& z_h, const Tensor& z_0, const Tensor& y, int64_t B,
                                const NextQuillOptions& opt, const EstimatorOutput* fixed = nullptr) {
  opt.validate();
  LossParts out;
  const Tensor& main = opt.use_history ? z_h : z_0;  // sft trains the no-history prompt
  NQ_CHECK(main.defined() && main.dim() == 2, "nextquill_loss", "logits must be (N, V), got ", main.brief());
  NQ_CHECK(y.dim() == 1 && y.size(0) == main.size(0), "nextquill_loss", "targets ", shape_str(y.shape()),
           " do not match logits ", shape_str(main.shape()));
  const DType dt = main.dtype();
  {
    auto t = y.contiguous().to_vector<int64_t>();
    for (auto v : t) out.n_valid += v != -100;
  }
  // Data-side effect and token weights (constants for autograd). DCE is
  // reported whenever an estimator is available, even when the rule ignores it.
  out.dce = zeros({y.size(0)}, dt);
  Tensor w = uniform_weights(y, dt);
  const bool need = opt.use_history && opt.needs_weights();
  if (need) {
    NQ_CHECK(!fixed || opt.estimator == EstimatorKind::Fixed, "nextquill_loss",
             "fixed-estimator values were given but the options ask for the dynamic estimator");
    NQ_CHECK(fixed || opt.estimator == EstimatorKind::Dynamic, "nextquill_loss",
             "the options ask for the fixed estimator but no estimator values were given");
    NQ_CHECK(fixed || (z_h.defined() && z_0.defined()), "nextquill_loss",
             "the dynamic estimator needs logits with and without history");
  }
  if (fixed || (z_h.defined() && z_0.defined())) {
    EstimatorOutput dyn;
    if (!fixed) dyn = estimate(z_h, z_0, y, opt.rule);
    const EstimatorOutput& e = fixed ? *fixed : dyn;
    NQ_CHECK(e.dce.defined() && e.dce.numel() == y.size(0), "nextquill_loss", "estimator DCE has ",
             e.dce.defined() ? e.dce.numel() : 0, " values for ", y.size(0), " target rows");
    out.dce = e.dce.to(dt);
    if (need && opt.rule == WeightRule::Threshold) {
      w = threshold_weights(out.dce, y, opt.delta, opt.lambda, opt.epsilon);
    } else if (need && opt.rule == WeightRule::JS) {
      NQ_CHECK(e.js.defined(), "nextquill_loss", "the JS rule needs the estimator's JS values");
      w = e.js.to(dt);
    }
    auto d = out.dce.to_vector<double>();
    auto t = y.contiguous().to_vector<int64_t>();
    int64_t hi = 0;
    for (size_t k = 0; k < d.size(); ++k) hi += t[k] != -100 && d[k] > opt.delta;
    out.frac_preference = out.n_valid ? static_cast<double>(hi) / static_cast<double>(out.n_valid) : 0.0;
  }
  out.weights = w;
  const Tensor ones_w = uniform_weights(y, dt);
  out.l_n = detail::weighted_ce(main, y, opt.weighted_ln ? w : ones_w, opt.norm, B);
  out.total = out.l_n;
  out.l_p = zeros({}, dt);
  if (opt.alpha > 0) {
    NQ_CHECK(z_0.defined() && z_0.shape() == z_h.shape(), "nextquill_loss",
             "L_p needs no-history logits of the same shape as the with-history ones");
    Tensor d = sub(z_h, opt.stop_grad_z0 ? z_0.detach() : z_0);  // MCE over the vocabulary
    out.l_p = detail::weighted_ce(d, y, opt.weighted_lp ? w : ones_w, opt.norm, B);
    out.total = add(out.l_n, mul(out.l_p, opt.alpha));
  }
  return out;
}

}  // namespace nq::causal
