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

#include "embedding.hpp"  // detail::index_str
#include "softmax.hpp"    // detail::row_logsumexp, row_exp, for_each_row

namespace nq {

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

}  // namespace nq
