#pragma once
// cross_entropy over the last dim of logits (..., V) with int64 targets (...).
// Forward is one pass per row: ce = logsumexp(z) - z[y]; no softmax copy is
// made, only the per-row lse is saved. Backward writes each gradient row
// directly as coef_i * (exp(z - lse) - onehot(y)), coef_i = upstream * w_i /
// denominator. Ignored tokens (target == ignore_index) get loss 0 and gradient
// 0; a reduction with a zero denominator gives 0 and zero gradients.
#include <cmath>
#include <limits>
#include <vector>

#include "../cuda/loss.hpp"
#include "embedding.hpp"  // detail::index_str
#include "softmax.hpp"    // detail::row_logsumexp, row_exp, for_each_row

namespace nq {

#if NEXTQUILL_WITH_CUDA
namespace detail {
static_assert(static_cast<int>(Reduction::None) == static_cast<int>(cuda::LossReduction::None) &&
                  static_cast<int>(Reduction::Sum) == static_cast<int>(cuda::LossReduction::Sum) &&
                  static_cast<int>(Reduction::Mean) == static_cast<int>(cuda::LossReduction::Mean) &&
                  static_cast<int>(Reduction::WeightedMean) ==
                      static_cast<int>(cuda::LossReduction::WeightedMean),
              "nq::Reduction and cuda::LossReduction must list the same reductions in the same order");

// The fused CUDA cross-entropy over z (or z - z0 when z0 is defined): one
// pass per row forward (saving only the per-row logsumexp), one backward.
// Autograd is recorded on {z} or {z, z0}; dz0 = -dz.
inline Tensor cross_entropy_cuda(const char* op, const Tensor& z, const Tensor& z0, const Tensor& targets,
                                 const CrossEntropyOptions& opts) {
  const Shape tshape(z.shape().begin(), z.shape().end() - 1);
  const Device dev = z.device();
  auto on_dev = [&](const Tensor& t, const char* what) {
    NQ_CHECK(t.device() == dev, op, what, " ", t.brief(), " is on ", t.device().str(),
             " but the logits are on ", dev.str(), ": move both to one device");
  };
  on_dev(targets, "targets");
  if (z0.defined()) on_dev(z0, "no-history logits");
  if (opts.weights.defined()) on_dev(opts.weights, "weights");
  const auto red = static_cast<cuda::LossReduction>(opts.reduction);
  Tensor zs = z.detach().contiguous();                                                 // (R, V)
  Tensor z0s = z0.defined() ? z0.detach().contiguous() : Tensor();                     // (R, V)
  Tensor ts = targets.contiguous();                                                    // (R)
  Tensor ws = opts.weights.defined() ? opts.weights.detach().contiguous() : Tensor();  // (R)
  cuda::CrossEntropyForward f = cuda::cross_entropy_forward(zs, z0s, ts, ws, opts.ignore_index, red);
  NQ_CHECK(f.bad_row < 0, op, "target ", f.bad_target, " at position ", detail::index_str(f.bad_row, tshape),
           " is out of range [0, ", z.size(-1), ") and is not ignore_index (", opts.ignore_index, ")");
  Tensor out = red == cuda::LossReduction::None ? f.out.view(tshape) : f.out;
  const int64_t ignore = opts.ignore_index;
  Tensor lse = f.lse, denom = f.denom;
  std::vector<Tensor> inputs{z};
  if (z0.defined()) inputs.push_back(z0);
  return record(
      op, out, inputs,
      [zs, z0s, ts, ws, lse, denom, ignore, red](const Tensor& g, const Node& n) -> std::vector<Tensor> {
        const bool need0 = n.needs(0), need1 = z0s.defined() && n.needs(1);
        std::vector<Tensor> grads(z0s.defined() ? 2 : 1);
        if (!need0 && !need1) return grads;
        Tensor gc = g.contiguous();  // (R) for None, () otherwise
        cuda::CrossEntropyGrads d =
            cuda::cross_entropy_backward(gc, zs, z0s, ts, ws, lse, denom, ignore, red, need0, need1);
        grads[0] = d.dlogits;
        if (z0s.defined()) grads[1] = d.dlogits0;
        return grads;
      });
}
}  // namespace detail
#endif

inline Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opts) {
  const char* op = "cross_entropy";
  NQ_CHECK(logits.dim() >= 1, op, "logits must have a class dim (..., V), got ", shape_str(logits.shape()));
  NQ_CHECK(is_floating(logits.dtype()), op, "logits must be floating, got ", dtype_name(logits.dtype()));
  NQ_CHECK(targets.dtype() == kInt64, op, "targets must be int64, got ", dtype_name(targets.dtype()));
  const Shape tshape(logits.shape().begin(), logits.shape().end() - 1);
  NQ_CHECK(targets.shape() == tshape, op, "targets ", shape_str(targets.shape()), " do not match logits ",
           shape_str(logits.shape()), ": expected targets of shape ", shape_str(tshape));
  const Tensor& wt = opts.weights;
  if (wt.defined()) {
    NQ_CHECK(wt.shape() == tshape, op, "weights ", shape_str(wt.shape()), " must have the targets' shape ",
             shape_str(tshape));
    NQ_CHECK(wt.dtype() == logits.dtype(), op, "weights dtype ", dtype_name(wt.dtype()),
             " differs from logits dtype ", dtype_name(logits.dtype()));
  }
#if NEXTQUILL_WITH_CUDA
  if (logits.device().is_cuda() || targets.device().is_cuda() || (wt.defined() && wt.device().is_cuda()))
    return detail::cross_entropy_cuda(op, logits, Tensor(), targets, opts);
#endif
  const int64_t V = logits.size(-1), R = numel_of(tshape);
  const int64_t ignore = opts.ignore_index;
  const Reduction red = opts.reduction;

  Tensor ts = targets.contiguous();  // (R)
  const int64_t* tp = ts.data_ptr<int64_t>();
  int64_t n_valid = 0;
  for (int64_t i = 0; i < R; ++i) {  // validated up front: parallel loops must not throw
    if (tp[i] == ignore) continue;
    NQ_CHECK(tp[i] >= 0 && tp[i] < V, op, "target ", tp[i], " at position ", detail::index_str(i, tshape),
             " is out of range [0, ", V, ") and is not ignore_index (", ignore, ")");
    ++n_valid;
  }

  Tensor zs = logits.detach().contiguous();                        // (R, V)
  Tensor ws = wt.defined() ? wt.detach().contiguous() : Tensor();  // (R)
  Tensor lse = Tensor::empty({R}, logits.dtype());                 // per-row logsumexp (0 at ignored rows)
  Tensor out = Tensor::empty(red == Reduction::None ? tshape : Shape{}, logits.dtype());
  double denom = 1.0;  // what the weighted sum is divided by
  visit_float(logits.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* z = zs.data_ptr<T>();
    const T* w = ws.defined() ? ws.data_ptr<T>() : nullptr;
    T* lp = lse.data_ptr<T>();
    std::vector<double> loss(R);  // w_i * ce_i, 0 at ignored rows
    detail::for_each_row(R, V, [&](int64_t r) {
      if (tp[r] == ignore) {
        lp[r] = T(0);
        loss[r] = 0.0;
        return;
      }
      const T* zr = z + r * V;
      lp[r] = detail::row_logsumexp(zr, V);
      const double ce = static_cast<double>(lp[r]) - static_cast<double>(zr[tp[r]]);
      loss[r] = w ? static_cast<double>(w[r]) * ce : ce;
    });
    if (red == Reduction::None) {
      T* o = out.data_ptr<T>();
      for (int64_t i = 0; i < R; ++i) o[i] = static_cast<T>(loss[i]);
      return;
    }
    if (red == Reduction::Mean) {
      denom = static_cast<double>(n_valid);
    } else if (red == Reduction::WeightedMean) {
      if (w) {
        denom = 0.0;
        for (int64_t i = 0; i < R; ++i)
          if (tp[i] != ignore) denom += static_cast<double>(w[i]);
      } else {
        denom = static_cast<double>(n_valid);
      }
    }
    double total = 0.0;  // summed serially in row order: deterministic
    for (int64_t i = 0; i < R; ++i) total += loss[i];
    out.data_ptr<T>()[0] = static_cast<T>(denom != 0.0 ? total / denom : 0.0);
  });

  Tensor ls = lse.detach();
  Tensor zsave = zs.detach();
  return record(
      op, out, {logits},
      [zsave, ts, ws, ls, ignore, red, denom, V, R](const Tensor& g, const Node& n) -> std::vector<Tensor> {
        if (!n.needs(0)) return {Tensor()};
        Tensor gc = g.contiguous();  // (R) for None, () otherwise
        Tensor dz = Tensor::empty(zsave.shape(), zsave.dtype());
        visit_float(zsave.dtype(), "cross_entropy", [&](auto tag) {
          using T = typename decltype(tag)::type;
          const T* z = zsave.data_ptr<T>();
          const T* w = ws.defined() ? ws.data_ptr<T>() : nullptr;
          const T* lp = ls.data_ptr<T>();
          const int64_t* tp = ts.data_ptr<int64_t>();
          const T* gp = gc.data_ptr<T>();
          T* d = dz.data_ptr<T>();
          // upstream / denominator for reduced losses; 0 when the denominator is 0
          const T scale = red == Reduction::None ? T(1)
                          : denom != 0.0         ? static_cast<T>(static_cast<double>(gp[0]) / denom)
                                                 : T(0);
          detail::for_each_row(R, V, [&](int64_t r) {
            T* dr = d + r * V;
            const int64_t y = tp[r];
            T coef = red == Reduction::None ? gp[r] : scale;
            if (w) coef *= w[r];
            if (y == ignore || coef == T(0)) {
              std::fill(dr, dr + V, T(0));
              return;
            }
            const T* zr = z + r * V;
            const T l = lp[r];
            if (l == -std::numeric_limits<T>::infinity()) {  // all -inf logits: softmax taken as 0
              std::fill(dr, dr + V, T(0));
            } else {
              detail::row_exp(zr, l, dr, V);  // softmax row, vectorised
              detail::RowArrayMut<T>(dr, V) *= coef;
            }
            dr[y] -= coef;
          });
        });
        return {dz};
      });
}

