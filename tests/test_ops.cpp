// The op table (tests/op_cases.hpp): every op, checked by tests/op_harness.hpp
// against an independent double-precision reference (forward, float64 and
// float32) and against central finite differences (gradients of every float
// input). The same table runs on CUDA in tests/gpu/test_op_table.cpp.
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "op_cases.hpp"

TEST_CASE("op table: forward vs reference (f64, f32) and gradients vs finite differences") {
  const std::vector<OpCase> table = op_table();
  CHECK(table.size() > 150);
  int run = 0, failed = 0;
  for (const auto& c : table) {
    if (!selected(c)) continue;
    ++run;
    if (!run_op_case(c)) ++failed;
  }
  INFO(failed << " of " << run << " op cases failed");
  CHECK(failed == 0);
}

TEST_CASE("op table: case names are unique") {
  const std::vector<OpCase> table = op_table();
  std::map<std::string, int> seen;
  for (const auto& c : table) {
    INFO(c.name);
    CHECK(++seen[c.name] == 1);
  }
}

TEST_CASE("dropout: mask statistics, reproducibility, and the mask is shared by forward and backward") {
  nq::Generator g(7);
  nq::Tensor x = nq::ones({100, 100}, nq::kFloat64).requires_grad_();
  nq::Tensor y = nq::dropout(x, 0.3, true, &g);
  std::vector<double> v = y.to_vector<double>();
  int64_t dropped = 0;
  for (double e : v) {
    if (e == 0)
      ++dropped;
    else
      CHECK(e == doctest::Approx(1 / 0.7));
  }
  const double frac = static_cast<double>(dropped) / static_cast<double>(v.size());
  CHECK(frac > 0.27);
  CHECK(frac < 0.33);
  y.sum().backward();
  CHECK(x.grad().to_vector<double>() == v);  // d/dx sum(x * mask/(1-p)) = mask/(1-p)

  // Same seed, same mask; the generator advances, so the next mask differs.
  nq::Generator g1(5), g2(5);
  const std::vector<double> m1 = nq::dropout(x.detach(), 0.5, true, &g1).to_vector<double>();
  CHECK(m1 == nq::dropout(x.detach(), 0.5, true, &g2).to_vector<double>());
  CHECK(m1 != nq::dropout(x.detach(), 0.5, true, &g1).to_vector<double>());
}

TEST_CASE("softmax family: fully masked (all -inf) rows give 0 / -inf and zero gradients, not NaN") {
  nq::Tensor x = nq::full({2, 3}, -std::numeric_limits<double>::infinity(), nq::kFloat64);
  {
    nq::NoGradGuard ng;
    x.narrow(0, 0, 1).copy_(nq::from_vector(V{1, 2, 3}, {1, 3}));
  }
  x.requires_grad_();
  const nq::Tensor up = nq::from_vector(V{0.5, -1, 2, 1, 1, 1}, {2, 3});
  nq::Tensor s = nq::softmax(x, -1);
  V sv = s.to_vector<double>();
  CHECK(sv[3] == 0.0);
  CHECK(sv[4] == 0.0);
  CHECK(sv[5] == 0.0);
  s.backward(up);
  V g = x.grad().to_vector<double>();
  for (int i = 3; i < 6; ++i) CHECK(g[i] == 0.0);
  for (int i = 0; i < 3; ++i) CHECK(std::isfinite(g[i]));

  x.zero_grad(true);
  nq::Tensor l = nq::log_softmax(x, -1);
  V lv = l.to_vector<double>();
  for (int i = 3; i < 6; ++i) CHECK(lv[i] == -std::numeric_limits<double>::infinity());
  l.backward(up);
  g = x.grad().to_vector<double>();
  for (int i = 3; i < 6; ++i) CHECK(g[i] == 0.0);

  x.zero_grad(true);
  nq::Tensor e = nq::logsumexp(x, -1);
  CHECK(e.to_vector<double>()[1] == -std::numeric_limits<double>::infinity());
  e.backward(nq::ones({2}, nq::kFloat64));
  g = x.grad().to_vector<double>();
  for (int i = 3; i < 6; ++i) CHECK(g[i] == 0.0);
  CHECK(g[0] + g[1] + g[2] == doctest::Approx(1.0));
}

