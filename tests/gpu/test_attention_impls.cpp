// The bf16 attention implementations against each other: NQ_ATTN_IMPL=fa2
// (FlashAttention-2 style mma.sync forward, kernels/attention_fa2.cuh) and
// NQ_ATTN_IMPL=wmma (kernels/attention_tc.cuh), selected per call through the
// environment. Compares the outputs, the saved log-sum-exp (through the
// launcher, -inf rows included) and the q, k, v gradients; the fa2 output is
// also checked against the CPU float32 result on the same bf16 inputs.
// Shapes: T = S in {1, 63, 64, 65, 200, 1024}, T < S, causal and not, a key
// padding mask with a fully masked batch row, a custom scale, D = 64 and 128.
//
// Tolerances: both paths round P to bf16 and the output to bf16 but sum in a
// different order (fa2 also uses exp2 of log2e-prescaled scores): rtol 2e-2,
// atol 2e-2 * max|reference| (fa2 vs wmma, and fa2 vs CPU). lse is fp32 on
// both paths (P rounding differs slightly): rtol 2e-3, atol 2e-3.
#include <cstdlib>
#include <optional>
#include <string>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Tensor;

// NQ_ATTN_IMPL set (NQ_ATTN_SIMPLE cleared) for a scope.
struct ImplEnv : nqgpu::ScopedEnv {
  explicit ImplEnv(const char* impl) : ScopedEnv({{"NQ_ATTN_IMPL", impl}, {"NQ_ATTN_SIMPLE", nullptr}}) {}
};

using Case = nqgpu::AttnCase;
using nqgpu::attn_padding_mask;

double max_abs(const Tensor& t) {
  std::vector<double> v = t.to(nq::kFloat32).cpu().to_vector<double>();
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// rtol 2e-2, atol 2e-2 * max|want| (want is the reference).
void close_bf16(const Tensor& got, const Tensor& want, const std::string& what) {
  const double atol = 2e-2 * std::max(max_abs(want), 1e-6);
  nqgpu::expect_close(got.to(nq::kFloat32), want.to(nq::kFloat32), 2e-2, atol, what);
}

struct Run {
  Tensor y, dq, dk, dv, lse;
};

Run run_impl(const char* impl, const Case& c, const Tensor& q, const Tensor& k, const Tensor& v,
             const Tensor& gy, const Tensor& mask) {
  ImplEnv env(impl);
  Run r;
  Tensor qg = q.detach().requires_grad_(), kg = k.detach().requires_grad_(), vg = v.detach().requires_grad_();
  nq::AttentionOptions o;
  o.causal = c.causal;
  o.scale = c.scale;
  if (mask.defined()) o.key_padding_mask = mask;
  r.y = nq::scaled_dot_product_attention(qg, kg, vg, o);
  r.y.backward(gy);
  r.dq = qg.grad(), r.dk = kg.grad(), r.dv = vg.grad();
  const double scale = c.scale ? *c.scale : 1.0 / std::sqrt(static_cast<double>(c.D));
  r.lse = nq::cuda::attention_forward(q, k, v, mask, scale, c.causal)[1];
  return r;
}

void check_case(const Case& c) {
  INFO("B", c.B, " H", c.H, " T", c.T, " S", c.S, " D", c.D, " causal ", c.causal, " mask ", c.mask,
       " scale ", c.scale ? *c.scale : -1.0);
  nq::Generator gen(static_cast<uint64_t>(c.T * 7919 + c.S * 31 + c.D + (c.causal ? 1 : 0)));
  const auto bf = [&](nq::Shape s) { return nq::randn(s, nq::kFloat32, &gen).cuda().to(nq::kBFloat16); };
  Tensor q = bf({c.B, c.H, c.T, c.D}), k = bf({c.B, c.H, c.S, c.D}), v = bf({c.B, c.H, c.S, c.D});
  Tensor gy = bf({c.B, c.H, c.T, c.D});
  Tensor mask_cpu = c.mask ? attn_padding_mask(c) : Tensor();
  Tensor mask = c.mask ? mask_cpu.cuda() : Tensor();

  Run fa = run_impl("fa2", c, q, k, v, gy, mask);
  Run wm = run_impl("wmma", c, q, k, v, gy, mask);
  REQUIRE(fa.y.dtype() == nq::kBFloat16);
  close_bf16(fa.y, wm.y, "forward fa2 vs wmma");
  nqgpu::expect_close(fa.lse, wm.lse, 2e-3, 2e-3, "lse fa2 vs wmma");
  close_bf16(fa.dq, wm.dq, "dq fa2 vs wmma");
  close_bf16(fa.dk, wm.dk, "dk fa2 vs wmma");
  close_bf16(fa.dv, wm.dv, "dv fa2 vs wmma");

  // fa2 forward against the CPU float32 op on the same bf16 values.
  nq::AttentionOptions oc;
  oc.causal = c.causal;
  oc.scale = c.scale;
  if (c.mask) oc.key_padding_mask = mask_cpu;
  Tensor yc = nq::scaled_dot_product_attention(q.to(nq::kFloat32).cpu(), k.to(nq::kFloat32).cpu(),
                                               v.to(nq::kFloat32).cpu(), oc);
  close_bf16(fa.y, yc, "forward fa2 vs cpu");

  if (c.mask && c.B > 2) {  // fully masked batch row: output exactly 0, lse -inf
    std::vector<double> y = fa.y.select(0, 2).to(nq::kFloat32).cpu().to_vector<double>();
    std::vector<double> l = fa.lse.select(0, 2).cpu().to_vector<double>();
    CHECK(std::all_of(y.begin(), y.end(), [](double x) { return x == 0.0; }));
    CHECK(std::all_of(l.begin(), l.end(), [](double x) { return std::isinf(x) && x < 0; }));
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (int64_t D : {64, 128})
    for (int64_t T : {1, 63, 64, 65, 200})
      for (bool causal : {false, true}) out.push_back({2, 2, T, T, D, causal, false, {}});
  for (int64_t D : {64, 128}) {
    out.push_back({1, 2, 1024, 1024, D, true, false, {}});
    out.push_back({1, 1, 1024, 1024, D, false, false, {}});
    out.push_back({2, 2, 7, 130, D, true, false, {}});      // T < S, causal aligned at the end
    out.push_back({2, 2, 65, 200, D, false, false, 0.3});   // T < S, custom scale
    out.push_back({2, 1, 1, 65, D, true, false, {}});       // one query against a cache
    out.push_back({3, 2, 65, 65, D, true, true, {}});       // padding, fully masked row
    out.push_back({3, 2, 200, 200, D, false, true, 0.05});  // padding, not causal
    out.push_back({3, 1, 33, 130, D, true, true, {}});      // padding + T < S + causal
  }
  return out;
}

}  // namespace

TEST_CASE("gpu attention impls: fa2 matches wmma (bf16 forward, lse, gradients)") {
  for (const Case& c : cases()) check_case(c);
}

TEST_CASE("gpu attention impls: unknown NQ_ATTN_IMPL throws") {
  ImplEnv env("nope");
  Tensor q = nq::zeros({1, 1, 4, 64}).cuda().to(nq::kBFloat16);
  CHECK_THROWS_AS(nq::scaled_dot_product_attention(q, q, q), nq::Error);
}
