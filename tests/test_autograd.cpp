// The autograd engine's behaviours (the per-op gradients are checked by the
// op table in test_ops.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <map>
#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using nqtest::contains;
using nqtest::error_of;
using nqtest::V;
using nqtest::values;

nq::Tensor leaf(const V& v, const nq::Shape& s) {
  return nq::from_vector(v, s, nq::kFloat64).requires_grad_();
}

}  // namespace

TEST_CASE("autograd: backward from a scalar") {
  nq::Tensor x = leaf({1, 2, 3}, {3});
  nq::Tensor y = (x * x).sum();  // dy/dx = 2x
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name == "sum");
  y.backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().shape() == nq::Shape{3});
  CHECK(values(x.grad()) == V{2, 4, 6});
}

TEST_CASE("autograd: a non-scalar needs an explicit upstream gradient") {
  nq::Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  nq::Tensor y = x * 3.0;
  const std::string msg = error_of([&] { y.backward(); });
  CHECK(contains(msg, "nq::backward"));
  CHECK(contains(msg, "scalar"));
  y.backward(nq::from_vector(V{1, 0, -1, 2}, {2, 2}, nq::kFloat64));
  CHECK(values(x.grad()) == V{3, 0, -3, 6});
  // The upstream gradient must match the tensor's shape.
  nq::Tensor z = x * 2.0;
  CHECK(contains(error_of([&] { z.backward(nq::ones({4}, nq::kFloat64)); }), "[4]"));
}

TEST_CASE("autograd: a tensor used twice accumulates both paths (y = x*x + x)") {
  nq::Tensor x = leaf({-1, 0.5, 2}, {3});
  nq::Tensor y = (x * x + x).sum();  // dy/dx = 2x + 1
  y.backward();
  CHECK(values(x.grad()) == V{-1, 2, 5});
}

TEST_CASE("autograd: a diamond graph sums the gradients at the shared node") {
  nq::Tensor x = leaf({1, 2}, {2});
  nq::Tensor h = nq::exp(x);
  nq::Tensor y = (h * 2.0 + h * h).sum();  // dy/dh = 2 + 2h, dh/dx = h
  y.backward();
  V g = values(x.grad());
  for (int i = 0; i < 2; ++i) {
    const double e = std::exp(i + 1.0);
    CHECK(g[i] == doctest::Approx((2 + 2 * e) * e));
  }
}

TEST_CASE("autograd: gradients accumulate over two backward calls") {
  nq::Tensor x = leaf({1, 2}, {2});
  (x * 3.0).sum().backward();
  (x * x).sum().backward();
  CHECK(values(x.grad()) == V{3 + 2, 3 + 4});
}

TEST_CASE("autograd: zero_grad keeps the same .grad storage, zero_grad(true) drops it") {
  nq::Tensor x = leaf({1, 2, 3}, {3});
  (x * x).sum().backward();
  nq::Tensor g = x.grad();
  REQUIRE(g.defined());
  const void* storage = g.storage()->data();
  nq::TensorImpl* impl = g.impl();
  x.zero_grad();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().impl() == impl);
  CHECK(x.grad().storage()->data() == storage);
  CHECK(values(x.grad()) == V{0, 0, 0});
  // Accumulating after zero_grad writes into the same buffer.
  (x * 2.0).sum().backward();
  CHECK(x.grad().storage()->data() == storage);
  CHECK(values(g) == V{2, 2, 2});
  x.zero_grad(true);
  CHECK_FALSE(x.grad().defined());
  (x * 5.0).sum().backward();
  CHECK(values(x.grad()) == V{5, 5, 5});
}

TEST_CASE("autograd: requires_grad propagates only from inputs that require it") {
  nq::Tensor a = nq::from_vector(V{1, 2}, {2}, nq::kFloat64);
  nq::Tensor b = nq::from_vector(V{3, 4}, {2}, nq::kFloat64);
  nq::Tensor c = a * b + nq::exp(a);
  CHECK_FALSE(c.requires_grad());
  CHECK_FALSE(c.grad_fn());
  CHECK(c.is_leaf());
  nq::Tensor w = leaf({1, 1}, {2});
  nq::Tensor d = a * w;
  CHECK(d.requires_grad());
  CHECK(d.grad_fn());
  // Integer tensors cannot require grad.
  nq::Tensor ids = nq::arange(3, nq::kInt64);
  CHECK(contains(error_of([&] { ids.set_requires_grad(true); }), "int64"));
  // A factory can create a parameter directly.
  CHECK(nq::zeros({2}, nq::TensorOptions(nq::kFloat32).with_requires_grad()).requires_grad());
}

