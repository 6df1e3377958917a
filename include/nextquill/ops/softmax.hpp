#pragma once
// softmax / log_softmax / logsumexp along one dim. Each is one fused row
// kernel: the reduced dim is swapped last and made contiguous, so a row is a
// dense run of n values, and rows run in parallel. Every kernel subtracts the
// row max before exp(), so nothing overflows; sums accumulate in double.
//
// Fully masked rows (all -inf): softmax gives zeros rather than NaN,
// log_softmax gives -inf, logsumexp gives -inf, and the gradient of such a row
// is 0 for all three. (+inf or NaN inputs propagate NaN, as in PyTorch.)
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "../cpu/parallel.hpp"
#include "matmul.hpp"

namespace nq {

namespace detail {

// Rows per parallel chunk: about 32K elements of work each.
inline int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1)); }

// f(r) for every row r in [0, rows), rows of n elements, in parallel chunks.
template <typename F>
void for_each_row(int64_t rows, int64_t n, F&& f) {
  cpu::parallel_for(0, rows, row_grain(n), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) f(r);
  });
}

// `t` cut from the graph, with `dim` swapped to the last position and made
// contiguous: row-major (R, n) rows. Its shape is t's with dim and last swapped.
inline Tensor rows_last(const Tensor& t, int64_t dim) {
  Tensor d = t.detach();
  if (dim != d.dim() - 1) d = d.transpose(dim, -1);
  return d.contiguous();
}
// Inverse of rows_last: a tensor in the swapped layout back to the original
// dim order, contiguous.
inline Tensor rows_restore(const Tensor& r, int64_t dim) {
  return dim == r.dim() - 1 ? r : r.transpose(dim, -1).contiguous();
}

// Max of one row (-inf when empty); a NaN entry makes it NaN, so NaN propagates.
template <typename T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) m = (x[i] > m || x[i] != x[i]) ? x[i] : m;
  return m;
}

// log(sum(exp(x))) of one row; -inf for an empty or all -inf row, +inf when
// some entry is +inf.
template <typename T>
T row_logsumexp(const T* x, int64_t n) {
  const T m = row_max(x, n);
  if (std::isinf(m)) return m;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(std::exp(x[i] - m));
  return static_cast<T>(static_cast<double>(m) + std::log(s));
}

template <typename T>
bool row_all_neg_inf(const T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (y[i] != -std::numeric_limits<T>::infinity()) return false;
  return true;
}

// Shared driver of softmax and log_softmax: fwd(x_row, y_row, n) and
// bwd(y_row, g_row, dx_row, n) work on one dense row each.
template <typename Fwd, typename Bwd>
Tensor softmax_like(const char* op, const Tensor& x, int64_t dim, Fwd fwd, Bwd bwd) {
  dim = wrap_dim(dim, x.dim(), op);
  Tensor xr = rows_last(x, dim);  // (R, n)
  const int64_t n = x.shape()[dim];
  const int64_t rows = n ? xr.numel() / n : 0;
  Tensor yr = Tensor::empty(xr.shape(), x.dtype());
  visit_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xr.data_ptr<T>();
    T* yp = yr.data_ptr<T>();
    for_each_row(rows, n, [&](int64_t r) { fwd(xp + r * n, yp + r * n, n); });
  });
  Tensor ys = yr.detach();  // saved in the row layout: backward needs no transpose of y
  return record(op, rows_restore(yr, dim), {x},
                [ys, dim, n, rows, bwd, op](const Tensor& g, const Node&) -> std::vector<Tensor> {
                  Tensor gr = rows_last(g, dim);
                  Tensor dx = Tensor::empty(ys.shape(), ys.dtype());
                  visit_float(ys.dtype(), op, [&](auto tag) {
                    using T = typename decltype(tag)::type;
                    const T* yp = ys.data_ptr<T>();
                    const T* gp = gr.data_ptr<T>();
                    T* dp = dx.data_ptr<T>();
                    for_each_row(rows, n, [&](int64_t r) { bwd(yp + r * n, gp + r * n, dp + r * n, n); });
                  });
                  return {rows_restore(dx, dim)};
                });
}

}  // namespace detail

