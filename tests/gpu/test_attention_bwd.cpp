// The bf16 attention backward implementations against each other:
// NQ_ATTN_BWD=fa2 (FlashAttention-2 style mma.sync backward,
// kernels/attention_fa2_bwd.cuh) and NQ_ATTN_BWD=wmma (kernels/attention_tc.cuh),
// selected per call through the environment. The forward runs once (launcher),
// then the backward launcher runs under each setting on the same out / lse;
// dq, dk, dv are compared and checked for NaN. One case also goes through the
// op and autograd (fresh leaves per setting) to cover the dispatch.
// Shapes: T = S in {1, 63, 64, 65, 200, 1024}, T < S (7/130, 65/200), causal
// and not, a key padding mask with a fully masked batch row, custom scale 0.3.
//
// Tolerances: both paths keep P and dS in bf16 for the tensor-core products
// and round the gradients to bf16, summing in a different order (fa2 also uses
// exp2 of log2e-prescaled scores): rtol 2e-2, atol 2e-2 * max|wmma result|.
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Tensor;

// NQ_ATTN_BWD set (NQ_ATTN_IMPL, NQ_ATTN_SIMPLE cleared) for a scope.
struct BwdEnv : nqgpu::ScopedEnv {
  explicit BwdEnv(const char* impl)
      : ScopedEnv({{"NQ_ATTN_BWD", impl}, {"NQ_ATTN_IMPL", nullptr}, {"NQ_ATTN_SIMPLE", nullptr}}) {}
};

using Case = nqgpu::AttnCase;
using nqgpu::attn_padding_mask;

std::vector<double> values(const Tensor& t) { return t.to(nq::kFloat32).cpu().to_vector<double>(); }

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (double x : values(t)) m = std::max(m, std::abs(x));
  return m;
}

void no_nan(const Tensor& t, const std::string& what) {
  INFO(what);
  REQUIRE(t.defined());
  const std::vector<double> v = values(t);
  CHECK(std::none_of(v.begin(), v.end(), [](double x) { return std::isnan(x) || std::isinf(x); }));
}

// rtol 2e-2, atol 2e-2 * max|want| (want = wmma result).
void close_bf16(const Tensor& got, const Tensor& want, const std::string& what) {
  no_nan(got, what + " (fa2)");
  no_nan(want, what + " (wmma)");
  const double atol = 2e-2 * std::max(max_abs(want), 1e-6);
  nqgpu::expect_close(got.to(nq::kFloat32), want.to(nq::kFloat32), 2e-2, atol, what);
}

double scale_of(const Case& c) { return c.scale ? *c.scale : 1.0 / std::sqrt(static_cast<double>(c.D)); }