TEST_CASE("autograd: NoGradGuard records nothing and restores the mode") {
  nq::Tensor x = leaf({1, 2}, {2});
  CHECK(nq::GradMode::is_enabled());
  {
    nq::NoGradGuard ng;
    CHECK_FALSE(nq::GradMode::is_enabled());
    nq::Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK_FALSE(y.grad_fn());
    {
      nq::EnableGradGuard eg;
      CHECK((x * 2.0).requires_grad());
    }
    CHECK_FALSE(nq::GradMode::is_enabled());
  }
  CHECK(nq::GradMode::is_enabled());
  CHECK((x * 2.0).requires_grad());
}

TEST_CASE("autograd: detach shares storage and cuts the graph") {
  nq::Tensor x = leaf({1, 2, 3}, {3});
  nq::Tensor y = x * 2.0;
  nq::Tensor d = y.detach();
  CHECK(d.shares_storage_with(y));
  CHECK(d.offset() == y.offset());
  CHECK_FALSE(d.requires_grad());
  CHECK_FALSE(d.grad_fn());
  CHECK(values(d) == V{2, 4, 6});
  // A function of the detached tensor sends nothing back to x.
  nq::Tensor z = (y * d).sum();  // dz/dx = 2 * d = 2 * (2x)
  z.backward();
  CHECK(values(x.grad()) == V{4, 8, 12});
}

TEST_CASE("autograd: a second backward without retain_graph throws and names the op") {
  nq::Tensor x = leaf({1, 2}, {2});
  nq::Tensor y = nq::exp(x).sum();
  y.backward();
  const std::string msg = error_of([&] { y.backward(); });
  CHECK(contains(msg, "nq::backward"));
  CHECK(contains(msg, "'sum'"));
  CHECK(contains(msg, "retain_graph"));
  // It is an nq::Error.
  CHECK_THROWS_AS(y.backward(), nq::Error);
}

TEST_CASE("autograd: the op named in the second-backward error is the first one reached") {
  nq::Tensor x = leaf({1, 2}, {2});
  nq::Tensor y = nq::tanh(x);
  y.backward(nq::ones({2}, nq::kFloat64));
  const std::string msg = error_of([&] { y.backward(nq::ones({2}, nq::kFloat64)); });
  CHECK(contains(msg, "'tanh'"));
  CHECK(contains(msg, "output [2]"));  // and the shape involved
}

TEST_CASE("autograd: retain_graph allows a second backward") {
  nq::Tensor x = leaf({1, 2}, {2});
  nq::Tensor y = (x * x).sum();
  y.backward(true);
  CHECK(values(x.grad()) == V{2, 4});
  y.backward();
  CHECK(values(x.grad()) == V{4, 8});
}

TEST_CASE("autograd: a frozen input gets no .grad and its gradient is not computed") {
  nq::Tensor x = leaf({1, 2, 3}, {3});
  nq::Tensor w = nq::from_vector(V{4, 5, 6}, {3}, nq::kFloat64);  // frozen
  nq::Tensor y = x * w;
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->needs(0));
  CHECK_FALSE(y.grad_fn()->needs(1));  // the closure skips it
  y.sum().backward();
  CHECK(values(x.grad()) == V{4, 5, 6});
  CHECK_FALSE(w.grad().defined());

  // The same for a frozen weight of matmul and of layer_norm.
  nq::Tensor a = leaf({1, 2, 3, 4}, {2, 2});
  nq::Tensor b = nq::from_vector(V{1, 0, 0, 1}, {2, 2}, nq::kFloat64);
  nq::Tensor m = nq::matmul(a, b);
  CHECK(m.grad_fn()->needs(0));
  CHECK_FALSE(m.grad_fn()->needs(1));
  m.sum().backward();
  CHECK_FALSE(b.grad().defined());
  nq::Tensor gamma = nq::ones({2}, nq::kFloat64);
  nq::Tensor beta = leaf({0, 0}, {2});
  nq::Tensor ln = nq::layer_norm(a.detach(), gamma, beta);
  REQUIRE(ln.grad_fn());
  CHECK_FALSE(ln.grad_fn()->needs(0));
  CHECK_FALSE(ln.grad_fn()->needs(1));
  CHECK(ln.grad_fn()->needs(2));
  ln.sum().backward();
  CHECK_FALSE(gamma.grad().defined());
  CHECK(values(beta.grad()) == V{2, 2});
}