inline Tensor softmax(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return softmax(x.reshape({1}), wrap_dim(dim, 1, "softmax")).reshape({});
  return detail::softmax_like(
      "softmax", x, dim,
      [](const auto* xr, auto* yr, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(xr)>>;
        const T m = detail::row_max(xr, n);
        if (m == -std::numeric_limits<T>::infinity()) {  // fully masked row: zeros, not NaN
          std::fill(yr, yr + n, T(0));
          return;
        }
        double s = 0;
        for (int64_t i = 0; i < n; ++i) {
          const T e = std::exp(xr[i] - m);
          yr[i] = e;
          s += static_cast<double>(e);
        }
        const T inv = static_cast<T>(1.0 / s);
        for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
      },
      // dx = y * (g - sum(g * y))
      [](const auto* yr, const auto* gr, auto* dx, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(yr)>>;
        double dot = 0;
        for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(gr[i]) * static_cast<double>(yr[i]);
        const T d = static_cast<T>(dot);
        for (int64_t i = 0; i < n; ++i) dx[i] = yr[i] * (gr[i] - d);
      });
}

inline Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return log_softmax(x.reshape({1}), wrap_dim(dim, 1, "log_softmax")).reshape({});
  return detail::softmax_like(
      "log_softmax", x, dim,
      [](const auto* xr, auto* yr, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(xr)>>;
        const T m = detail::row_max(xr, n);
        if (m == -std::numeric_limits<T>::infinity()) {  // fully masked row: log(0)
          std::fill(yr, yr + n, m);
          return;
        }
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += static_cast<double>(std::exp(xr[i] - m));
        const T ls = static_cast<T>(std::log(s));
        for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) - ls;
      },
      // dx = g - exp(y) * sum(g); 0 for a fully masked row
      [](const auto* yr, const auto* gr, auto* dx, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(yr)>>;
        if (detail::row_all_neg_inf(yr, n)) {
          std::fill(dx, dx + n, T(0));
          return;
        }
        double sg = 0;
        for (int64_t i = 0; i < n; ++i) sg += static_cast<double>(gr[i]);
        const T s = static_cast<T>(sg);
        for (int64_t i = 0; i < n; ++i) dx[i] = gr[i] - std::exp(yr[i]) * s;
      });
}

inline Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  if (x.dim() == 0) return logsumexp(x.reshape({1}), wrap_dim(dim, 1, "logsumexp"), false).reshape({});
  dim = wrap_dim(dim, x.dim(), "logsumexp");
  Tensor xr = detail::rows_last(x, dim);  // (R, n)
  const int64_t n = x.shape()[dim];
  Shape lshape = xr.shape();  // swapped layout with the reduced dim kept as 1
  lshape.back() = 1;
  const int64_t rows = numel_of(lshape);
  Tensor lse = Tensor::empty(lshape, x.dtype());  // (R, 1)
  visit_float(x.dtype(), "logsumexp", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xr.data_ptr<T>();
    T* lp = lse.data_ptr<T>();
    detail::for_each_row(rows, n, [&](int64_t r) { lp[r] = detail::row_logsumexp(xp + r * n, n); });
  });
  Tensor out = detail::rows_restore(lse, dim);  // keepdim shape
  if (!keepdim) out = out.squeeze(dim);
  Tensor xs = xr.detach(), ls = lse.detach();
  Shape kshape = x.shape();
  kshape[dim] = 1;
  return record("logsumexp", out, {x},
                [xs, ls, kshape, dim, n, rows](const Tensor& g, const Node&) -> std::vector<Tensor> {
                  // dx = g * softmax(x) = g * exp(x - lse); 0 where lse = -inf
                  Tensor gr = detail::rows_last(g.reshape(kshape), dim);  // (R, 1)
                  Tensor dx = Tensor::empty(xs.shape(), xs.dtype());
                  visit_float(xs.dtype(), "logsumexp", [&](auto tag) {
                    using T = typename decltype(tag)::type;
                    const T* xp = xs.data_ptr<T>();
                    const T* lp = ls.data_ptr<T>();
                    const T* gp = gr.data_ptr<T>();
                    T* dp = dx.data_ptr<T>();
                    detail::for_each_row(rows, n, [&](int64_t r) {
                      const T l = lp[r], gv = gp[r];
                      const T* xrow = xp + r * n;
                      T* drow = dp + r * n;
                      if (l == -std::numeric_limits<T>::infinity()) {
                        std::fill(drow, drow + n, T(0));
                        return;
                      }
                      for (int64_t i = 0; i < n; ++i) drow[i] = gv * std::exp(xrow[i] - l);
                    });
                  });
                  return {detail::rows_restore(dx, dim)};
                });
}

}  // namespace nq
