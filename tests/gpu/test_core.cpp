// Core CUDA backend vs the CPU backend: device transfers, copy_/fill_,
// factories, every element-wise op (forward and backward, f32 and bf16),
// broadcasting, reductions, max/argmax, mixed-dtype promotion, dropout,
// concat/stack/split, the allocator, and errors.
// Tolerances: f32 rtol 2e-5 / atol 1e-5 (CUDA libm differs by an ulp or two,
// sums are reordered); sums over long rows 1e-4; bf16 rtol/atol 2e-2 (8
// mantissa bits, compared with the CPU f32 result of the bf16-rounded inputs).
#include <functional>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Tensor;
using nqgpu::expect_close;
using nqgpu::gpu;

constexpr double kRtol32 = 2e-5, kAtol32 = 1e-5, kTolBf16 = 2e-2;
constexpr double kExact = 1e-30;  // "equal": expect_close divides by atol + rtol |want|

// x rounded to bf16 when dt is bf16 (so the CPU f32 reference sees the same inputs).
Tensor rounded(const Tensor& x, nq::DType dt) {
  return dt == nq::kBFloat16 ? x.to(nq::kBFloat16).to(nq::kFloat32) : x;
}

Tensor on_gpu(const Tensor& x, nq::DType dt) { return x.cuda().to(dt).detach().requires_grad_(); }

double rtol_for(nq::DType dt) { return dt == nq::kBFloat16 ? kTolBf16 : kRtol32; }
double atol_for(nq::DType dt) { return dt == nq::kBFloat16 ? kTolBf16 : kAtol32; }

}  // namespace

TEST_CASE("core: to(cuda) and back keeps every dtype bit for bit") {
  nq::Generator gen(1);
  Tensor f = nq::randn({7, 13}, nq::kFloat32, &gen);
  for (nq::DType dt : {nq::kFloat32, nq::kFloat64, nq::kInt64, nq::kBFloat16}) {
    Tensor x = dt == nq::kInt64 ? nq::mul(f, 100.0).to(nq::kInt64) : f.to(dt);
    Tensor y = x.cuda();
    CHECK(y.device() == gpu());
    CHECK(y.dtype() == dt);
    Tensor back = y.cpu();
    CHECK(back.device().is_cpu());
    CHECK(back.to_vector<double>() == x.to_vector<double>());
    CHECK(x.cuda().to(nq::Device::cuda(0)).shares_storage_with(x.cuda()) == false);
    Tensor same = y.to(gpu());
    CHECK(same.shares_storage_with(y));  // same device: *this
  }
  CHECK(nq::scalar_tensor(3.5).cuda().item() == 3.5);
  // Non-contiguous sources both ways.
  Tensor t = nq::randn({5, 6}, nq::kFloat32, &gen);
  CHECK(t.t().cuda().cpu().to_vector<float>() == t.t().contiguous().to_vector<float>());
  CHECK(t.cuda().t().cpu().to_vector<float>() == t.t().contiguous().to_vector<float>());
  CHECK(t.cuda().t().to_vector<float>() == t.t().contiguous().to_vector<float>());
}

