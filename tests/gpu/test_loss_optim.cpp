// GPU tests of the fused cross-entropy, the NextQuill logit-difference loss and
// the optimizers (kernels/loss.cu, kernels/optim.cu) against the CPU backend.
// Tolerances:
//   float32 CE values rtol 1e-5 (atol 1e-6), gradients rtol 1e-4 (atol 1e-7):
//     the GPU sums the row in another order and uses expf;
//   bfloat16 CE (compared with the CPU float32 result of the bf16-rounded
//     inputs): values rtol 1e-2 (atol 1e-3), gradients rtol 2e-2 (atol 1e-5):
//     the outputs are rounded to bf16 (8 mantissa bits);
//   optimizers: N steps on CUDA vs N steps on the CPU, rtol 1e-5 (atol 1e-7);
//   gradient norms rtol 1e-10 (float64 sums in another order).
#include <cstdint>
#include <string>
#include <vector>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Device;
using nq::Reduction;
using nq::Tensor;

// Deterministic targets in [0, V), every `ignore_every`-th one ignore_index.
Tensor make_targets(int64_t R, int64_t V, uint64_t seed, int ignore_every = 4) {
  std::vector<int64_t> t(static_cast<size_t>(R));
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (int64_t i = 0; i < R; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    t[size_t(i)] =
        (ignore_every > 0 && i % ignore_every == 1) ? -100 : static_cast<int64_t>((s >> 33) % uint64_t(V));
  }
  return nq::from_vector<int64_t>(t, {R});
}

const char* red_name(Reduction r) {
  switch (r) {
    case Reduction::None:
      return "None";
    case Reduction::Sum:
      return "Sum";
    case Reduction::Mean:
      return "Mean";
    case Reduction::WeightedMean:
      return "WeightedMean";
  }
  return "?";
}

// CE of logits (R, V) on the CPU and on CUDA (dtype dt), forward and gradient.
void check_ce(int64_t R, int64_t V, Reduction red, bool weighted, nq::DType dt, uint64_t seed) {
  const std::string what = "cross_entropy R=" + std::to_string(R) + " V=" + std::to_string(V) + " " +
                           red_name(red) + (weighted ? " weighted " : " ") + nq::dtype_name(dt);
  nq::Generator gen(seed);
  Tensor z = nq::mul(nq::randn({R, V}, nq::kFloat32, &gen), 3.0);
  Tensor t = make_targets(R, V, seed);
  Tensor w = weighted ? nq::add(nq::mul(nq::randn({R}, nq::kFloat32, &gen), 0.5), 1.0) : Tensor();
  Tensor up =
      red == Reduction::None ? nq::randn({R}, nq::kFloat32, &gen) : nq::scalar_tensor(1.7, nq::kFloat32);
  // Device inputs in dt; the CPU works on their float32 values (bf16-rounded).
  Tensor zc = z.cuda().to(dt), upc = up.cuda().to(dt);
  Tensor wc = weighted ? w.cuda().to(dt) : Tensor();
  Tensor zr = zc.to(nq::kFloat32).cpu().detach().requires_grad_();
  Tensor wr = weighted ? wc.to(nq::kFloat32).cpu() : Tensor();
  Tensor upr = upc.to(nq::kFloat32).cpu();

  nq::CrossEntropyOptions o;
  o.reduction = red;
  o.weights = wr;
  Tensor want = nq::cross_entropy(zr, t, o);
  want.backward(upr);

  Tensor zg = zc.detach().requires_grad_();
  nq::CrossEntropyOptions og;
  og.reduction = red;
  og.weights = wc;
  Tensor got = nq::cross_entropy(zg, t.cuda(), og);
  REQUIRE(got.device().is_cuda());
  CHECK(got.dtype() == dt);
  got.backward(upc);
  REQUIRE(zg.grad().defined());
  CHECK(zg.grad().device().is_cuda());
  const bool bf = dt == nq::kBFloat16;
  nqgpu::expect_close(got.to(nq::kFloat32), want, bf ? 1e-2 : 1e-5, bf ? 1e-3 : 1e-6, what + " value");
  nqgpu::expect_close(zg.grad().to(nq::kFloat32), zr.grad(), bf ? 2e-2 : 1e-4, bf ? 1e-5 : 1e-7,
                      what + " dlogits");
}

}  // namespace