TEST_CASE("autograd: retain_grad keeps the gradient of a non-leaf") {
  nq::Tensor x = leaf({1, 2}, {2});
  nq::Tensor h = x * 3.0;
  nq::Tensor k = x * 4.0;  // no retain_grad: stays without .grad
  h.retain_grad();
  (h * h + k).sum().backward();
  REQUIRE(h.grad().defined());
  CHECK(values(h.grad()) == V{6, 12});  // 2h
  CHECK_FALSE(k.grad().defined());
  CHECK(values(x.grad()) == V{18 + 4, 36 + 4});
}

TEST_CASE("autograd: backward on a tensor that does not require grad throws") {
  nq::Tensor x = nq::from_vector(V{1, 2}, {2}, nq::kFloat64);
  nq::Tensor y = (x * 2.0).sum();
  const std::string msg = error_of([&] { y.backward(); });
  CHECK(contains(msg, "nq::backward"));
  CHECK(contains(msg, "does not require grad"));
  nq::Tensor z;
  {
    nq::NoGradGuard ng;
    z = (leaf({1}, {1}) * 2.0).sum();
  }
  CHECK_THROWS_AS(z.backward(), nq::Error);
}

TEST_CASE("autograd: backward on a leaf accumulates into its own .grad") {
  nq::Tensor x = leaf({5}, {});
  x.backward();
  CHECK(x.grad().item() == 1.0);
}

TEST_CASE("autograd: in-place writes to a tensor that requires grad are refused outside no_grad") {
  nq::Tensor x = leaf({1, 2}, {2});
  CHECK(contains(error_of([&] { x.fill_(0.0); }), "in-place"));
  {
    nq::NoGradGuard ng;
    x.fill_(3.0);
  }
  CHECK(values(x) == V{3, 3});
}

TEST_CASE("autograd: gradients through views reach the base in its own layout") {
  nq::Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  nq::Tensor y = x.t().narrow(0, 1, 2);  // rows 1..2 of x^T = columns 1..2 of x
  (y * nq::from_vector(V{1, 2, 3, 4}, {2, 2}, nq::kFloat64)).sum().backward();
  CHECK(values(x.grad()) == V{0, 1, 3, 0, 2, 4});
  CHECK(x.grad().is_contiguous());
}

TEST_CASE("autograd: the parts of a split each fill their slice of one gradient") {
  // The engine writes each slice's gradient into one buffer for the split
  // tensor (Edge::slice); an unused part leaves zeros.
  nq::Tensor x = leaf({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4});
  nq::Tensor h = x * 2.0;  // a non-leaf: its gradient is pending in the engine
  auto parts = nq::split(h, {1, 2, 1}, 1);
  nq::Tensor w1 = nq::from_vector(V{10, 20, 30, 40}, {2, 2}, nq::kFloat64);
  nq::Tensor loss = (parts[0] * 3.0).sum() + (parts[1] * w1).sum();  // parts[2] unused
  loss.backward();
  CHECK(values(x.grad()) == V{6, 20, 40, 0, 6, 60, 80, 0});
}

TEST_CASE("autograd: overlapping slices, strided slices and the whole tensor all sum into one gradient") {
  // dL/dh for h (4,): each term adds its weights at the indices it reads.
  auto run = [](bool whole_first) {
    nq::Tensor x = leaf({1, 2, 3, 4}, {4});
    nq::Tensor h = x * 1.0;
    nq::Tensor whole = (h * nq::from_vector(V{1, 2, 3, 4}, {4}, nq::kFloat64)).sum();
    nq::Tensor parts = (h.narrow(0, 0, 2) * 10.0).sum() + (h.narrow(0, 1, 2) * 100.0).sum() +
                       (h.slice(0, 0, 4, 2) * 1000.0).sum() + h.select(0, 3) * 7.0;
    (whole_first ? whole + parts : parts + whole).backward();
    return values(x.grad());
  };
  const V want{1 + 10 + 1000, 2 + 10 + 100, 3 + 100 + 1000, 4 + 7};
  CHECK(run(true) == want);
  CHECK(run(false) == want);
}