TEST_CASE("core: copy_ strided, broadcast, cross-device and dtype-converting; fill_") {
  nq::NoGradGuard ng;
  nq::Generator gen(2);
  Tensor src = nq::randn({4, 3}, nq::kFloat32, &gen);
  Tensor row = nq::randn({6}, nq::kFloat32, &gen);
  for (bool src_on_gpu : {false, true}) {
    Tensor s = src_on_gpu ? src.cuda() : src;
    Tensor want = nq::zeros({4, 6});
    want.slice(1, 1, 6, 2).copy_(src);
    Tensor got = nq::zeros({4, 6}, nq::TensorOptions().with_device(gpu()));
    got.slice(1, 1, 6, 2).copy_(s);  // strided destination
    expect_close(got, want, 0, kExact, "copy_ into a strided view");
    Tensor want_b = nq::zeros({3, 4, 6});
    want_b.copy_(row);
    Tensor got_b = nq::zeros({3, 4, 6}, nq::TensorOptions().with_device(gpu()));
    got_b.copy_(src_on_gpu ? row.cuda() : row);  // broadcast source
    expect_close(got_b, want_b, 0, kExact, "copy_ broadcast");
  }
  // Device -> host into a strided CPU view, from a transposed CUDA source.
  Tensor host = nq::zeros({3, 8});
  host.narrow(1, 2, 4).copy_(src.cuda().t());
  Tensor want_h = nq::zeros({3, 8});
  want_h.narrow(1, 2, 4).copy_(src.t());
  expect_close(host, want_h, 0, kExact, "copy_ device to strided host");
  // dtype conversions on the device, every pair.
  const std::vector<nq::DType> dts = {nq::kFloat32, nq::kFloat64, nq::kInt64, nq::kBFloat16};
  Tensor base = nq::mul(src, 10.0);
  for (nq::DType a : dts)
    for (nq::DType b : dts) {
      Tensor x = base.to(a);
      Tensor want = nq::empty(x.shape(), b);
      want.copy_(x);
      Tensor got = nq::empty(x.shape(), nq::TensorOptions(b).with_device(gpu()));
      got.copy_(x.cuda());
      CHECK_MESSAGE(got.to_vector<double>() == want.to_vector<double>(), nq::dtype_name(a), " -> ",
                    nq::dtype_name(b));
    }
  // fill_ on a strided view, every dtype.
  for (nq::DType dt : dts) {
    Tensor g = nq::zeros({4, 5}, nq::TensorOptions(dt).with_device(gpu()));
    g.slice(0, 0, 4, 2).fill_(2.5);
    Tensor c = nq::zeros({4, 5}, dt);
    c.slice(0, 0, 4, 2).fill_(2.5);
    CHECK(g.to_vector<double>() == c.to_vector<double>());
  }
  CHECK(nq::to_string(nq::ones({2, 2}).cuda()).find("1") != std::string::npos);
}

TEST_CASE("core: add_ in place: strided, broadcast, cross-device and mixed bf16/f32") {
  nq::NoGradGuard ng;
  nq::Generator gen(3);
  Tensor src = nq::randn({4, 3}, nq::kFloat32, &gen);
  Tensor row = nq::randn({6}, nq::kFloat32, &gen);
  Tensor init = nq::randn({4, 6}, nq::kFloat32, &gen);
  for (bool src_on_gpu : {false, true}) {
    Tensor want = init.clone();
    want.slice(1, 1, 6, 2).add_(src);
    want.add_(row);
    Tensor got = init.cuda();
    const void* storage = got.raw_data_ptr();
    got.slice(1, 1, 6, 2).add_(src_on_gpu ? src.cuda() : src);  // strided destination
    got.add_(src_on_gpu ? row.cuda() : row);                    // broadcast source
    CHECK(got.raw_data_ptr() == storage);
    expect_close(got, want, kRtol32, kAtol32, "add_ strided + broadcast");
  }
  // The autograd engine's mixed-precision case: a bf16 gradient into an f32
  // .grad, and the reverse (bf16 destination, the sum formed in float).
  Tensor g16 = init.to(nq::kBFloat16);
  Tensor want = init.clone();
  want.add_(g16);
  Tensor got = init.cuda();
  got.add_(g16.cuda());
  expect_close(got, want, kRtol32, kAtol32, "add_ f32 += bf16");
  Tensor d16 = init.to(nq::kBFloat16).cuda();
  d16.add_(init.cuda());
  expect_close(d16, nq::mul(init.to(nq::kBFloat16).to(nq::kFloat32), 2.0), kTolBf16, kTolBf16,
               "add_ bf16 += f32");
}

