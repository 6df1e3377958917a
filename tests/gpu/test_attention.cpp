// scaled_dot_product_attention on CUDA (kernels/attention.cu) against the CPU
// backend: forward and the q, k, v gradients, float32 and bfloat16, causal and
// not, T != S, sizes that are not multiples of the tiles (1, 7, 65, 130),
// head dims 16/64/128 (and D != Dv), left/right key padding with a fully
// masked batch row, a custom scale, and the error cases.
//
// Tolerances: float32 kernels use fp32 math like the CPU but sum in another
// order (and use expf/fma): rtol 2e-4, atol 2e-5 forward, atol 1e-4 for the
// gradients (sums over up to 130 keys with cancellation). bf16: the reference
// is the CPU float32 result on the same bf16-rounded inputs; the GPU keeps P
// and dS in bf16 for the tensor-core products and rounds outputs to bf16:
// rtol 3e-2, atol 3e-2 forward, 6e-2 for the gradients.
#include <optional>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Tensor;

struct AttnCase {
  int64_t B, H, T, S, D, Dv;
  bool causal;
  int mask;  // 0 none, 1 float32, 2 int64 (batch 0 left-padded, 1 right-padded, 2 fully masked)
  std::optional<double> scale;
};

Tensor make_mask(const AttnCase& c) {
  std::vector<float> keep(static_cast<size_t>(c.B * c.S), 1.f);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.S; ++j) {
      float& m = keep[static_cast<size_t>(b * c.S + j)];
      if (b == 0) m = j >= c.S / 3 ? 1.f : 0.f;       // left padding
      if (b == 1) m = j < c.S - c.S / 4 ? 1.f : 0.f;  // right padding
      if (b == 2) m = 0.f;                            // no real key at all
    }
  if (c.mask == 2)
    return nq::from_vector<int64_t>(std::vector<int64_t>(keep.begin(), keep.end()), {c.B, c.S});
  return nq::from_vector<float>(keep, {c.B, c.S});
}

// GPU tensor in dtype dt (a leaf requiring grad) and the CPU float32 tensor
// holding exactly its values (bf16-rounded when dt is bf16).
std::pair<Tensor, Tensor> make_pair_on_both(const Tensor& cpu32, nq::DType dt) {
  Tensor g = cpu32.cuda();
  if (dt != nq::kFloat32) g = g.to(dt);
  g = g.detach().requires_grad_();
  Tensor c = g.detach().to(nq::kFloat32).cpu().detach().requires_grad_();
  return {g, c};
}

void check_case(const AttnCase& c, nq::DType dt) {
  const bool bf = dt == nq::kBFloat16;
  INFO("B", c.B, " H", c.H, " T", c.T, " S", c.S, " D", c.D, " Dv", c.Dv, " causal ", c.causal, " mask ",
       c.mask, " scale ", c.scale ? *c.scale : -1.0, " ", nq::dtype_name(dt));
  nq::Generator gen(static_cast<uint64_t>(c.T * 1000 + c.S * 10 + c.D));
  auto [qg, qc] = make_pair_on_both(nq::randn({c.B, c.H, c.T, c.D}, nq::kFloat32, &gen), dt);
  auto [kg, kc] = make_pair_on_both(nq::randn({c.B, c.H, c.S, c.D}, nq::kFloat32, &gen), dt);
  auto [vg, vc] = make_pair_on_both(nq::randn({c.B, c.H, c.S, c.Dv}, nq::kFloat32, &gen), dt);
  auto [gg, gc] = make_pair_on_both(nq::randn({c.B, c.H, c.T, c.Dv}, nq::kFloat32, &gen), dt);
  nq::AttentionOptions oc, og;
  oc.causal = og.causal = c.causal;
  oc.scale = og.scale = c.scale;
  if (c.mask) {
    oc.key_padding_mask = make_mask(c);
    og.key_padding_mask = oc.key_padding_mask.cuda();
  }
  Tensor yc = nq::scaled_dot_product_attention(qc, kc, vc, oc);
  Tensor yg = nq::scaled_dot_product_attention(qg, kg, vg, og);
  REQUIRE(yg.device().is_cuda());
  REQUIRE(yg.dtype() == dt);
  const double rtol = bf ? 3e-2 : 2e-4, atol = bf ? 3e-2 : 2e-5, gatol = bf ? 6e-2 : 1e-4;
  nqgpu::expect_close(yg.to(nq::kFloat32), yc, rtol, atol, "forward");
  yc.backward(gc.detach());
  yg.backward(gg.detach());
  nqgpu::expect_close(qg.grad().to(nq::kFloat32), qc.grad(), rtol, gatol, "dq");
  nqgpu::expect_close(kg.grad().to(nq::kFloat32), kc.grad(), rtol, gatol, "dk");
  nqgpu::expect_close(vg.grad().to(nq::kFloat32), vc.grad(), rtol, gatol, "dv");
  if (c.mask && c.B > 2) {  // fully masked batch row: output exactly 0, zero gradients, no NaN
    std::vector<double> y = yg.select(0, 2).to(nq::kFloat32).cpu().to_vector<double>();
    std::vector<double> dq = qg.grad().select(0, 2).to(nq::kFloat32).cpu().to_vector<double>();
    std::vector<double> dk = kg.grad().select(0, 2).to(nq::kFloat32).cpu().to_vector<double>();
    CHECK(std::all_of(y.begin(), y.end(), [](double x) { return x == 0.0; }));
    CHECK(std::all_of(dq.begin(), dq.end(), [](double x) { return x == 0.0; }));
    CHECK(std::all_of(dk.begin(), dk.end(), [](double x) { return x == 0.0; }));
  }
}

