#pragma once
// layer_norm and rms_norm over the last dim, each one fused row kernel per
// direction. Forward computes the row statistics in double (detail::lane_sum:
// vectorised), writes y and saves per-row mean/rstd. Backward makes dx row by
// row and reduces dweight/dbias over rows in a fixed number of row blocks whose
// partials are summed in order, so results do not depend on the thread count.
//
// With xhat = (x - mean) * rstd (mean = 0 for rms_norm) and gy = g * w:
//   dx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat))   (rms: no mean(gy))
//   dw = sum_rows(g * xhat),  db = sum_rows(g)
//
// CUDA tensors run kernels/norm.cu: the same formulas with fp32 statistics
// (saved as float32, float64 for a float64 x) and, for mixed precision, a
// bfloat16 x may take float32 weight/bias (y in x's dtype, dweight/dbias in the
// parameters' dtype).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../cpu/parallel.hpp"
#include "../cuda/nn.hpp"
#include "softmax.hpp"  // detail::for_each_row, row_grain, lane_sum

namespace nq {

namespace detail {

inline void check_norm_param(const char* op, const char* what, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  const int64_t C = x.size(-1);
  NQ_CHECK(p.dim() == 1 && p.size(0) == C, op, what, " has shape ", shape_str(p.shape()), ", expected [", C,
           "] to match the last dim of input ", shape_str(x.shape()));
  NQ_CHECK(p.device() == x.device(), op, what, " is on ", p.device().str(), " but input is on ",
           x.device().str());
  // On CUDA a float32 weight/bias may scale a lower-precision x (mixed precision).
  const bool mixed = x.device().is_cuda() && p.dtype() == kFloat32;
  NQ_CHECK(p.dtype() == x.dtype() || mixed, op, what, " dtype ", dtype_name(p.dtype()),
           " differs from input dtype ", dtype_name(x.dtype()));
}

// Row blocks for the dweight/dbias reduction: set by the sizes only.
inline int64_t norm_blocks(int64_t rows, int64_t C) {
  const int64_t g = row_grain(C);
  return std::clamp<int64_t>((rows + g - 1) / g, 1, 64);
}

// y = xhat * w + b per row of x (R, C); w, b may be null. center = layer norm.
template <typename T>
void norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t C,
                  double eps, bool center) {
  for_each_row(rows, C, [&](int64_t r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    const double n = static_cast<double>(C);
    const double mu = center ? lane_sum(C, [&](int64_t i) { return static_cast<double>(xr[i]); }) / n : 0.0;
    auto dev2 = [&](int64_t i) {
      const double d = static_cast<double>(xr[i]) - mu;
      return d * d;
    };
    const double var = lane_sum(C, dev2) / n;  // two passes: no cancellation from E[x^2] - E[x]^2
    const double rs = 1.0 / std::sqrt(var + eps);
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
    const T m = static_cast<T>(mu), s = static_cast<T>(rs);
    for (int64_t i = 0; i < C; ++i) {
      T v = (xr[i] - m) * s;
      if (w) v *= w[i];
      if (b) v += b[i];
      yr[i] = v;
    }
  });
}

// dx of one row x (C): gy(i) = g[i] * w[i] (or g[i] without weight) comes in as
// a functor so that the weight test stays outside the vectorised loops.
template <typename T, typename Gy>
void norm_dx_row(const T* xr, T* dr, T m, T s, int64_t C, bool center, Gy gy) {
  const double invC = 1.0 / static_cast<double>(C);
  const double sgx = lane_sum(C, [&](int64_t i) { return static_cast<double>(gy(i) * ((xr[i] - m) * s)); });
  const double sg = center ? lane_sum(C, [&](int64_t i) { return static_cast<double>(gy(i)); }) : 0.0;
  const T a = static_cast<T>(sgx * invC), c = static_cast<T>(sg * invC);  // mean(gy * xhat), mean(gy)
  for (int64_t i = 0; i < C; ++i) dr[i] = s * (gy(i) - c - ((xr[i] - m) * s) * a);
}

// Fills dx (may be null), dw, db (null when not needed) from g (R, C).
template <typename T>
void norm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* g, T* dx, T* dw, T* db,
                   int64_t rows, int64_t C, bool center) {
  const int64_t nb = norm_blocks(rows, C);
  std::vector<double> pw(dw ? nb * C : 0, 0.0), pb(db ? nb * C : 0, 0.0);  // per-block partials
  cpu::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      double* aw = dw ? pw.data() + blk * C : nullptr;
      double* ab = db ? pb.data() + blk * C : nullptr;
      for (int64_t r = rows * blk / nb, r1 = rows * (blk + 1) / nb; r < r1; ++r) {
        const T* xr = x + r * C;
        const T* gr = g + r * C;
        const T m = center ? mean[r] : T(0), s = rstd[r];
        if (dx && w)
          norm_dx_row(xr, dx + r * C, m, s, C, center, [&](int64_t i) { return gr[i] * w[i]; });
        else if (dx)
          norm_dx_row(xr, dx + r * C, m, s, C, center, [&](int64_t i) { return gr[i]; });
        if (aw)
          for (int64_t i = 0; i < C; ++i) aw[i] += static_cast<double>(gr[i] * ((xr[i] - m) * s));
        if (ab)
          for (int64_t i = 0; i < C; ++i) ab[i] += static_cast<double>(gr[i]);
      }
    }
  });
  auto finish = [&](const std::vector<double>& p, T* out) {
    for (int64_t i = 0; i < C; ++i) {
      double acc = 0;
      for (int64_t blk = 0; blk < nb; ++blk) acc += p[blk * C + i];
      out[i] = static_cast<T>(acc);
    }
  };
  if (dw) finish(pw, dw);
  if (db) finish(pb, db);
}