TEST_CASE("gpu loss: fused cross_entropy equals the CPU (V 1, 37, 50257; every reduction; weights)") {
  const Reduction reds[] = {Reduction::None, Reduction::Sum, Reduction::Mean, Reduction::WeightedMean};
  uint64_t seed = 1;
  for (int64_t V : {int64_t(1), int64_t(37), int64_t(50257)}) {
    const int64_t R = V > 1000 ? 6 : 13;
    for (Reduction red : reds)
      for (bool weighted : {false, true}) {
        check_ce(R, V, red, weighted, nq::kFloat32, seed);
        check_ce(R, V, red, weighted, nq::kBFloat16, seed);
        ++seed;
      }
  }
}

TEST_CASE("gpu loss: cross_entropy on (B,T,V) logits, an all-ignored batch, errors") {
  SUBCASE("3-d logits") {
    nq::Generator gen(7);
    Tensor z = nq::randn({2, 5, 37}, nq::kFloat32, &gen);
    Tensor t = make_targets(10, 37, 7).view({2, 5});
    Tensor zr = z.detach().requires_grad_();
    Tensor want = nq::cross_entropy(zr, t);
    want.backward();
    Tensor zg = z.cuda().detach().requires_grad_();
    Tensor got = nq::cross_entropy(zg, t.cuda());
    got.backward();
    nqgpu::expect_close(got, want, 1e-5, 1e-6, "(B,T,V) mean");
    nqgpu::expect_close(zg.grad(), zr.grad(), 1e-4, 1e-7, "(B,T,V) dlogits");
  }
  SUBCASE("all targets ignored: 0, never NaN, zero gradient") {
    nq::Generator gen(8);
    Tensor z = nq::randn({4, 37}, nq::kFloat32, &gen).cuda();
    Tensor t = nq::full({4}, -100.0, nq::kInt64).cuda();
    Tensor w = nq::ones({4}, nq::kFloat32).cuda();
    for (Reduction red : {Reduction::None, Reduction::Sum, Reduction::Mean, Reduction::WeightedMean})
      for (bool weighted : {false, true}) {
        nq::CrossEntropyOptions o;
        o.reduction = red;
        if (weighted) o.weights = w;
        Tensor zg = z.detach().requires_grad_();
        Tensor l = nq::cross_entropy(zg, t, o);
        for (double v : l.cpu().to_vector<double>()) CHECK(v == 0.0);
        if (red == Reduction::None)
          l.backward(nq::ones({4}, nq::kFloat32).cuda());
        else
          l.backward();
        for (double v : zg.grad().cpu().to_vector<double>()) CHECK(v == 0.0);
      }
  }
  SUBCASE("weights summing to 0 under WeightedMean give 0") {
    Tensor z = nq::randn({3, 5}, nq::kFloat32).cuda();
    Tensor t = nq::from_vector<int64_t>({0, 1, 2}, {3}).cuda();
    nq::CrossEntropyOptions o;
    o.reduction = Reduction::WeightedMean;
    o.weights = nq::zeros({3}, nq::kFloat32).cuda();
    CHECK(nq::cross_entropy(z, t, o).item() == 0.0);
  }
  SUBCASE("a target out of range is an error naming it") {
    Tensor z = nq::randn({3, 37}, nq::kFloat32).cuda();
    for (int64_t bad : {int64_t(37), int64_t(-1), int64_t(1000000)}) {
      Tensor t = nq::from_vector<int64_t>({0, bad, -100}, {3}).cuda();
      CHECK_THROWS_WITH_AS(nq::cross_entropy(z, t), doctest::Contains("out of range"), nq::Error);
    }
    // ignore_index in range is ignored, not an error
    nq::CrossEntropyOptions o;
    o.ignore_index = 5;
    Tensor t = nq::from_vector<int64_t>({0, 5, 36}, {3}).cuda();
    CHECK_NOTHROW(nq::cross_entropy(z, t, o));
  }
  SUBCASE("mixed devices are an error") {
    Tensor z = nq::randn({3, 37}, nq::kFloat32).cuda();
    Tensor t = nq::from_vector<int64_t>({0, 1, 2}, {3});
    CHECK_THROWS_AS(nq::cross_entropy(z, t), nq::Error);
  }
}

