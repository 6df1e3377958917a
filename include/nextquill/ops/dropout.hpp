#pragma once
// Inverted dropout: each element is kept with probability 1 - p and scaled by
// 1 / (1 - p), so evaluation needs no rescaling. The mask takes one uniform
// draw per element in row-major order of x's logical shape, drawn serially,
// so a seeded Generator reproduces the same mask regardless of x's strides or
// the thread count. The scaled mask (0 or 1/(1-p)) is saved for backward.
#include <algorithm>

#include "../cpu/map.hpp"
#include "../cpu/parallel.hpp"
#include "../cuda/core.hpp"
#include "matmul.hpp"

namespace nq {

inline Tensor dropout(const Tensor& x, double p, bool train, Generator* gen) {
  NQ_CHECK(p >= 0.0 && p < 1.0, "dropout", "p must be in [0, 1), got ", p);
  if (!train || p == 0.0) return x;
  Generator& rng = gen ? *gen : default_generator();
#if NEXTQUILL_WITH_CUDA
  // CUDA: a counter-based mask, element i kept when hash(key, i) >= p, with
  // the key one draw from the generator (so seeded runs repeat, and each call
  // differs). CUDA masks therefore differ from CPU masks for the same seed;
  // the keep rate and scaling are the same.
  if (x.device().is_cuda()) {
    Tensor mask = cuda::dropout_mask(x.shape(), x.options(), p, rng.next_u64());
    Tensor out;
    {
      NoGradGuard ng;
      out = mul(x, mask);
    }
    Tensor ms = mask.detach();
    return record("dropout", out, {x},
                  [ms](const Tensor& g, const Node&) -> std::vector<Tensor> { return {mul(g, ms)}; });
  }
#endif
  cpu::require_cpu(x, "dropout");
  Tensor xs = x.detach().contiguous();
  Tensor mask = Tensor::empty(x.shape(), x.dtype());
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  visit_float(x.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T scale = static_cast<T>(1.0 / (1.0 - p));
    const T* xp = xs.data_ptr<T>();
    T* mp = mask.data_ptr<T>();
    T* op = out.data_ptr<T>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i) {  // serial: the draw order defines the mask
      mp[i] = rng.uniform() < p ? T(0) : scale;
      op[i] = xp[i] * mp[i];
    }
  });
  Tensor ms = mask.detach();
  return record("dropout", out, {x}, [ms](const Tensor& g, const Node&) -> std::vector<Tensor> {
    // dx = g * mask / (1 - p), the division already folded into the mask
    cpu::require_cpu(g, "dropout");
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(ms.shape(), ms.dtype());
    visit_float(ms.dtype(), "dropout", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* gp = gc.data_ptr<T>();
      const T* mp = ms.data_ptr<T>();
      T* dp = dx.data_ptr<T>();
      cpu::parallel_for(0, ms.numel(), 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) dp[i] = gp[i] * mp[i];
      });
    });
    return {dx};
  });
}

}  // namespace nq