TEST_CASE("core: factories on CUDA equal the CPU ones") {
  auto go = nq::TensorOptions().with_device(gpu());
  expect_close(nq::zeros({3, 4}, go), nq::zeros({3, 4}), 0, kExact, "zeros");
  expect_close(nq::ones({3, 4}, go), nq::ones({3, 4}), 0, kExact, "ones");
  expect_close(nq::full({5}, -2.5, go), nq::full({5}, -2.5), 0, kExact, "full");
  expect_close(nq::arange(0, 10, 0.5, go), nq::arange(0, 10, 0.5), 0, kExact, "arange");
  Tensor ai = nq::arange(7, go.with_dtype(nq::kInt64));
  CHECK(ai.dtype() == nq::kInt64);
  CHECK(ai.to_vector<int64_t>() == nq::arange(7, nq::kInt64).to_vector<int64_t>());
  nq::Generator g1(9), g2(9);
  expect_close(nq::randn({33, 7}, go, &g1), nq::randn({33, 7}, {}, &g2), 0, kExact, "randn same numbers");
  expect_close(nq::uniform({100}, -1, 3, go, &g1), nq::uniform({100}, -1, 3, {}, &g2), 0, kExact, "uniform");
  Tensor rb = nq::randn({64}, go.with_dtype(nq::kBFloat16), &g1);
  CHECK(rb.dtype() == nq::kBFloat16);
  expect_close(rb, nq::randn({64}, {}, &g2).to(nq::kBFloat16), 0, kExact, "randn bf16");
  Tensor p = nq::randn({4}, go.with_requires_grad(), &g1);
  CHECK(p.requires_grad());
  CHECK(p.is_leaf());
  Tensor z = nq::zeros_like(p);
  CHECK(z.device() == gpu());
  CHECK(nq::ones_like(rb).dtype() == nq::kBFloat16);
  CHECK(nq::empty_like(rb).device() == gpu());
  expect_close(nq::from_vector<float>({1, 2, 3}, {3}, go), nq::from_vector<float>({1, 2, 3}, {3}), 0, kExact,
               "from_vector");
}

TEST_CASE("core: every unary and scalar op, forward and backward, f32 and bf16") {
  struct U {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    double lo, hi;
  };
  const std::vector<U> ops = {
      {"neg", [](const Tensor& x) { return nq::neg(x); }, -3, 3},
      {"exp", [](const Tensor& x) { return nq::exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return nq::log(x); }, 0.1, 4},
      {"sqrt", [](const Tensor& x) { return nq::sqrt(x); }, 0.1, 4},
      {"rsqrt", [](const Tensor& x) { return nq::rsqrt(x); }, 0.1, 4},
      {"abs", [](const Tensor& x) { return nq::abs(x); }, -3, 3},
      {"square", [](const Tensor& x) { return nq::square(x); }, -3, 3},
      {"tanh", [](const Tensor& x) { return nq::tanh(x); }, -3, 3},
      {"sigmoid", [](const Tensor& x) { return nq::sigmoid(x); }, -8, 8},
      {"relu", [](const Tensor& x) { return nq::relu(x); }, -3, 3},
      {"gelu", [](const Tensor& x) { return nq::gelu(x); }, -4, 4},
      {"gelu_tanh", [](const Tensor& x) { return nq::gelu(x, nq::GeluApprox::Tanh); }, -4, 4},
      {"silu", [](const Tensor& x) { return nq::silu(x); }, -6, 6},
      {"add_scalar", [](const Tensor& x) { return x + 0.7; }, -3, 3},
      {"mul_scalar", [](const Tensor& x) { return x * -1.3; }, -3, 3},
      {"rsub_scalar", [](const Tensor& x) { return 2.0 - x; }, -3, 3},
      {"rdiv_scalar", [](const Tensor& x) { return 1.5 / x; }, 0.5, 3},
      {"pow_scalar", [](const Tensor& x) { return nq::pow(x, 2.5); }, 0.2, 3},
      {"pow_scalar0", [](const Tensor& x) { return nq::pow(x, 0.0); }, 0.2, 3},
  };
  nq::Generator gen(3);
  for (nq::DType dt : {nq::kFloat32, nq::kBFloat16})
    for (const auto& op : ops) {
      const std::string what = std::string(op.name) + " " + nq::dtype_name(dt);
      for (bool strided : {false, true}) {
        Tensor x0 = rounded(nq::uniform({37, 29}, op.lo, op.hi, nq::kFloat32, &gen), dt);
        Tensor g0 = rounded(nq::randn({37, 29}, nq::kFloat32, &gen), dt);
        Tensor xc = x0.detach().requires_grad_();
        Tensor yc = op.f(strided ? xc.t() : xc);
        yc.backward(strided ? g0.t() : g0);
        Tensor xg = on_gpu(x0, dt);
        Tensor yg = op.f(strided ? xg.t() : xg);
        CHECK(yg.device() == gpu());
        CHECK(yg.dtype() == dt);
        yg.backward((strided ? g0.t() : g0).cuda().to(dt));
        expect_close(yg, yc, rtol_for(dt), atol_for(dt), what + (strided ? " strided forward" : " forward"));
        REQUIRE(xg.grad().defined());
        CHECK(xg.grad().device() == gpu());
        CHECK(xg.grad().dtype() == dt);
        expect_close(xg.grad(), xc.grad(), rtol_for(dt), atol_for(dt), what + " backward");
      }
    }
}