TEST_CASE("gpu loss: cross_entropy_diff (fused z - z0) equals CE of the difference, with and without dz0") {
  for (int64_t V : {int64_t(37), int64_t(50257)}) {
    const int64_t R = V > 1000 ? 4 : 11;
    nq::Generator gen{uint64_t(V)};
    Tensor a = nq::randn({R, V}, nq::kFloat32, &gen), b = nq::randn({R, V}, nq::kFloat32, &gen);
    Tensor t = make_targets(R, V, 3);
    Tensor w = nq::add(nq::mul(nq::randn({R}, nq::kFloat32, &gen), 0.3), 1.0);
    for (bool grad0 : {true, false}) {
      nq::CrossEntropyOptions o;
      o.reduction = Reduction::WeightedMean;
      o.weights = w;
      Tensor ar = a.detach().requires_grad_(), br = b.detach().requires_grad_(grad0);
      Tensor want = nq::cross_entropy(nq::sub(ar, br), t, o);
      want.backward();
      Tensor ag = a.cuda().detach().requires_grad_(), bg = b.cuda().detach().requires_grad_(grad0);
      nq::CrossEntropyOptions og = o;
      og.weights = w.cuda();
      Tensor got = nq::cross_entropy_diff(ag, bg, t.cuda(), og);
      got.backward();
      const std::string what = "cross_entropy_diff V=" + std::to_string(V);
      nqgpu::expect_close(got, want, 1e-5, 1e-6, what + " value");
      nqgpu::expect_close(ag.grad(), ar.grad(), 1e-4, 1e-7, what + " dz");
      if (grad0)
        nqgpu::expect_close(bg.grad(), br.grad(), 1e-4, 1e-7, what + " dz0");
      else
        CHECK(!bg.grad().defined());
    }
  }
}

TEST_CASE("gpu loss: NextQuill loss (L_n, L_p, total, gradients to z_h and z_0) equals the CPU") {
  using nq::causal::NextQuillOptions;
  struct Case {
    std::string preset;
    bool stop_grad;
    nq::causal::Normalization norm;
  };
  const std::vector<Case> cases = {
      {"nextquill", false, nq::causal::Normalization::WeightedMean},
      {"nextquill", true, nq::causal::Normalization::WeightedMean},
      {"nextquill-code", false, nq::causal::Normalization::TokenMean},
      {"mce-only", true, nq::causal::Normalization::PerExample},
      {"mce-dce", false, nq::causal::Normalization::PerExample},
      {"dce-only", false, nq::causal::Normalization::WeightedMean},
      {"context-sft", false, nq::causal::Normalization::WeightedMean},
  };
  for (int64_t V : {int64_t(37), int64_t(50257)}) {
    const int64_t N = V > 1000 ? 5 : 17;
    nq::Generator gen{uint64_t(V) + 11};
    Tensor zh = nq::mul(nq::randn({N, V}, nq::kFloat32, &gen), 2.0);
    // z_0 close to z_h so that DCE spreads around delta
    Tensor z0 = nq::add(zh, nq::mul(nq::randn({N, V}, nq::kFloat32, &gen), 0.7));
    Tensor y = make_targets(N, V, 5, 5);
    for (const Case& c : cases) {
      NextQuillOptions opt = NextQuillOptions::preset(c.preset);
      opt.stop_grad_z0 = c.stop_grad;
      opt.norm = c.norm;
      const std::string what =
          "nextquill_loss " + c.preset + (c.stop_grad ? " stop_grad_z0" : "") + " V=" + std::to_string(V);
      INFO(what);
      Tensor hr = zh.detach().requires_grad_(), r0 = z0.detach().requires_grad_();
      auto want = nq::causal::nextquill_loss(hr, r0, y, 3, opt);
      want.total.backward();
      Tensor hg = zh.cuda().detach().requires_grad_(), g0 = z0.cuda().detach().requires_grad_();
      auto got = nq::causal::nextquill_loss(hg, g0, y.cuda(), 3, opt);
      got.total.backward();
      CHECK(got.total.device().is_cuda());
      CHECK(got.n_valid == want.n_valid);
      CHECK(got.frac_preference == doctest::Approx(want.frac_preference));
      nqgpu::expect_close(got.weights, want.weights, 1e-6, 1e-7, what + " weights");
      nqgpu::expect_close(got.dce, want.dce, 1e-4, 1e-6, what + " dce");
      nqgpu::expect_close(got.l_n, want.l_n, 1e-5, 1e-6, what + " L_n");
      nqgpu::expect_close(got.l_p, want.l_p, 1e-5, 1e-6, what + " L_p");
      nqgpu::expect_close(got.total, want.total, 1e-5, 1e-6, what + " total");
      REQUIRE(hg.grad().defined());
      nqgpu::expect_close(hg.grad(), hr.grad(), 1e-4, 1e-7, what + " dz_h");
      if (hr.grad().defined() && r0.grad().defined()) {
        REQUIRE(g0.grad().defined());
        nqgpu::expect_close(g0.grad(), r0.grad(), 1e-4, 1e-7, what + " dz_0");
      } else {
        CHECK(!g0.grad().defined());
      }
    }
  }
}

