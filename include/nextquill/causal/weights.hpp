#pragma once
// Token weights from the data-side effect. They are constants for autograd
// (computed without gradient), 0 at ignored rows. The rules run on the host
// (the comparison DCE > delta in double, exactly as the fixtures define it):
// on the GPU that is one copy of the N target values each way per step, never
// per token; the weights come back on the device of the inputs. The JS rule
// copies the (N,V) estimator logits to the host.
#include <cmath>
#include <vector>

#include "../ops/softmax.hpp"
#include "effects.hpp"
#include "options.hpp"

namespace nq::causal {

// Threshold rule: lambda where DCE > delta (strict), else epsilon.
inline Tensor threshold_weights(const Tensor& dce, const Tensor& y, double delta, double lambda,
                                double epsilon, int64_t ignore_index = -100) {
  NoGradGuard ng;
  auto d = dce.cpu().to_vector<double>();
  auto t = y.cpu().contiguous().to_vector<int64_t>();
  std::vector<double> w(d.size());
  for (size_t k = 0; k < d.size(); ++k) w[k] = t[k] == ignore_index ? 0.0 : (d[k] > delta ? lambda : epsilon);
  return from_vector(w, dce.shape(), dce.dtype()).to(dce.device());
}

// Jensen-Shannon rule: KL(p || m) + KL(q || m), p = softmax(ze_h), q =
// softmax(ze_0), m = (p + q) / 2, over the whole vocabulary (in double).
inline Tensor js_weights(const Tensor& ze_h, const Tensor& ze_0, const Tensor& y,
                         int64_t ignore_index = -100) {
  NoGradGuard ng;
  Tensor p = softmax(ze_h.detach().cpu().to(kFloat64), -1).contiguous();
  Tensor q = softmax(ze_0.detach().cpu().to(kFloat64), -1).contiguous();
  const int64_t N = p.size(0), V = p.size(1);
  const double *pp = p.data_ptr<double>(), *qp = q.data_ptr<double>();
  auto t = y.cpu().contiguous().to_vector<int64_t>();
  std::vector<double> w(N, 0.0);
  for (int64_t k = 0; k < N; ++k) {
    if (t[k] == ignore_index) continue;
    double s = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double a = pp[k * V + v], b = qp[k * V + v], m = 0.5 * (a + b);
      if (a > 0) s += a * (std::log(a) - std::log(m));
      if (b > 0) s += b * (std::log(b) - std::log(m));
    }
    w[k] = s;
  }
  return from_vector(w, {N}, ze_h.dtype()).to(ze_h.device());
}

// 1 at valid rows, 0 at ignored ones; on y's device.
inline Tensor uniform_weights(const Tensor& y, DType dt, int64_t ignore_index = -100) {
  auto t = y.cpu().contiguous().to_vector<int64_t>();
  std::vector<double> w(t.size());
  for (size_t k = 0; k < t.size(); ++k) w[k] = t[k] == ignore_index ? 0.0 : 1.0;
  return from_vector(w, y.shape(), dt).to(y.device());
}

}  // namespace nq::causal