#if NEXTQUILL_WITH_CUDA
// The CUDA body of norm_op (arguments already checked): same graph, CUDA kernels.
inline Tensor norm_op_cuda(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           double eps, bool center) {
  Tensor xs = x.detach().contiguous();  // (..., C)
  Tensor ws = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor bs = bias.defined() ? bias.detach().contiguous() : Tensor();
  cuda::NormOut f = cuda::norm_forward(xs, ws, bs, eps, center);
  // dtype of weight/bias (they agree), x's when both are absent
  const DType pd = ws.defined() ? ws.dtype() : bs.defined() ? bs.dtype() : x.dtype();
  std::vector<Tensor> inputs{x, weight};
  if (center) inputs.push_back(bias);
  return record(op, f.y, inputs,
                [xs, ws, mean = f.mean, rstd = f.rstd, center, pd](const Tensor& g,
                                                                   const Node& n) -> std::vector<Tensor> {
                  cuda::NormGrads d = cuda::norm_backward(xs, ws, mean, rstd, g.contiguous(), n.needs(0),
                                                          n.needs(1), center && n.needs(2), center, pd);
                  if (center) return {d.dx, d.dweight, d.dbias};
                  return {d.dx, d.dweight};
                });
}
#endif

// Shared op body: center = layer_norm (mean subtracted, bias allowed).
inline Tensor norm_op(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                      bool center) {
  NQ_CHECK(x.dim() >= 1 && x.size(-1) > 0, op, "input ", x.brief(), " needs a non-empty last dim");
  NQ_CHECK(eps >= 0, op, "eps must be >= 0, got ", eps);
  check_norm_param(op, "weight", weight, x);
  check_norm_param(op, "bias", bias, x);
  NQ_CHECK(!weight.defined() || !bias.defined() || weight.dtype() == bias.dtype(), op, "weight dtype ",
           dtype_name(weight.dtype()), " differs from bias dtype ", dtype_name(bias.dtype()));
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) return norm_op_cuda(op, x, weight, bias, eps, center);
#endif
  const int64_t C = x.size(-1), rows = x.numel() / C;
  Tensor xs = x.detach().contiguous();  // (R, C)
  Tensor ws = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor bs = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty({rows}, x.dtype()), rstd = Tensor::empty({rows}, x.dtype());
  visit_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    norm_forward<T>(xs.data_ptr<T>(), ws.defined() ? ws.data_ptr<T>() : nullptr,
                    bs.defined() ? bs.data_ptr<T>() : nullptr, y.data_ptr<T>(), mean.data_ptr<T>(),
                    rstd.data_ptr<T>(), rows, C, eps, center);
  });
  std::vector<Tensor> inputs{x, weight};
  if (center) inputs.push_back(bias);
  return record(
      op, y, inputs,
      [xs, ws, mean, rstd, rows, C, center, op](const Tensor& g, const Node& n) -> std::vector<Tensor> {
        Tensor gc = g.contiguous();
        Tensor dx, dw, db;
        if (n.needs(0)) dx = Tensor::empty(xs.shape(), xs.dtype());
        if (n.needs(1)) dw = Tensor::empty({C}, xs.dtype());
        if (center && n.needs(2)) db = Tensor::empty({C}, xs.dtype());
        visit_float(xs.dtype(), op, [&](auto tag) {
          using T = typename decltype(tag)::type;
          norm_backward<T>(xs.data_ptr<T>(), ws.defined() ? ws.data_ptr<T>() : nullptr, mean.data_ptr<T>(),
                           rstd.data_ptr<T>(), gc.data_ptr<T>(), dx.defined() ? dx.data_ptr<T>() : nullptr,
                           dw.defined() ? dw.data_ptr<T>() : nullptr,
                           db.defined() ? db.data_ptr<T>() : nullptr, rows, C, center);
        });
        if (center) return {dx, dw, db};
        return {dx, dw};
      });
}

}  // namespace detail

// x (..., C), weight/bias (C) or undefined; biased variance, as PyTorch.
inline Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return detail::norm_op("layer_norm", x, weight, bias, eps, true);
}

// x (..., C), weight (C) or undefined: x * rsqrt(mean(x^2) + eps) * weight.
inline Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return detail::norm_op("rms_norm", x, weight, Tensor(), eps, false);
}

}  // namespace nq