TEST_CASE("core: binary ops with broadcasting and strides, forward and both gradients") {
  struct B {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> f;
    double lo, hi;
  };
  const std::vector<B> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, -2, 2},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, -2, 2},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, -2, 2},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, 0.5, 2},
      {"pow", [](const Tensor& a, const Tensor& b) { return nq::pow(a, b); }, 0.5, 2},
      {"maximum", [](const Tensor& a, const Tensor& b) { return nq::maximum(a, b); }, -2, 2},
      {"minimum", [](const Tensor& a, const Tensor& b) { return nq::minimum(a, b); }, -2, 2},
      {"where", [](const Tensor& a, const Tensor& b) { return nq::where(nq::relu(a - b * 0.5), a, b); }, -2,
       2},
  };
  // (a shape, b shape, transpose a?)
  struct Case {
    nq::Shape sa, sb;
    bool ta;
  };
  const std::vector<Case> cases = {{{33, 65}, {33, 65}, false},
                                   {{5, 1, 7}, {3, 7}, false},
                                   {{8, 6}, {6}, true},
                                   {{4, 3, 1}, {1, 1, 5}, false},
                                   {{}, {2, 3}, false}};
  nq::Generator gen(4);
  for (nq::DType dt : {nq::kFloat32, nq::kBFloat16})
    for (const auto& op : ops)
      for (const auto& c : cases) {
        const std::string what = std::string(op.name) + " " + nq::dtype_name(dt) + " " + nq::shape_str(c.sa) +
                                 " " + nq::shape_str(c.sb);
        nq::Shape sa = c.sa;
        if (c.ta) std::swap(sa[0], sa[1]);
        Tensor a0 = rounded(nq::uniform(sa, op.lo, op.hi, nq::kFloat32, &gen), dt);
        Tensor b0 = rounded(nq::uniform(c.sb, op.lo, op.hi, nq::kFloat32, &gen), dt);
        Tensor ac = a0.detach().requires_grad_(), bc = b0.detach().requires_grad_();
        Tensor yc = op.f(c.ta ? ac.t() : ac, bc);
        Tensor g0 = rounded(nq::randn(yc.shape(), nq::kFloat32, &gen), dt);
        yc.backward(g0);
        Tensor ag = on_gpu(a0, dt), bg = on_gpu(b0, dt);
        Tensor yg = op.f(c.ta ? ag.t() : ag, bg);
        yg.backward(g0.cuda().to(dt));
        const double tol = dt == nq::kBFloat16 ? 5e-2 : kRtol32;  // bf16 grads are sums of rounded terms
        expect_close(yg, yc, tol, dt == nq::kBFloat16 ? tol : kAtol32, what + " forward");
        expect_close(ag.grad(), ac.grad(), tol, dt == nq::kBFloat16 ? tol : 1e-4, what + " grad a");
        expect_close(bg.grad(), bc.grad(), tol, dt == nq::kBFloat16 ? tol : 1e-4, what + " grad b");
      }
  // maximum/minimum ties send the gradient to a, as on the CPU.
  Tensor a = nq::from_vector<float>({1, 2, 3}, {3}), b = nq::from_vector<float>({1, 5, 3}, {3});
  Tensor ag = a.cuda().requires_grad_(), bg = b.cuda().requires_grad_();
  nq::maximum(ag, bg).sum().backward();
  CHECK(ag.grad().to_vector<float>() == std::vector<float>{1, 0, 1});
  CHECK(bg.grad().to_vector<float>() == std::vector<float>{0, 1, 0});
}

