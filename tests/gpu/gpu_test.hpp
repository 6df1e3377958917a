#pragma once
// Helpers for the GPU tests: make inputs on the CPU, run the op on both
// backends, compare. Tolerances are stated per call (fp32 kernels reorder sums
// and use fused multiply-adds, bf16 keeps 8 mantissa bits).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

namespace nqgpu {

inline nq::Device gpu() { return nq::Device::cuda(0); }

// Each element must be equal, or |a-b| / (atol + rtol*|b|) <= 1 (rtol = atol
// = 0 asks for bit equality); the report names the worst element and both values.
inline void expect_close(const nq::Tensor& got, const nq::Tensor& want, double rtol, double atol,
                         const std::string& what) {
  INFO(what);
  REQUIRE(got.defined());
  REQUIRE(want.defined());
  REQUIRE_MESSAGE(got.shape() == want.shape(), "shape ", nq::shape_str(got.shape()), " vs ",
                  nq::shape_str(want.shape()));
  std::vector<double> g = got.to(nq::Device::cpu()).to_vector<double>();
  std::vector<double> w = want.to(nq::Device::cpu()).to_vector<double>();
  size_t bad = g.size();
  double worst = 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i]) && std::isnan(g[i])) continue;
    if (g[i] == w[i]) continue;  // exact (also atol = rtol = 0, and equal infinities)
    double r = std::abs(g[i] - w[i]) / (atol + rtol * std::abs(w[i]));
    if (!(r <= 1.0) && (bad == g.size() || r > worst)) {
      bad = i;
      worst = r;
    }
  }
  if (bad != g.size())
    FAIL_CHECK(what, ": element ", bad, " got ", g[bad], " want ", w[bad], " (rtol ", rtol, ", atol ", atol,
               ", ", worst, "x over)");
}

}  // namespace nqgpu
