#pragma once
// Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_ with the L2 norm.
//
//   grad_norm(params)                the L2 norm of all defined gradients taken
//                                    together (as one concatenated vector)
//   clip_grad_norm(params, max_norm) norm = grad_norm(params);
//                                    coef = max_norm / (norm + 1e-6);
//                                    if coef < 1, every gradient *= coef;
//                                    returns norm (the norm before clipping)
//
// Parameters whose .grad() is undefined are skipped. Squares are summed in
// double precision (PyTorch sums in the gradient's dtype), in fixed blocks
// whose partial sums are added in order, so the result does not depend on the
// thread count. Unlike PyTorch (which would multiply every gradient by NaN or
// 0), a NaN or infinite norm is returned as is and the gradients are left
// untouched: the caller decides (typically: skip the step). CUDA gradients are
// reduced on the device (float64, fixed order) with one host read per device.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/tensor.hpp"
#include "../cpu/parallel.hpp"
#include "../cuda/optim.hpp"
#include "../ops/data.hpp"
#include "../ops/view.hpp"

namespace nq::optim {

namespace detail {

template <typename T>
double sum_squares_serial(const T* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent chains, for throughput
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += double(x[i + j]) * double(x[i + j]);
  for (; i < n; ++i) acc[0] += double(x[i]) * double(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Sum of squares of a contiguous array: blocks of kBlock elements in
// parallel, partial sums added in block order (deterministic).
template <typename T>
double sum_squares(const T* x, int64_t n) {
  constexpr int64_t kBlock = int64_t(1) << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  if (blocks <= 1) return sum_squares_serial(x, n);
  std::vector<double> part(size_t(blocks), 0.0);
  cpu::parallel_for(0, blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k)
      part[size_t(k)] = sum_squares_serial(x + k * kBlock, std::min(kBlock, n - k * kBlock));
  });
  double s = 0;
  for (double p : part) s += p;
  return s;
}

inline double grad_sum_squares(const Tensor& g, const char* op) {
  NQ_CHECK(g.device().is_cpu(), op, "gradient ", g.brief(), " is on ", g.device(), " (CPU path)");
  Tensor c = g.is_contiguous() ? g : g.contiguous();
  return visit_float(c.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return sum_squares(c.data_ptr<T>(), c.numel());
  });
}

// Sum of squares of all defined gradients: CPU gradients one by one (in
// order), CUDA gradients per device in one device-side reduction with a single
// host read (kernels/optim.cu).
inline double grads_sum_squares(const std::vector<Tensor>& params, const char* op) {
  double s = 0;
#if NEXTQUILL_WITH_CUDA
  std::vector<std::vector<Tensor>> on_cuda;  // by device index
#endif
  for (const Tensor& p : params) {
    NQ_CHECK(p.defined(), op, "undefined parameter tensor");
    Tensor g = p.grad();
    if (!g.defined()) continue;
#if NEXTQUILL_WITH_CUDA
    if (g.device().is_cuda()) {
      const size_t d = static_cast<size_t>(g.device().index);
      if (on_cuda.size() <= d) on_cuda.resize(d + 1);
      on_cuda[d].push_back(g.is_contiguous() ? g : g.contiguous());
      continue;
    }
#endif
    s += grad_sum_squares(g, op);
  }
#if NEXTQUILL_WITH_CUDA
  for (const auto& list : on_cuda)
    if (!list.empty()) s += cuda::sum_squares(list);
#endif
  return s;
}

}  // namespace detail

// L2 norm of all defined gradients of `params` together (0 when none).
inline double grad_norm(const std::vector<Tensor>& params) {
  return std::sqrt(detail::grads_sum_squares(params, "grad_norm"));
}

// Scales the gradients so that their joint L2 norm is at most max_norm (see
// the top of this file); returns the norm before clipping.
inline double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NQ_CHECK(max_norm >= 0, "clip_grad_norm", "max_norm must be non-negative, got ", max_norm);
  const double norm = std::sqrt(detail::grads_sum_squares(params, "clip_grad_norm"));
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (!(coef < 1.0)) return norm;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor c = g.is_contiguous() ? g : g.contiguous();
#if NEXTQUILL_WITH_CUDA
    if (c.device().is_cuda()) {
      cuda::scale_(c, coef);  // in place on the device, x * T(coef)
      if (!g.is_contiguous()) {
        NoGradGuard ng;
        g.copy_(c);
      }
      continue;
    }
#endif
    visit_float(c.dtype(), "clip_grad_norm", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* x = c.data_ptr<T>();
      const T k = T(coef);
      cpu::parallel_for(0, c.numel(), int64_t(1) << 15, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) x[i] = x[i] * k;
      });
    });
    if (!g.is_contiguous()) {
      NoGradGuard ng;
      g.copy_(c);
    }
  }
  return norm;
}

}  // namespace nq::optim