TEST_CASE("core: mixed bf16/f32 on CUDA promotes to f32; gradients come back in each input's dtype") {
  nq::Generator gen(5);
  Tensor a0 = rounded(nq::randn({6, 5}, nq::kFloat32, &gen), nq::kBFloat16);
  Tensor b0 = nq::randn({5}, nq::kFloat32, &gen);
  Tensor ac = a0.detach().requires_grad_(), bc = b0.detach().requires_grad_();
  (nq::mul(ac, bc) + bc).sum().backward();
  Tensor ag = on_gpu(a0, nq::kBFloat16), bg = on_gpu(b0, nq::kFloat32);
  Tensor y = nq::mul(ag, bg) + bg;
  CHECK(y.dtype() == nq::kFloat32);
  y.sum().backward();
  CHECK(ag.grad().dtype() == nq::kBFloat16);
  CHECK(bg.grad().dtype() == nq::kFloat32);
  expect_close(ag.grad(), ac.grad(), kTolBf16, kTolBf16, "bf16 grad");
  expect_close(bg.grad(), bc.grad(), 1e-5, 1e-5, "f32 grad");
  // The CPU still rejects the mismatch.
  CHECK_THROWS_AS(nq::mul(a0.to(nq::kFloat64), b0), nq::Error);
}

TEST_CASE("core: sum/mean over any dims, keepdim, odd sizes, strided inputs; backward") {
  nq::Generator gen(6);
  struct Case {
    nq::Shape shape;
    std::vector<int64_t> dims;
  };
  const std::vector<Case> cases = {{{1000, 37}, {0}},    {{1000, 37}, {1}},   {{1000, 37}, {}},
                                   {{1000, 37}, {0, 1}}, {{3, 5, 7}, {0}},    {{3, 5, 7}, {1}},
                                   {{3, 5, 7}, {2}},     {{3, 5, 7}, {0, 2}}, {{3, 5, 7}, {}},
                                   {{3, 5, 7}, {1, 2}},  {{3, 5, 7}, {0, 1}}, {{3, 1, 7}, {1}},
                                   {{5000, 3}, {0}},     {{3, 5000}, {1}},    {{2, 70000}, {1}},
                                   {{4097, 129}, {0}},   {{1, 1}, {0, 1}},    {{2, 3, 4, 5}, {1, 3}}};
  for (nq::DType dt : {nq::kFloat32, nq::kBFloat16})
    for (const auto& c : cases)
      for (bool keepdim : {false, true})
        for (bool strided : {false, true}) {
          const std::string what = "sum " + nq::shape_str(c.shape) + " dims " + nq::shape_str(c.dims) +
                                   (keepdim ? " keepdim " : " ") + nq::dtype_name(dt) +
                                   (strided ? " strided" : "");
          Tensor x0 = rounded(nq::randn(c.shape, nq::kFloat32, &gen), dt);
          // Strided: the same logical tensor read through a permuted copy.
          auto view = [&](const Tensor& t) {
            if (!strided || t.dim() < 2) return t;
            return t.transpose(0, -1).contiguous().transpose(0, -1);
          };
          Tensor xc = x0.detach().requires_grad_();
          Tensor yc = nq::sum(view(xc), c.dims, keepdim);
          Tensor g0 = rounded(nq::randn(yc.shape(), nq::kFloat32, &gen), dt);
          yc.backward(g0);
          Tensor xg = on_gpu(x0, dt);
          Tensor yg = nq::sum(view(xg), c.dims, keepdim);
          CHECK(yg.shape() == yc.shape());
          yg.backward(g0.cuda().to(dt));
          const double rt = dt == nq::kBFloat16 ? kTolBf16 : 1e-4;
          expect_close(yg, yc, rt, dt == nq::kBFloat16 ? 0.1 : 1e-3, what);
          expect_close(xg.grad(), xc.grad(), rt, rt, what + " backward");
          Tensor mc = nq::mean(x0, c.dims, keepdim), mg = nq::mean(x0.cuda().to(dt), c.dims, keepdim);
          expect_close(mg, mc, rt, dt == nq::kBFloat16 ? 0.02 : 1e-5, "mean " + what);
        }
}