namespace {

// Parameters: shapes {3,5}, {7}, {1000} (odd sizes), the same values on both
// devices; on CUDA optionally as views into one flat buffer (as
// flatten_parameters makes them).
struct ParamSet {
  std::vector<Tensor> params;
  Tensor flat, flat_grad;
};
ParamSet make_params(Device dev, bool flat) {
  nq::Generator gen(42);
  std::vector<Tensor> host = {nq::randn({3, 5}, nq::kFloat32, &gen), nq::randn({7}, nq::kFloat32, &gen),
                              nq::randn({1000}, nq::kFloat32, &gen)};
  ParamSet s;
  if (!flat) {
    for (const Tensor& h : host) s.params.push_back(h.to(dev).detach().clone().requires_grad_());
    return s;
  }
  s.flat = nq::zeros({15 + 7 + 1000}, nq::TensorOptions(nq::kFloat32).with_device(dev));
  s.flat_grad = nq::zeros({15 + 7 + 1000}, nq::TensorOptions(nq::kFloat32).with_device(dev));
  int64_t off = 0;
  for (const Tensor& h : host) {
    Tensor p = s.flat.narrow(0, off, h.numel()).view(h.shape());
    {
      nq::NoGradGuard ng;
      p.copy_(h.to(dev));
    }
    p.requires_grad_();
    p.set_grad(s.flat_grad.narrow(0, off, h.numel()).view(h.shape()));
    s.params.push_back(p);
    off += h.numel();
  }
  return s;
}
// Gradient k of step `step`, the same on both devices, written in place.
void set_grads(std::vector<Tensor>& params, int step) {
  nq::NoGradGuard ng;
  for (size_t k = 0; k < params.size(); ++k) {
    nq::Generator gen{uint64_t(1000 + 10 * step + int(k))};
    Tensor g = nq::mul(nq::randn(params[k].shape(), nq::kFloat32, &gen), 0.1 * double(k + 1));
    Tensor cur = params[k].grad();
    if (cur.defined())
      cur.copy_(g.to(params[k].device()));
    else
      params[k].set_grad(g.to(params[k].device()));
  }
}

}  // namespace

TEST_CASE(
    "gpu optim: AdamW N steps on CUDA equal N steps on the CPU (groups, weight decay, bias correction)") {
  for (bool flat : {false, true}) {
    INFO("flat parameter buffer: " << flat);
    ParamSet cpu = make_params(Device::cpu(), false), gpu = make_params(nqgpu::gpu(), flat);
    auto groups = [](const std::vector<Tensor>& p) {
      std::vector<nq::optim::ParamGroup> g(2);
      g[0].params = {{"w", p[0]}, {"big", p[2]}};
      g[0].weight_decay = 0.1;
      g[1].params = {{"b", p[1]}};
      g[1].weight_decay = 0.0;
      g[1].lr = 3e-3;
      return g;
    };
    nq::optim::AdamWOptions o;
    o.lr = 1e-2;
    o.beta1 = 0.8;
    o.beta2 = 0.95;
    nq::optim::AdamW oc(groups(cpu.params), o), og(groups(gpu.params), o);
    for (int step = 0; step < 6; ++step) {
      set_grads(cpu.params, step);
      set_grads(gpu.params, step);
      if (step == 3) {  // a lr change mid-run (as a scheduler does)
        oc.set_lr(0, 5e-3);
        og.set_lr(0, 5e-3);
      }
      oc.step();
      og.step();
    }
    for (size_t k = 0; k < cpu.params.size(); ++k) {
      CHECK(gpu.params[k].device().is_cuda());
      nqgpu::expect_close(gpu.params[k], cpu.params[k], 1e-5, 1e-7, "AdamW param " + std::to_string(k));
    }
    auto sc = oc.state_tensors(), sg = og.state_tensors();
    REQUIRE(sc.size() == sg.size());
    for (size_t i = 0; i < sc.size(); ++i) {
      CHECK(sg[i].first == sc[i].first);
      CHECK(sg[i].second.device().is_cuda());
      nqgpu::expect_close(sg[i].second, sc[i].second, 1e-5, 1e-9, "AdamW state " + sc[i].first);
    }
    // zero_grad on the device
    og.zero_grad();
    for (const Tensor& p : gpu.params)
      for (double v : p.grad().cpu().to_vector<double>()) CHECK(v == 0.0);
    if (flat)
      for (size_t k = 0; k < gpu.params.size(); ++k)
        CHECK(gpu.params[k].grad().shares_storage_with(gpu.flat_grad));
  }
}

