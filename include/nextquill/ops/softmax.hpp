#pragma once
// softmax / log_softmax / logsumexp along one dim. Each is one fused row
// kernel: the reduced dim is swapped last and made contiguous, so a row is a
// dense run of n values, and rows run in parallel. Every kernel subtracts the
// row max before exp(), so nothing overflows; sums accumulate in double.
// The row loops are vectorised: max and exp by Eigen array maps, sums by
// lane_sum (16 interleaved double accumulators the compiler vectorises).
// Summation order depends only on n, never on the thread count.
//
// CUDA tensors run kernels/softmax.cu (one block per row, fp32 math, same
// conventions); another dim is swapped last and back, as here.
//
// Fully masked rows (all -inf): softmax gives zeros rather than NaN,
// log_softmax gives -inf, logsumexp gives -inf, and the gradient of such a row
// is 0 for all three. (+inf or NaN inputs propagate NaN, as in PyTorch.)
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <type_traits>

#include "../config.hpp"  // before Eigen: sets EIGEN_DONT_PARALLELIZE
#include "../cpu/parallel.hpp"
#include "../cuda/nn.hpp"
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

// One dense row as an Eigen array (vectorised element-wise ops and reductions).
template <typename T>
using RowArray = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using RowArrayMut = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

// Sum of f(i) over [0, n) in double. A single running sum is one serial
// dependency chain; 16 interleaved accumulators let the compiler vectorise the
// loop (~10x faster) and are at least as accurate. The order depends only on n.
template <typename F>
double lane_sum(int64_t n, F&& f) {
  constexpr int64_t L = 16;
  double acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int64_t k = 0; k < L; ++k) acc[k] += f(i + k);
  double s = 0;
  for (; i < n; ++i) s += f(i);
  for (double a : acc) s += a;
  return s;
}

// Max of one row (-inf when empty); a NaN entry makes it NaN, so NaN propagates.
// Eigen's vectorised maxCoeff may skip NaN; a finite result is still safe for
// the exp(x - max) kernels (the NaN entry makes the sum, hence every output,
// NaN), so only a non-finite result is redone serially to let NaN win exactly.
template <typename T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  if (n > 0) m = RowArray<T>(x, n).maxCoeff();
  if (std::isfinite(m)) return m;
  for (int64_t i = 0; i < n; ++i) m = (x[i] > m || x[i] != x[i]) ? x[i] : m;
  return m;
}

// y = exp(x - shift), vectorised. Eigen 3.4's double exp gives ~5e-309 rather
// than 0 below about -708 (so also for masked -inf entries); results below the
// smallest normal number are flushed to 0, as its float exp already does.
// NaN stays NaN. y may alias x.
template <typename T>
void row_exp(const T* x, T shift, T* y, int64_t n) {
  RowArrayMut<T>(y, n) = (RowArray<T>(x, n) - shift).exp();
  constexpr T tiny = std::numeric_limits<T>::min();
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] < tiny ? T(0) : y[i];
}

// sum(exp(x - m)) of one row in double, without a row-sized buffer: exp goes
// through a stack block of kExpBlock values at a time.
inline constexpr int64_t kExpBlock = 1024;
template <typename T>
double row_sum_exp(const T* x, T m, int64_t n) {
  T buf[kExpBlock];
  double s = 0;
  for (int64_t i = 0; i < n; i += kExpBlock) {
    const int64_t len = std::min(kExpBlock, n - i);
    RowArrayMut<T>(buf, len) = (RowArray<T>(x + i, len) - m).exp();
    s += lane_sum(len, [&](int64_t j) { return static_cast<double>(buf[j]); });
  }
  return s;
}

// log(sum(exp(x))) of one row; -inf for an empty or all -inf row, +inf when
// some entry is +inf.
template <typename T>
T row_logsumexp(const T* x, int64_t n) {
  const T m = row_max(x, n);
  if (std::isinf(m)) return m;
  return static_cast<T>(static_cast<double>(m) + std::log(row_sum_exp(x, m, n)));
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
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) {
    const bool log = std::string_view(op) == "log_softmax";
    Tensor yc = cuda::softmax_forward(xr, log);  // (R, n)
    Tensor yd = yc.detach();
    return record(op, rows_restore(yc, dim), {x}, [yd, dim, log](const Tensor& g, const Node&) {
      return std::vector<Tensor>{rows_restore(cuda::softmax_backward(yd, rows_last(g, dim), log), dim)};
    });
  }
