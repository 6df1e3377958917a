#pragma once
// Adam with decoupled weight decay, exactly torch.optim.AdamW (amsgrad and
// maximize are not offered). For a parameter p with gradient g at its t-th
// update (t counts this parameter's updates, starting at 1):
//
//   p = p * (1 - lr * weight_decay)
//   m = m + (1 - beta1) * (g - m)                 (= beta1 m + (1 - beta1) g)
//   v = beta2 * v + (1 - beta2) * g * g
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p = p - lr / (1 - beta1^t) * m / denom
//
// lr and weight_decay are per group (ParamGroup); the betas and eps are
// optimizer-wide. The moments "exp_avg.<param name>" and
// "exp_avg_sq.<param name>" are contiguous buffers of the parameter's shape
// and dtype, allocated (zeroed) at the parameter's first update and reused
// after that. Element arithmetic is in the parameter's dtype, scalars are
// computed in double, as in PyTorch. Parameters on CUDA are updated by one
// fused kernel each (kernels/optim.cu), moments on the parameter's device.
#include <algorithm>
#include <cmath>

#include "../config.hpp"  // before Eigen: sets EIGEN_DONT_PARALLELIZE
#include "optimizer.hpp"

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace nq::optim {

namespace detail {
// x[i] = sqrt(x[i]), correctly rounded. std::sqrt loops do not vectorise
// without -fno-math-errno, and Eigen's sqrt is approximate under
// EIGEN_FAST_MATH, hence the intrinsics (same IEEE result as std::sqrt).
inline void sqrt_inplace(float* x, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_sqrt_ps(_mm512_loadu_ps(x + i)));
#elif defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#elif defined(__SSE2__)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}
inline void sqrt_inplace(double* x, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 8 <= n; i += 8) _mm512_storeu_pd(x + i, _mm512_sqrt_pd(_mm512_loadu_pd(x + i)));
#elif defined(__AVX__)
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, _mm256_sqrt_pd(_mm256_loadu_pd(x + i)));
#elif defined(__SSE2__)
  for (; i + 2 <= n; i += 2) _mm_storeu_pd(x + i, _mm_sqrt_pd(_mm_loadu_pd(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}
}  // namespace detail

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // Used for the groups the plain-list constructors build; groups passed in
  // explicitly (e.g. from make_param_groups) keep their own.
  double weight_decay = 0.01;
};

class AdamW : public Optimizer {
 public:
  AdamW(const std::vector<Tensor>& params, AdamWOptions opts = {})
      : AdamW(single_group(params, opts.lr, opts.weight_decay), opts) {}
  AdamW(NamedParams params, AdamWOptions opts = {})
      : AdamW(single_group(std::move(params), opts.lr, opts.weight_decay), opts) {}
  // Groups keep their lr (NaN: opts.lr) and weight_decay.
  AdamW(std::vector<ParamGroup> groups, AdamWOptions opts = {})
      : Optimizer("AdamW", std::move(groups), opts.lr, {"exp_avg", "exp_avg_sq"}), opts_(opts) {
    check(opts_, "AdamW");
  }

  const AdamWOptions& options() const { return opts_; }

  void step() override {
    ++step_count_;
    for_each_update([&](ParamGroup& group, const std::string& pname, Tensor& p, Tensor& g) {
      ParamState& st = state_for(pname, p);
      const int64_t t = ++st.step;
      const double lr = group.lr, wd = group.weight_decay;
      const double bc1 = 1 - std::pow(opts_.beta1, double(t));
      const double bc2 = 1 - std::pow(opts_.beta2, double(t));
      const double step_size = lr / bc1;
      const double bc2_sqrt = std::sqrt(bc2);
#if NEXTQUILL_WITH_CUDA
      if (p.device().is_cuda()) {  // one fused kernel, the same arithmetic
        cuda::AdamWScalars s;
        s.decay = 1 - lr * wd;
        s.w1 = 1 - opts_.beta1;
        s.b1 = opts_.beta1;
        s.b2 = opts_.beta2;
        s.w2 = 1 - opts_.beta2;
        s.neg_step = -step_size;
        s.c2 = bc2_sqrt;
        s.eps = opts_.eps;
        s.has_decay = wd != 0;
        // lerp_low is decided on the value in the parameter's dtype, as below
        s.lerp_low = p.dtype() == kFloat64 ? (1 - opts_.beta1) < 0.5 : float(1 - opts_.beta1) < 0.5f;
        cuda::adamw_step(p, g, st.buffers[0], st.buffers[1], s);
        return;
      }
#endif
      visit_float(p.dtype(), "AdamW", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* pp = p.data_ptr<T>();
        const T* gp = g.data_ptr<T>();
        T* mp = st.buffers[0].data_ptr<T>();
        T* vp = st.buffers[1].data_ptr<T>();
        const T decay = T(1 - lr * wd), w1 = T(1 - opts_.beta1), b1 = T(opts_.beta1), b2 = T(opts_.beta2),
                w2 = T(1 - opts_.beta2), neg_step = T(-step_size), c2 = T(bc2_sqrt), eps = T(opts_.eps);
        // m += w1 * (g - m) is PyTorch's lerp for weights below 1/2; above,
        // it computes g - (g - m) * b1. Per L1-sized block: moments, exact
        // square roots, parameters; each loop vectorises.
        const bool lerp_low = w1 < T(0.5);
        auto run = [&](auto has_decay, auto low) {
          cpu::parallel_for(0, p.numel(), detail::kUpdateGrain, [&](int64_t b, int64_t e) {
            alignas(64) T root[detail::kBlock];
            for (int64_t i0 = b; i0 < e; i0 += detail::kBlock) {
              const int64_t n = std::min(detail::kBlock, e - i0);
              T* P = pp + i0;
              T* M = mp + i0;
              T* V = vp + i0;
              const T* G = gp + i0;
              for (int64_t i = 0; i < n; ++i) {
                const T gi = G[i];
                if constexpr (decltype(low)::value)
                  M[i] = M[i] + w1 * (gi - M[i]);
                else
                  M[i] = gi - (gi - M[i]) * b1;
                root[i] = V[i] = V[i] * b2 + w2 * gi * gi;
              }
              detail::sqrt_inplace(root, n);
              for (int64_t i = 0; i < n; ++i) {
                T x = P[i];
                if constexpr (decltype(has_decay)::value) x = x * decay;
                P[i] = x + neg_step * M[i] / (root[i] / c2 + eps);
              }
            }
          });
        };
        auto with_lerp = [&](auto has_decay) {
          if (lerp_low)
            run(has_decay, std::true_type{});
          else
            run(has_decay, std::false_type{});
        };
        if (wd != 0)
          with_lerp(std::true_type{});
        else
          with_lerp(std::false_type{});
      });
    });
  }

 protected:
  void save_options(std::map<std::string, std::string>& meta) const override {
    meta["beta1"] = detail::format_double(opts_.beta1);
    meta["beta2"] = detail::format_double(opts_.beta2);
    meta["eps"] = detail::format_double(opts_.eps);
  }
  void load_options(const std::map<std::string, std::string>& meta) override {
    const char* op = "AdamW.load_state";
    AdamWOptions o = opts_;
    o.beta1 = detail::meta_double(meta, "beta1", op);
    o.beta2 = detail::meta_double(meta, "beta2", op);
    o.eps = detail::meta_double(meta, "eps", op);
    check(o, op);
    opts_ = o;
  }

 private:
  static void check(const AdamWOptions& o, const char* op) {
    NQ_CHECK(o.beta1 >= 0 && o.beta1 < 1, op, "beta1 must be in [0, 1), got ", o.beta1);
    NQ_CHECK(o.beta2 >= 0 && o.beta2 < 1, op, "beta2 must be in [0, 1), got ", o.beta2);
    NQ_CHECK(std::isfinite(o.eps) && o.eps >= 0, op, "invalid eps ", o.eps);
  }

  AdamWOptions opts_;
};

}  // namespace nq::optim