TEST_CASE("gpu optim: AdamW state saved on the CPU loads onto CUDA parameters and continues equally") {
  ParamSet cpu = make_params(Device::cpu(), false), gpu = make_params(nqgpu::gpu(), false);
  nq::optim::AdamW oc(cpu.params, {}), og(gpu.params, {});
  set_grads(cpu.params, 0);
  oc.step();
  {
    nq::NoGradGuard ng;
    for (size_t k = 0; k < cpu.params.size(); ++k) gpu.params[k].copy_(cpu.params[k].cuda());
  }
  og.load_state(oc.state_tensors(), oc.state_meta());
  for (const auto& [name, t] : og.state_tensors()) CHECK(t.device().is_cuda());
  for (int step = 1; step < 4; ++step) {
    set_grads(cpu.params, step);
    set_grads(gpu.params, step);
    oc.step();
    og.step();
  }
  for (size_t k = 0; k < cpu.params.size(); ++k)
    nqgpu::expect_close(gpu.params[k], cpu.params[k], 1e-5, 1e-7, "AdamW resumed param " + std::to_string(k));
}

TEST_CASE("gpu optim: SGD (momentum, dampening, nesterov, weight decay) on CUDA equals the CPU") {
  struct Cfg {
    double momentum, dampening, wd;
    bool nesterov;
  };
  for (const Cfg& c : {Cfg{0, 0, 0, false}, Cfg{0.9, 0.1, 0.01, false}, Cfg{0.9, 0, 0.05, true}}) {
    ParamSet cpu = make_params(Device::cpu(), false), gpu = make_params(nqgpu::gpu(), true);
    nq::optim::SGDOptions o;
    o.lr = 0.05;
    o.momentum = c.momentum;
    o.dampening = c.dampening;
    o.weight_decay = c.wd;
    o.nesterov = c.nesterov;
    nq::optim::SGD oc(cpu.params, o), og(gpu.params, o);
    for (int step = 0; step < 4; ++step) {
      set_grads(cpu.params, step);
      set_grads(gpu.params, step);
      oc.step();
      og.step();
    }
    for (size_t k = 0; k < cpu.params.size(); ++k)
      nqgpu::expect_close(gpu.params[k], cpu.params[k], 1e-5, 1e-7, "SGD param " + std::to_string(k));
  }
}

TEST_CASE("gpu optim: clip_grad_norm and grad_norm on CUDA gradients equal the CPU") {
  for (double max_norm : {0.5, 1e6}) {  // clipping, and a norm under the bar (gradients untouched)
    ParamSet cpu = make_params(Device::cpu(), false), gpu = make_params(nqgpu::gpu(), true);
    set_grads(cpu.params, 0);
    set_grads(gpu.params, 0);
    const double want_norm = nq::optim::grad_norm(cpu.params);
    CHECK(nq::optim::grad_norm(gpu.params) == doctest::Approx(want_norm).epsilon(1e-10));
    const double nc = nq::optim::clip_grad_norm(cpu.params, max_norm);
    const double ng = nq::optim::clip_grad_norm(gpu.params, max_norm);
    CHECK(ng == doctest::Approx(nc).epsilon(1e-10));
    for (size_t k = 0; k < cpu.params.size(); ++k) {
      CHECK(gpu.params[k].grad().device().is_cuda());
      nqgpu::expect_close(gpu.params[k].grad(), cpu.params[k].grad(), 1e-6, 1e-9,
                          "clipped grad " + std::to_string(k));
    }
    if (max_norm < 1) CHECK(nq::optim::grad_norm(gpu.params) == doctest::Approx(max_norm).epsilon(1e-5));
  }
  SUBCASE("a parameter without a gradient is skipped; NaN norm leaves gradients untouched") {
    ParamSet gpu = make_params(nqgpu::gpu(), false);
    set_grads(gpu.params, 1);
    gpu.params[1].zero_grad(true);
    CHECK(nq::optim::grad_norm(gpu.params) > 0);
    {
      nq::NoGradGuard ng;
      gpu.params[0].grad().fill_(std::numeric_limits<double>::quiet_NaN());
    }
    Tensor before = gpu.params[2].grad().cpu().clone();
    CHECK(std::isnan(nq::optim::clip_grad_norm(gpu.params, 1.0)));
    nqgpu::expect_close(gpu.params[2].grad(), before, 0, 0, "untouched after NaN norm");
  }
}