TEST_CASE("element-wise, reduction and softmax on tensors big enough to be split across threads") {
  nq::Generator g(11);
  const int64_t R = 300, C = 250;  // 75000 elements: several parallel chunks
  nq::Tensor a = nq::randn({R, C}, nq::kFloat64, &g), b = nq::randn({C}, nq::kFloat64, &g);
  const V av = a.to_vector<double>(), bv = b.to_vector<double>();
  const V sum = (a + b).to_vector<double>();
  const V sum_t = (a.t().contiguous().t() * 1.0 + b).to_vector<double>();  // strided operand
  const V col = a.t().sum({1}).to_vector<double>();
  const V sm = nq::softmax(a, 0).to_vector<double>();
  int64_t bad = 0;
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) {
      bad += sum[i * C + j] != av[i * C + j] + bv[j];
      bad += sum_t[i * C + j] != av[i * C + j] + bv[j];
    }
  CHECK(bad == 0);
  for (int64_t j = 0; j < C; ++j) {
    double s = 0, m = -1e300, z = 0;
    for (int64_t i = 0; i < R; ++i) {
      s += av[i * C + j];
      m = std::max(m, av[i * C + j]);
    }
    for (int64_t i = 0; i < R; ++i) z += std::exp(av[i * C + j] - m);
    CHECK(col[j] == doctest::Approx(s));
    CHECK(sm[j] == doctest::Approx(std::exp(av[j] - m) / z));
  }
}

TEST_CASE("cross_entropy: an all-ignored batch gives loss 0 and zero (not NaN) gradients") {
  for (auto red : {nq::Reduction::Sum, nq::Reduction::Mean, nq::Reduction::WeightedMean}) {
    nq::Tensor z = nq::randn({2, 3, 4}, nq::kFloat32).requires_grad_();
    nq::Tensor tg = nq::full({2, 3}, -100, nq::kInt64);
    nq::CrossEntropyOptions o;
    o.reduction = red;
    nq::Tensor loss = nq::cross_entropy(z, tg, o);
    CHECK(loss.item() == 0.0);
    loss.backward();
    REQUIRE(z.grad().defined());
    for (double gv : z.grad().to_vector<double>()) CHECK(gv == 0.0);
  }
}

TEST_CASE("softmax family: NaN in a row gives NaN outputs; a long fp32 row stays accurate") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  nq::Generator gen(3);
  // NaN at the start, middle and end of rows long enough for the vectorised
  // paths, next to finite values, to -inf (a masked row) and to +inf.
  for (auto dt : {nq::kFloat32, nq::kFloat64})
    for (int64_t n : {5, 37, 1000})
      for (int64_t pos : {int64_t(0), n / 2, n - 1})
        for (int kind = 0; kind < 3; ++kind) {
          CAPTURE(nq::dtype_name(dt));
          CAPTURE(n);
          CAPTURE(pos);
          CAPTURE(kind);
          V v = nq::randn({n}, nq::kFloat64, &gen).to_vector<double>();
          if (kind == 1) v.assign(n, -inf);
          if (kind == 2) v[(pos + 1) % n] = inf;
          v[pos] = nan;
          const nq::Tensor x = nq::from_vector(v, {1, n}).to(dt);
          for (double y : nq::softmax(x, -1).to_vector<double>()) CHECK(std::isnan(y));
          for (double y : nq::log_softmax(x, -1).to_vector<double>()) CHECK(std::isnan(y));
          CHECK(std::isnan(nq::logsumexp(x, -1).item()));
        }

  const int64_t n = 100000;
  const nq::Tensor x = nq::randn({n}, nq::kFloat32, &gen);
  const V y = nq::softmax(x, 0).to_vector<double>();
  const V ref = nq::softmax(x.to(nq::kFloat64), 0).to_vector<double>();  // same inputs, float64
  double sum = 0, worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum += y[i];
    worst = std::max(worst, std::abs(y[i] - ref[i]) / ref[i]);
  }
  CHECK(std::abs(sum - 1.0) < 1e-5);
  CHECK(worst < 1e-6);
  const double lse = nq::logsumexp(x, 0).item(), lse_ref = nq::logsumexp(x.to(nq::kFloat64), 0).item();
  CHECK(std::abs(lse - lse_ref) <= 1e-6 * std::abs(lse_ref));
}