TEST_CASE("autograd: a slice that overlaps an earlier one is added, whatever the order") {
  // The engine copies a slice's gradient into a zero buffer only where no
  // earlier slice wrote; each order of the three terms below must sum.
  const std::vector<std::array<int64_t, 2>> ranges{{0, 2}, {1, 3}, {3, 1}};  // (start, length)
  const std::vector<double> w{10, 100, 1000};
  std::array<int, 3> order{0, 1, 2};
  do {
    CAPTURE(order[0] * 100 + order[1] * 10 + order[2]);
    nq::Tensor x = leaf({1, 2, 3, 4}, {4});
    nq::Tensor h = x * 1.0;
    nq::Tensor loss;
    for (int i : order) {
      nq::Tensor t = (h.narrow(0, ranges[i][0], ranges[i][1]) * w[i]).sum();
      loss = loss.defined() ? loss + t : t;
    }
    loss.backward();
    CHECK(values(x.grad()) == V{10, 10 + 100, 100, 100 + 1000});
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST_CASE("autograd: a gradient returned to two inputs is never summed into in place") {
  // add's backward hands the same tensor to both inputs; the fan-in at h must
  // not write into it (the slice below makes the engine own h's sum).
  nq::Tensor x = leaf({1, 2, 3}, {3});
  nq::Tensor h = x * 1.0;
  nq::Tensor y = h + h;  // dy/dh = 2
  nq::Tensor loss =
      (y * nq::from_vector(V{1, 2, 3}, {3}, nq::kFloat64)).sum() + (h.narrow(0, 1, 1) * 5.0).sum();
  y.retain_grad();
  loss.backward();
  CHECK(values(x.grad()) == V{2, 4 + 5, 6});
  CHECK(values(y.grad()) == V{1, 2, 3});  // the shared gradient itself is unchanged
}

TEST_CASE("autograd: slices of a leaf accumulate into its .grad across passes") {
  nq::Tensor x = leaf({1, 2, 3, 4, 5, 6}, {3, 2});
  (x.narrow(0, 1, 2) * 2.0).sum().backward();  // first pass: .grad made from a slice
  CHECK(values(x.grad()) == V{0, 0, 2, 2, 2, 2});
  CHECK(x.grad().is_contiguous());
  ((x.select(1, 0) * 3.0).sum() + (x.narrow(0, 0, 1) * 5.0).sum()).backward();
  CHECK(values(x.grad()) == V{8, 5, 5, 2, 5, 2});
}

TEST_CASE("autograd: gradients keep the float32 dtype") {
  nq::Tensor x = nq::from_vector(std::vector<float>{1, 2}, {2}).requires_grad_();
  (x * x).sum().backward();
  CHECK(x.grad().dtype() == nq::kFloat32);
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 4});
}

TEST_CASE("autograd: the backward profiler counts each op's closures and is off by default") {
  nq::autograd::reset_backward_profile();
  nq::Tensor w = nq::randn({4, 3}).requires_grad_();
  nq::Tensor x = nq::randn({5, 4});
  nq::sum(nq::tanh(nq::matmul(x, w))).backward();
  CHECK(nq::autograd::backward_profile().empty());  // off: nothing recorded

  nq::autograd::set_backward_profiling(true);
  for (int i = 0; i < 2; ++i) nq::sum(nq::tanh(nq::matmul(x, w))).backward();
  nq::autograd::set_backward_profiling(false);
  auto prof = nq::autograd::backward_profile();
  std::map<std::string, int64_t> calls;
  for (auto& [name, t] : prof) {
    calls[name] = t.calls;
    CHECK(t.seconds >= 0.0);
  }
  CHECK(calls["matmul"] == 2);
  CHECK(calls["tanh"] == 2);
  CHECK(calls["sum"] == 2);
  CHECK(nq::autograd::backward_profile_table().find("matmul") != std::string::npos);
  nq::autograd::reset_backward_profile();
  CHECK(nq::autograd::backward_profile().empty());
}