TEST_CASE("core: max over a dim (values, arg-max, ties, backward), argmax, max over all") {
  nq::Generator gen(7);
  for (nq::DType dt : {nq::kFloat32, nq::kBFloat16})
    for (const nq::Shape& shape : {nq::Shape{3, 5, 7}, nq::Shape{1000, 37}, nq::Shape{2, 50257}})
      for (int64_t dim = 0; dim < static_cast<int64_t>(shape.size()); ++dim) {
        const std::string what =
            "max " + nq::shape_str(shape) + " dim " + std::to_string(dim) + " " + nq::dtype_name(dt);
        // Few distinct values: many ties, first index must win.
        Tensor x0 = nq::uniform(shape, 0, 4, nq::kFloat32, &gen).to(nq::kInt64).to(nq::kFloat32);
        Tensor xc = x0.detach().requires_grad_();
        Tensor yc = nq::max(xc, dim, false);
        Tensor g0 = nq::randn(yc.shape(), nq::kFloat32, &gen);
        yc.backward(g0);
        Tensor xg = on_gpu(x0, dt);
        Tensor yg = nq::max(xg, dim, false);
        yg.backward(g0.cuda().to(dt));
        expect_close(yg, yc, 0, kExact, what);
        expect_close(xg.grad(), rounded(xc.grad(), dt), 0, kExact, what + " backward");
        CHECK(nq::argmax(x0.cuda().to(dt), dim, true).to_vector<int64_t>() ==
              nq::argmax(x0, dim, true).to_vector<int64_t>());
      }
  Tensor x = nq::randn({123, 45}, nq::kFloat32, &gen);
  CHECK(nq::max(x.cuda()).item() == nq::max(x).item());
  // NaN wins, as on the CPU.
  Tensor n = nq::from_vector<float>({1, NAN, 3, 2}, {1, 4});
  CHECK(nq::argmax(n.cuda(), 1).item() == nq::argmax(n, 1).item());
}

TEST_CASE("core: to(Device) is differentiable; concat/stack/split on CUDA") {
  nq::Generator gen(8);
  Tensor x = nq::randn({3, 4}, nq::kFloat32, &gen).requires_grad_();
  Tensor y = nq::mul(x.cuda(), 3.0);
  nq::sum(y).backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device().is_cpu());
  expect_close(x.grad(), nq::full({3, 4}, 3.0), 0, kExact, "grad through to(cuda)");

  Tensor a0 = nq::randn({2, 3}, nq::kFloat32, &gen), b0 = nq::randn({2, 5}, nq::kFloat32, &gen);
  Tensor ac = a0.detach().requires_grad_(), bc = b0.detach().requires_grad_();
  Tensor ag = on_gpu(a0, nq::kFloat32), bg = on_gpu(b0, nq::kFloat32);
  Tensor w = nq::randn({2, 8}, nq::kFloat32, &gen);
  Tensor cc = nq::concat({ac, bc}, 1), cg = nq::concat({ag, bg}, 1);
  expect_close(cg, cc, 0, kExact, "concat");
  nq::sum(cc * w).backward();
  nq::sum(cg * w.cuda()).backward();
  expect_close(ag.grad(), ac.grad(), 0, kExact, "concat grad a");
  expect_close(bg.grad(), bc.grad(), 0, kExact, "concat grad b");
  expect_close(nq::stack({a0.cuda(), a0.cuda()}, 1), nq::stack({a0, a0}, 1), 0, kExact, "stack");
  auto parts = nq::split(cg, {3, 5}, 1);
  expect_close(parts[1], b0, 0, kExact, "split");
  CHECK_THROWS_AS(nq::concat({a0, b0.cuda()}, 1), nq::Error);
  // slice backward builds its zero gradient on the device.
  Tensor s = on_gpu(b0, nq::kFloat32);
  nq::sum(s.slice(1, 1, 5, 2)).backward();
  expect_close(s.grad(), nq::from_vector<float>({0, 1, 0, 1, 0, 0, 1, 0, 1, 0}, {2, 5}), 0, kExact,
               "slice grad");
}

