#pragma once
// Helpers for the GPU tests: make inputs on the CPU, run the op on both
// backends, compare. Tolerances are stated per call (fp32 kernels reorder sums
// and use fused multiply-adds, bf16 keeps 8 mantissa bits).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <nextquill/nextquill.hpp>
#include <optional>
#include <string>
#include <utility>
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

// Sets (a value) or clears (nullptr) environment variables for a scope and
// restores them afterwards: kernel selection switches such as NQ_ATTN_IMPL.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value)
        ::setenv(name, value, 1);
      else
        ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, old] : saved_) {
      if (old)
        ::setenv(name.c_str(), old->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// An attention test shape; `mask` pads batch 0 on the left, batch 1 on the
// right and masks batch 2 entirely (needs B >= 3).
struct AttnCase {
  int64_t B, H, T, S, D;
  bool causal;
  bool mask;
  std::optional<double> scale;
};

// The (B, S) key-padding mask that AttnCase::mask describes (1 = real key).
inline nq::Tensor attn_padding_mask(const AttnCase& c) {
  std::vector<float> keep(static_cast<size_t>(c.B * c.S), 1.f);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.S; ++j) {
      float& m = keep[static_cast<size_t>(b * c.S + j)];
      if (b == 0) m = j >= c.S / 3 ? 1.f : 0.f;
      if (b == 1) m = j < c.S - c.S / 4 ? 1.f : 0.f;
      if (b == 2) m = 0.f;
    }
  return nq::from_vector<float>(keep, {c.B, c.S});
}

}  // namespace nqgpu