// cross_entropy(z - z0, targets, opts): NextQuill's logit-difference loss
// (causal/loss.hpp, L_p). On the CPU it is exactly that composition; on CUDA
// one fused kernel takes the difference on the fly (no (N, V) difference
// tensor) and its backward writes dz = coef (softmax(z - z0) - onehot) and
// dz0 = -dz (nothing to z0 when it needs no gradient, e.g. z0.detach()).
inline Tensor cross_entropy_diff(const Tensor& z, const Tensor& z0, const Tensor& targets,
                                 const CrossEntropyOptions& opts) {
  const char* op = "cross_entropy_diff";
  NQ_CHECK(z.defined() && z0.defined(), op, "both logit tensors must be defined");
  NQ_CHECK(z.shape() == z0.shape() && z.dtype() == z0.dtype(), op, "logits ", z.brief(), " and ", z0.brief(),
           " must have the same shape and dtype");
#if NEXTQUILL_WITH_CUDA
  if (z.device().is_cuda() || z0.device().is_cuda()) {
    NQ_CHECK(z.dim() >= 1, op, "logits must have a class dim (..., V), got ", shape_str(z.shape()));
    NQ_CHECK(is_floating(z.dtype()), op, "logits must be floating, got ", dtype_name(z.dtype()));
    NQ_CHECK(targets.dtype() == kInt64, op, "targets must be int64, got ", dtype_name(targets.dtype()));
    const Shape tshape(z.shape().begin(), z.shape().end() - 1);
    NQ_CHECK(targets.shape() == tshape, op, "targets ", shape_str(targets.shape()), " do not match logits ",
             shape_str(z.shape()), ": expected targets of shape ", shape_str(tshape));
    if (opts.weights.defined()) {
      NQ_CHECK(opts.weights.shape() == tshape, op, "weights ", shape_str(opts.weights.shape()),
               " must have the targets' shape ", shape_str(tshape));
      NQ_CHECK(opts.weights.dtype() == z.dtype(), op, "weights dtype ", dtype_name(opts.weights.dtype()),
               " differs from logits dtype ", dtype_name(z.dtype()));
    }
    NQ_CHECK(z0.device() == z.device(), op, "logits are on ", z.device().str(), " and ", z0.device().str());
    return detail::cross_entropy_cuda(op, z, z0, targets, opts);
  }
#endif
  return cross_entropy(sub(z, z0), targets, opts);
}

}  // namespace nq