#endif
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
      // y = exp(x - max) / sum(exp(x - max))
      [](const auto* xr, auto* yr, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(xr)>>;
        const T m = detail::row_max(xr, n);
        if (m == -std::numeric_limits<T>::infinity()) {  // fully masked row: zeros, not NaN
          std::fill(yr, yr + n, T(0));
          return;
        }
        detail::row_exp(xr, m, yr, n);
        const double s = detail::lane_sum(n, [&](int64_t i) { return static_cast<double>(yr[i]); });
        detail::RowArrayMut<T>(yr, n) *= static_cast<T>(1.0 / s);
      },
      // dx = y * (g - sum(g * y))
      [](const auto* yr, const auto* gr, auto* dx, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(yr)>>;
        const T d = static_cast<T>(detail::lane_sum(
            n, [&](int64_t i) { return static_cast<double>(gr[i]) * static_cast<double>(yr[i]); }));
        detail::RowArrayMut<T>(dx, n) = detail::RowArray<T>(yr, n) * (detail::RowArray<T>(gr, n) - d);
      });
}

inline Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return log_softmax(x.reshape({1}), wrap_dim(dim, 1, "log_softmax")).reshape({});
  return detail::softmax_like(
      "log_softmax", x, dim,
      // y = (x - max) - log(sum(exp(x - max)))
      [](const auto* xr, auto* yr, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(xr)>>;
        const T m = detail::row_max(xr, n);
        if (m == -std::numeric_limits<T>::infinity()) {  // fully masked row: log(0)
          std::fill(yr, yr + n, m);
          return;
        }
        const T ls = static_cast<T>(std::log(detail::row_sum_exp(xr, m, n)));
        detail::RowArrayMut<T>(yr, n) = (detail::RowArray<T>(xr, n) - m) - ls;
      },
      // dx = g - exp(y) * sum(g); 0 for a fully masked row
      [](const auto* yr, const auto* gr, auto* dx, int64_t n) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(yr)>>;
        if (detail::row_all_neg_inf(yr, n)) {
          std::fill(dx, dx + n, T(0));
          return;
        }
        const T s =
            static_cast<T>(detail::lane_sum(n, [&](int64_t i) { return static_cast<double>(gr[i]); }));
        detail::row_exp(yr, T(0), dx, n);  // dx = exp(y) first
        detail::RowArrayMut<T>(dx, n) = detail::RowArray<T>(gr, n) - detail::RowArray<T>(dx, n) * s;
      });
}

inline Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  if (x.dim() == 0) return logsumexp(x.reshape({1}), wrap_dim(dim, 1, "logsumexp"), false).reshape({});
  dim = wrap_dim(dim, x.dim(), "logsumexp");
  Tensor xr = detail::rows_last(x, dim);  // (R, n)
  const int64_t n = x.shape()[dim];
  Shape lshape = xr.shape();  // swapped layout with the reduced dim kept as 1
  lshape.back() = 1;
  Shape kshape = x.shape();
  kshape[dim] = 1;
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) {
    Tensor lc = cuda::logsumexp_forward(xr);  // (R, 1)
    Tensor oc = detail::rows_restore(lc, dim);
    if (!keepdim) oc = oc.squeeze(dim);
    Tensor xd = xr.detach(), ld = lc.detach();
    return record("logsumexp", oc, {x}, [xd, ld, kshape, dim](const Tensor& g, const Node&) {
      Tensor gr = detail::rows_last(g.reshape(kshape), dim);  // (R, 1)
      return std::vector<Tensor>{detail::rows_restore(cuda::logsumexp_backward(xd, ld, gr), dim)};
    });
  }
#endif
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
                      detail::row_exp(xrow, l, drow, n);
                      detail::RowArrayMut<T>(drow, n) *= gv;
                    });
                  });
                  return {detail::rows_restore(dx, dim)};
                });
}

}  // namespace nq
