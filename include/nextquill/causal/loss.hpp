#pragma once
// The NextQuill objective on target-row logits (causal/options.hpp has the
// formulas). Built from the checked cross_entropy op, so its gradients to
// z_h and z_0 are those of the formulas by construction:
//   dL_n/dz_h = c_n,k (softmax(z_h) - onehot(y))
//   dL_p/dz_h = c_p,k (softmax(z_h - z_0) - onehot(y)) = -dL_p/dz_0 (0 with stop_grad_z0)
// On CUDA every CE here is the fused kernel of ops/loss.hpp, and L_p is
// cross_entropy_diff (z_h - z_0 taken on the fly, no (N, V) difference).
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
// The weighted CE of z, or of z - z0 when z0 is defined (L_p: on CUDA one
// fused kernel, cross_entropy_diff; on the CPU the same as sub then CE).
inline Tensor weighted_ce(const Tensor& z, const Tensor& z0, const Tensor& y, const Tensor& w,
                          Normalization norm, int64_t B) {
  CrossEntropyOptions o;
  o.weights = w;
  auto ce = [&] { return z0.defined() ? cross_entropy_diff(z, z0, y, o) : cross_entropy(z, y, o); };
  switch (norm) {
    case Normalization::WeightedMean:
      o.reduction = Reduction::WeightedMean;
      return ce();
    case Normalization::TokenMean:
      o.reduction = Reduction::Mean;
      return ce();
    case Normalization::PerExample:
      o.reduction = Reduction::Sum;
      return mul(ce(), 1.0 / static_cast<double>(std::max<int64_t>(B, 1)));
  }
  return Tensor();
}
inline Tensor weighted_ce(const Tensor& z, const Tensor& y, const Tensor& w, Normalization norm, int64_t B) {
  return weighted_ce(z, Tensor(), y, w, norm, B);
}
// A host copy for reading values (no copy when already on the CPU).
inline Tensor host(const Tensor& t) { return t.device().is_cpu() ? t : t.detach().to(Device::cpu()); }
}  // namespace detail

// Per-token values from a DCE estimator: what the weights are made of.
struct EstimatorOutput {
  Tensor dce;  // (N) p_h(y) - p_0(y)
  Tensor js;   // (N) KL(p_h||m) + KL(p_0||m); undefined unless the JS rule needs it
};

// Estimator values from a pair of estimator logits (N,V), no gradient.
// On CUDA the DCE runs through the fused cross-entropy; the JS values (a
// rarely used rule, a full softmax in double) are computed on a host copy.
inline EstimatorOutput estimate(const Tensor& ze_h, const Tensor& ze_0, const Tensor& y, WeightRule rule) {
  EstimatorOutput e;
  e.dce = data_effect(ze_h, ze_0, y);
  if (rule == WeightRule::JS) {
    if (ze_h.device().is_cpu())
      e.js = js_weights(ze_h, ze_0, y);
    else
      e.js = js_weights(detail::host(ze_h), detail::host(ze_0), detail::host(y)).to(ze_h.device());
  }
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
  // Every tensor made here lives on the logits' device (weights and DCE are
  // built on the host from a few values per token, then moved).
  const Device dev = main.device();
  NQ_CHECK(y.device() == dev, "nextquill_loss", "targets are on ", y.device().str(), " but the logits on ",
           dev.str());
  const Tensor y_host = detail::host(y).contiguous();
  // Host-side values use float32 when the logits are bfloat16 (the CPU has no bf16).
  const DType host_dt = dt == kBFloat16 ? kFloat32 : dt;
  const auto on_dev = [&](const Tensor& t) {
    Tensor r = t.device() == dev ? t : t.to(dev);
    return r.dtype() == dt ? r : r.to(dt);
  };
  {
    auto t = y_host.to_vector<int64_t>();
    for (auto v : t) out.n_valid += v != -100;
  }
  // Data-side effect and token weights (constants for autograd). DCE is
  // reported whenever an estimator is available, even when the rule ignores it.
  out.dce = zeros({y.size(0)}, TensorOptions(dt).with_device(dev));
  Tensor w = on_dev(uniform_weights(y_host, host_dt));
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
    out.dce = on_dev(e.dce);
    const Tensor dce_host = detail::host(e.dce).to(host_dt);  // thresholds on the estimator's own precision
    if (need && opt.rule == WeightRule::Threshold) {
      w = on_dev(threshold_weights(dce_host, y_host, opt.delta, opt.lambda, opt.epsilon));
    } else if (need && opt.rule == WeightRule::JS) {
      NQ_CHECK(e.js.defined(), "nextquill_loss", "the JS rule needs the estimator's JS values");
      w = on_dev(e.js);
    }
    auto d = dce_host.to_vector<double>();
    auto t = y_host.to_vector<int64_t>();
    int64_t hi = 0;
    for (size_t k = 0; k < d.size(); ++k) hi += t[k] != -100 && d[k] > opt.delta;
    out.frac_preference = out.n_valid ? static_cast<double>(hi) / static_cast<double>(out.n_valid) : 0.0;
  }
  out.weights = w;
  const Tensor ones_w = on_dev(uniform_weights(y_host, host_dt));
  out.l_n = detail::weighted_ce(main, y, opt.weighted_ln ? w : ones_w, opt.norm, B);
  out.total = out.l_n;
  out.l_p = zeros({}, TensorOptions(dt).with_device(dev));
  if (opt.alpha > 0) {
    NQ_CHECK(z_0.defined() && z_0.shape() == z_h.shape(), "nextquill_loss",
             "L_p needs no-history logits of the same shape as the with-history ones");
    // CE over the MCE z_h - z_0 (the vocabulary-wide logit difference).
    const Tensor z0 = opt.stop_grad_z0 ? z_0.detach() : z_0;
    if (z_h.device().is_cpu()) {
      Tensor d = sub(z_h, z0);
      out.l_p = detail::weighted_ce(d, y, opt.weighted_lp ? w : ones_w, opt.norm, B);
    } else {  // fused: the difference is taken on the fly, dz_0 = -dz_h
      out.l_p = detail::weighted_ce(z_h, z0, y, opt.weighted_lp ? w : ones_w, opt.norm, B);
    }
    out.total = add(out.l_n, mul(out.l_p, opt.alpha));
  }
  return out;
}

}  // namespace nq::causal