void check_case(const Case& c) {
  INFO("B", c.B, " H", c.H, " T", c.T, " S", c.S, " D", c.D, " causal ", c.causal, " mask ", c.mask,
       " scale ", c.scale ? *c.scale : -1.0);
  nq::Generator gen(
      static_cast<uint64_t>(c.T * 7919 + c.S * 31 + c.D + (c.causal ? 1 : 0) + (c.mask ? 5 : 0)));
  const auto bf = [&](nq::Shape s) { return nq::randn(s, nq::kFloat32, &gen).cuda().to(nq::kBFloat16); };
  Tensor q = bf({c.B, c.H, c.T, c.D}), k = bf({c.B, c.H, c.S, c.D}), v = bf({c.B, c.H, c.S, c.D});
  Tensor gy = bf({c.B, c.H, c.T, c.D});
  Tensor mask = c.mask ? attn_padding_mask(c).cuda() : Tensor();
  const double scale = scale_of(c);

  const std::vector<Tensor> fw = nq::cuda::attention_forward(q, k, v, mask, scale, c.causal);  // out, lse
  const auto bwd = [&](const char* impl) {
    BwdEnv env(impl);
    return nq::cuda::attention_backward(q, k, v, fw[0], fw[1], gy, mask, scale, c.causal, true, true, true);
  };
  const std::vector<Tensor> fa = bwd("fa2"), wm = bwd("wmma");  // dq, dk, dv
  REQUIRE(fa.size() == 3);
  REQUIRE(fa[0].dtype() == nq::kBFloat16);
  close_bf16(fa[0], wm[0], "dq fa2 vs wmma");
  close_bf16(fa[1], wm[1], "dk fa2 vs wmma");
  close_bf16(fa[2], wm[2], "dv fa2 vs wmma");

  if (c.mask && c.B > 2) {  // fully masked batch row: all gradients exactly 0
    for (int w = 0; w < 3; ++w) {
      const std::vector<double> x = values(fa[static_cast<size_t>(w)].select(0, 2));
      CHECK(std::all_of(x.begin(), x.end(), [](double e) { return e == 0.0; }));
    }
  }

  // Only some gradients requested: the same values.
  {
    BwdEnv env("fa2");
    const std::vector<Tensor> kv =
        nq::cuda::attention_backward(q, k, v, fw[0], fw[1], gy, mask, scale, c.causal, false, true, false);
    CHECK(!kv[0].defined());
    CHECK(!kv[2].defined());
    nqgpu::expect_close(kv[1], fa[1], 0, 0, "dk alone (fa2)");
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (int64_t T : {1, 63, 64, 65, 200})
    for (bool causal : {false, true}) out.push_back({2, 2, T, T, 64, causal, false, {}});
  out.push_back({1, 2, 1024, 1024, 64, true, false, {}});
  out.push_back({1, 1, 1024, 1024, 64, false, false, {}});
  out.push_back({2, 2, 7, 130, 64, true, false, {}});  // T < S, causal aligned at the end
  out.push_back({2, 2, 7, 130, 64, false, false, {}});
  out.push_back({2, 2, 65, 200, 64, false, false, 0.3});  // T < S, custom scale
  out.push_back({2, 2, 65, 200, 64, true, false, 0.3});
  out.push_back({2, 1, 1, 65, 64, true, false, {}});      // one query against a cache
  out.push_back({3, 2, 65, 65, 64, true, true, {}});      // padding, fully masked row
  out.push_back({3, 2, 200, 200, 64, false, true, 0.3});  // padding, not causal, custom scale
  out.push_back({3, 1, 33, 130, 64, true, true, {}});     // padding + T < S + causal
  out.push_back({2, 1, 65, 65, 128, true, false, {}});    // D = 128: fa2 falls back to wmma
  return out;
}

}  // namespace

TEST_CASE("gpu attention bwd: fa2 matches wmma (bf16 dq, dk, dv)") {
  for (const Case& c : cases()) check_case(c);
}

TEST_CASE("gpu attention bwd: fa2 through the op and autograd") {
  const Case c{3, 2, 130, 130, 64, true, true, 0.3};
  nq::Generator gen(42);
  const auto bf = [&](nq::Shape s) { return nq::randn(s, nq::kFloat32, &gen).cuda().to(nq::kBFloat16); };
  Tensor q = bf({c.B, c.H, c.T, c.D}), k = bf({c.B, c.H, c.S, c.D}), v = bf({c.B, c.H, c.S, c.D});
  Tensor gy = bf({c.B, c.H, c.T, c.D});
  nq::AttentionOptions o;
  o.causal = c.causal;
  o.scale = c.scale;
  o.key_padding_mask = attn_padding_mask(c).cuda();
  const auto run = [&](const char* impl) {
    BwdEnv env(impl);
    Tensor qg = q.detach().requires_grad_(), kg = k.detach().requires_grad_(),
           vg = v.detach().requires_grad_();
    Tensor y = nq::scaled_dot_product_attention(qg, kg, vg, o);
    y.backward(gy);
    return std::vector<Tensor>{qg.grad(), kg.grad(), vg.grad()};
  };
  const std::vector<Tensor> fa = run("fa2"), wm = run("wmma");
  close_bf16(fa[0], wm[0], "op dq fa2 vs wmma");
  close_bf16(fa[1], wm[1], "op dk fa2 vs wmma");
  close_bf16(fa[2], wm[2], "op dv fa2 vs wmma");
}

TEST_CASE("gpu attention bwd: unknown NQ_ATTN_BWD throws") {
  const Case c{1, 1, 4, 4, 64, false, false, {}};
  Tensor q = nq::zeros({1, 1, 4, 64}).cuda().to(nq::kBFloat16);
  const std::vector<Tensor> fw = nq::cuda::attention_forward(q, q, q, Tensor(), scale_of(c), false);
  BwdEnv env("nope");
  CHECK_THROWS_AS(
      nq::cuda::attention_backward(q, q, q, fw[0], fw[1], q, Tensor(), scale_of(c), false, true, true, true),
      nq::Error);
}