TEST_CASE("core: dropout on CUDA keeps 1-p, is reproducible, shares its mask with backward") {
  nq::Generator g1(11), g2(11);
  Tensor x = nq::ones({200, 300}, nq::TensorOptions().with_device(gpu())).requires_grad_();
  Tensor y = nq::dropout(x, 0.3, true, &g1);
  nq::sum(y).backward();
  expect_close(x.grad(), y, 0, kExact, "dx == mask for x == 1");
  std::vector<float> v = y.to_vector<float>();
  double kept = 0;
  for (float f : v) {
    CHECK((f == 0.0f || std::abs(f - 1.0f / 0.7f) < 1e-6f));
    kept += f != 0.0f;
  }
  CHECK(std::abs(kept / static_cast<double>(v.size()) - 0.7) < 0.01);
  Tensor y2 = nq::dropout(x.detach(), 0.3, true, &g2);
  expect_close(y2, y, 0, kExact, "same seed, same mask");
  CHECK(nq::dropout(x, 0.3, false, &g1).shares_storage_with(x));
}

TEST_CASE("core: the caching allocator reuses freed blocks") {
  nq::cuda::synchronize(0);
  const size_t before = nq::cuda::allocated_bytes(0);
  { Tensor t = nq::empty({1 << 18}, nq::TensorOptions().with_device(gpu())); }  // 1 MiB
  const size_t cached = nq::cuda::cached_bytes(0);
  CHECK(cached >= (size_t(1) << 20));
  CHECK(nq::cuda::allocated_bytes(0) == before);
  {
    Tensor t = nq::empty({1 << 18}, nq::TensorOptions().with_device(gpu()));
    CHECK(nq::cuda::cached_bytes(0) == cached - (size_t(2) << 20));  // 1 MiB rounds to one 2 MiB block
    CHECK(nq::cuda::allocated_bytes(0) > before);
    CHECK(nq::cuda::peak_allocated_bytes(0) >= nq::cuda::allocated_bytes(0));
  }
  CHECK(nq::cuda::allocated_bytes(0) == before);
  nq::cuda::empty_cache();
  CHECK(nq::cuda::cached_bytes(0) == 0);
  CHECK(!nq::cuda::device_name(0).empty());
}

TEST_CASE("core: errors name the op: bad device, mixed devices, CPU-only kernels") {
  CHECK_THROWS_AS(nq::zeros({2}, nq::TensorOptions().with_device(nq::Device::cuda(99))), nq::Error);
  CHECK_THROWS_AS(nq::cuda::stream(99), nq::Error);
  Tensor a = nq::ones({3}), b = nq::ones({3}).cuda();
  CHECK_THROWS_AS(nq::add(a, b), nq::Error);
  CHECK_THROWS_AS(nq::add(b, a), nq::Error);
  CHECK_THROWS_AS(nq::where(b, a, b), nq::Error);
  try {
    nq::cpu::map_n<float, 1>({b}, "probe", [](float v) { return v; });
    FAIL("expected a throw");
  } catch (const nq::Error& e) {
    CHECK(std::string(e.what()).find("no CUDA implementation for probe (tensor on cuda:0)") !=
          std::string::npos);
  }
}