std::vector<AttnCase> cases() {
  return {
      {1, 2, 1, 1, 16, 16, false, 0, {}},   // single query, single key
      {2, 2, 7, 7, 16, 16, true, 0, {}},    // smaller than any tile
      {2, 3, 65, 65, 64, 64, true, 0, {}},  // one past a tile
      {2, 3, 65, 65, 64, 64, false, 0, {}},
      {1, 2, 130, 130, 128, 128, true, 0, {}},
      {1, 2, 130, 130, 128, 128, false, 0, {}},
      {2, 1, 7, 130, 64, 64, true, 0, {}},      // T < S: cached decoding, causal aligned at the end
      {2, 2, 1, 65, 64, 64, true, 0, {}},       // one new token against a cache
      {3, 2, 65, 65, 64, 64, true, 1, {}},      // float mask, left/right/fully padded rows
      {3, 2, 130, 130, 64, 64, false, 2, {}},   // int64 mask
      {4, 2, 33, 130, 128, 128, true, 2, 0.3},  // mask + T < S + custom scale
      {2, 2, 70, 70, 48, 80, true, 0, {}},      // D != Dv, padded head dims
      {2, 2, 200, 257, 64, 64, false, 1, 0.05},
  };
}

}  // namespace

TEST_CASE("gpu attention: float32 forward and gradients match the CPU") {
  for (const AttnCase& c : cases()) check_case(c, nq::kFloat32);
}

TEST_CASE("gpu attention: bfloat16 forward and gradients match the CPU (loose)") {
  for (const AttnCase& c : cases()) check_case(c, nq::kBFloat16);
}

TEST_CASE("gpu attention: only the inputs that require grad get one") {
  nq::Generator gen(3);
  Tensor q = nq::randn({1, 2, 9, 64}, nq::kFloat32, &gen).cuda();
  Tensor k = nq::randn({1, 2, 9, 64}, nq::kFloat32, &gen).cuda();
  Tensor v = nq::randn({1, 2, 9, 64}, nq::kFloat32, &gen).cuda().requires_grad_();
  nq::AttentionOptions o;
  o.causal = true;
  Tensor y = nq::scaled_dot_product_attention(q, k, v, o);
  y.sum().backward();
  CHECK(!q.grad().defined());
  CHECK(!k.grad().defined());
  REQUIRE(v.grad().defined());
  Tensor vc = v.detach().cpu().requires_grad_();
  nq::scaled_dot_product_attention(q.cpu(), k.cpu(), vc, o).sum().backward();
  nqgpu::expect_close(v.grad(), vc.grad(), 2e-4, 1e-4, "dv only");
}

TEST_CASE("gpu attention: errors") {
  Tensor big = nq::zeros({1, 1, 4, 129}).cuda();  // head dim over the kernels' 128
  CHECK_THROWS_AS(nq::scaled_dot_product_attention(big, big, big), nq::Error);
  Tensor q = nq::zeros({1, 2, 4, 16}).cuda(), k = nq::zeros({1, 2, 5, 16}).cuda();
  Tensor v_bad = nq::zeros({1, 2, 6, 16}).cuda();  // S of v differs from k
  CHECK_THROWS_AS(nq::scaled_dot_product_attention(q, k, v_bad), nq::Error);
  CHECK_THROWS_AS(nq::scaled_dot_product_attention(q, k.cpu(), k), nq::Error);  // mixed devices
  nq::AttentionOptions o;
  o.key_padding_mask = nq::ones({1, 5});  // mask left on the CPU
  CHECK_THROWS_AS(nq::scaled_dot_product_attention(q, k, k, o), nq::Error);
  o.key_padding_mask = nq::ones({1, 4}).cuda();  // wrong S
  CHECK_THROWS_AS(nq::scaled_dot_product_attention(q, k, k, o), nq::Error);
}
