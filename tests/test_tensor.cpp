// Tensors: factories, views and storage sharing, copies, dtype conversion,
// printing, and the wording of error messages.
#include <doctest/doctest.h>

#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using nqtest::contains;
using nqtest::error_of;
using nqtest::V;
using nqtest::values;

}  // namespace

// ---- factories -----------------------------------------------------------------

TEST_CASE("tensor: zeros / ones / full / scalar_tensor") {
  nq::Tensor z = nq::zeros({2, 3});
  CHECK(z.shape() == nq::Shape{2, 3});
  CHECK(z.dtype() == nq::kFloat32);  // the default
  CHECK(z.numel() == 6);
  CHECK(z.dim() == 2);
  CHECK(z.is_contiguous());
  CHECK(z.strides() == nq::Strides{3, 1});
  CHECK(values(z) == V(6, 0.0));
  CHECK(values(nq::ones({4}, nq::kFloat64)) == V(4, 1.0));
  nq::Tensor f = nq::full({2, 2}, 2.5, nq::kFloat64);
  CHECK(f.dtype() == nq::kFloat64);
  CHECK(values(f) == V(4, 2.5));
  nq::Tensor s = nq::scalar_tensor(7.0);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 7.0);
  CHECK(values(nq::zeros_like(f)) == V(4, 0.0));
  CHECK(nq::ones_like(f).dtype() == nq::kFloat64);
}

TEST_CASE("tensor: arange") {
  CHECK(values(nq::arange(5)) == V{0, 1, 2, 3, 4});
  CHECK(values(nq::arange(1.0, 2.0, 0.25, nq::kFloat64)) == V{1, 1.25, 1.5, 1.75});
  CHECK(values(nq::arange(3.0, 0.0, -1.0)) == V{3, 2, 1});
  CHECK(nq::arange(0.0, 0.0).numel() == 0);
  nq::Tensor ids = nq::arange(4, nq::kInt64);
  CHECK(ids.dtype() == nq::kInt64);
  CHECK(ids.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
}

TEST_CASE("tensor: randn is reproducible with a seeded Generator") {
  nq::Generator g1(123), g2(123), g3(124);
  nq::Tensor a = nq::randn({50}, nq::kFloat64, &g1);
  nq::Tensor b = nq::randn({50}, nq::kFloat64, &g2);
  nq::Tensor c = nq::randn({50}, nq::kFloat64, &g3);
  CHECK(values(a) == values(b));
  CHECK(values(a) != values(c));
  // The stream advances: the next draw differs from the first.
  CHECK(values(nq::randn({50}, nq::kFloat64, &g1)) != values(a));
  // Reseeding restarts it.
  g1.manual_seed(123);
  CHECK(values(nq::randn({50}, nq::kFloat64, &g1)) == values(a));
  // Roughly standard normal.
  nq::Generator g(1);
  V v = values(nq::randn({20000}, nq::kFloat64, &g));
  double m = 0, s2 = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  for (double x : v) s2 += (x - m) * (x - m);
  s2 /= static_cast<double>(v.size());
  CHECK(std::abs(m) < 0.05);
  CHECK(std::abs(s2 - 1.0) < 0.05);
}

TEST_CASE("tensor: the default generator is reseeded by nq::manual_seed") {
  nq::manual_seed(42);
  V a = values(nq::randn({8}));
  nq::manual_seed(42);
  CHECK(values(nq::randn({8})) == a);
}

TEST_CASE("tensor: the generator state round-trips") {
  nq::Generator g(9);
  (void)g.normal();  // leaves a cached spare
  const std::string st = g.state();
  V a = values(nq::randn({7}, nq::kFloat64, &g));
  nq::Generator h;
  h.set_state(st);
  CHECK(values(nq::randn({7}, nq::kFloat64, &h)) == a);
}

TEST_CASE("tensor: uniform stays in [lo, hi) and rand in [0, 1)") {
  nq::Generator g(3);
  V u = values(nq::uniform({5000}, -2.0, 3.0, nq::kFloat64, &g));
  double lo = 1e9, hi = -1e9, m = 0;
  for (double x : u) {
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    m += x;
  }
  CHECK(lo >= -2.0);
  CHECK(hi < 3.0);
  CHECK(lo < -1.9);  // the whole range is used
  CHECK(hi > 2.9);
  CHECK(m / 5000 == doctest::Approx(0.5).epsilon(0.1));
  for (double x : values(nq::rand({100}, nq::kFloat32, &g))) {
    CHECK(x >= 0.0);
    CHECK(x < 1.0);
  }
}

TEST_CASE("tensor: from_vector follows the element type or the options") {
  nq::Tensor f = nq::from_vector(std::vector<float>{1.5f, 2.5f}, {2});
  CHECK(f.dtype() == nq::kFloat32);
  nq::Tensor d = nq::from_vector(V{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(d.dtype() == nq::kFloat64);
  CHECK(d.shape() == nq::Shape{2, 3});
  CHECK(values(d) == V{1, 2, 3, 4, 5, 6});
  nq::Tensor i = nq::from_vector(std::vector<int64_t>{3, -1}, {2});
  CHECK(i.dtype() == nq::kInt64);
  nq::Tensor c = nq::from_vector(V{1.0, 2.0}, {2}, nq::kFloat32);
  CHECK(c.dtype() == nq::kFloat32);
  const std::string msg = error_of([] { nq::from_vector(V{1, 2, 3}, {2, 2}); });
  CHECK(contains(msg, "nq::from_vector"));
  CHECK(contains(msg, "[2,2]"));
}

// ---- views and copies -------------------------------------------------------------

TEST_CASE("tensor: views share storage and writes through a view reach the base") {
  nq::Tensor base = nq::from_vector(V{0, 1, 2, 3, 4, 5}, {2, 3});
  nq::Tensor tr = base.t();
  nq::Tensor row = base.select(0, 1);
  nq::Tensor col = base.narrow(1, 2, 1);
  nq::Tensor flat = base.view({6});
  nq::Tensor ex = base.narrow(0, 0, 1).expand({4, 3});
  for (const nq::Tensor* v : {&tr, &row, &col, &flat, &ex}) CHECK(v->shares_storage_with(base));
  CHECK_FALSE(tr.is_contiguous());
  CHECK(tr.strides() == nq::Strides{1, 3});
  CHECK(row.offset() == 3);
  CHECK(ex.strides() == nq::Strides{0, 1});
  row.fill_(9.0);
  CHECK(values(base) == V{0, 1, 2, 9, 9, 9});
  tr.narrow(0, 0, 1).fill_(-1.0);  // column 0 of base
  CHECK(values(base) == V{-1, 1, 2, -1, 9, 9});
  flat.narrow(0, 2, 1).copy_(nq::scalar_tensor(5.0, nq::kFloat64));
  CHECK(values(base) == V{-1, 1, 5, -1, 9, 9});
  CHECK(values(col) == V{5, 9});
  CHECK(values(ex) == V{-1, 1, 5, -1, 1, 5, -1, 1, 5, -1, 1, 5});
}

TEST_CASE("tensor: add_ accumulates in place through views, broadcasts and converts dtype") {
  nq::Tensor base = nq::from_vector(V{0, 1, 2, 3, 4, 5}, {2, 3});
  const void* storage = base.raw_data_ptr();
  base.add_(nq::from_vector(V{10, 20, 30, 40, 50, 60}, {2, 3}));
  CHECK(values(base) == V{10, 21, 32, 43, 54, 65});
  CHECK(base.raw_data_ptr() == storage);                                // in place, no new buffer
  base.t().narrow(0, 1, 1).add_(nq::from_vector(V{100, 200}, {1, 2}));  // column 1, strided
  CHECK(values(base) == V{10, 121, 32, 43, 254, 65});
  base.add_(nq::from_vector(V{1, 2, 3}, {3}));  // row broadcast
  CHECK(values(base) == V{11, 123, 35, 44, 256, 68});
  // A float64 source into a float32 destination rounds the sum once.
  nq::Tensor f = nq::full({2}, 1.0, nq::kFloat32);
  f.add_(nq::full({2}, 1e-8, nq::kFloat64));
  CHECK(f.to_vector<float>() == std::vector<float>{1.0f, 1.0f});
  const int64_t big = (int64_t{1} << 53) + 1;  // not a double
  nq::Tensor i = nq::from_vector(std::vector<int64_t>(3, big), {3});
  i.add_(nq::from_vector(std::vector<int64_t>(3, 2), {3}));  // exact in int64, not via double
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>(3, big + 2));
  // Errors name the op and the shapes.
  const std::string msg = error_of([&] { base.add_(nq::zeros({4})); });
  CHECK(contains(msg, "add_"));
  CHECK(contains(msg, "[4]"));
  nq::Tensor w = nq::zeros({2}).requires_grad_();
  CHECK(contains(error_of([&] { w.add_(nq::ones({2})); }), "requires grad"));
}

TEST_CASE("tensor: reshape views when it can and copies when it must") {
  nq::Tensor x = nq::from_vector(V{0, 1, 2, 3, 4, 5}, {2, 3});
  nq::Tensor r = x.reshape({3, 2});
  CHECK(r.shares_storage_with(x));
  nq::Tensor t = x.t();  // (3,2), non-contiguous
  nq::Tensor rt = t.reshape({6});
  CHECK_FALSE(rt.shares_storage_with(x));
  CHECK(rt.is_contiguous());
  CHECK(values(rt) == V{0, 3, 1, 4, 2, 5});
  // A non-contiguous tensor can still be viewed when its dims split cleanly.
  nq::Tensor big = nq::arange(24.0, 0.0, -1.0).reshape({4, 6});
  nq::Tensor cols = big.narrow(1, 0, 4);  // (4,4) with row stride 6
  nq::Tensor v = cols.view({4, 2, 2});
  CHECK(v.shares_storage_with(big));
  CHECK(values(v) == values(cols));
}

TEST_CASE("tensor: view of a non-contiguous tensor throws with a message") {
  nq::Tensor x = nq::from_vector(V{0, 1, 2, 3, 4, 5}, {2, 3});
  const std::string msg = error_of([&] { x.t().view({6}); });
  CHECK(contains(msg, "nq::view"));
  CHECK(contains(msg, "[6]"));
  CHECK(contains(msg, "reshape"));
  CHECK(contains(error_of([&] { x.view({4, 2}); }), "[4,2]"));
  CHECK(contains(error_of([&] { x.reshape({-1, -1}); }), "-1"));
}

TEST_CASE("tensor: contiguous() copies only when needed") {
  nq::Tensor x = nq::from_vector(V{0, 1, 2, 3, 4, 5}, {2, 3});
  CHECK(x.contiguous().impl() == x.impl());
  nq::Tensor c = x.t().contiguous();
  CHECK(c.is_contiguous());
  CHECK_FALSE(c.shares_storage_with(x));
  CHECK(c.shape() == nq::Shape{3, 2});
  CHECK(values(c) == V{0, 3, 1, 4, 2, 5});
  nq::Tensor k = x.clone();
  CHECK_FALSE(k.shares_storage_with(x));
  CHECK(values(k) == values(x));
}

TEST_CASE("tensor: to(dtype) converts, and is a no-op for the same dtype") {
  nq::Tensor x = nq::from_vector(std::vector<float>{1.5f, -2.25f, 3.75f}, {3});
  nq::Tensor d = x.to(nq::kFloat64);
  CHECK(d.dtype() == nq::kFloat64);
  CHECK(values(d) == V{1.5, -2.25, 3.75});
  CHECK_FALSE(d.shares_storage_with(x));
  CHECK(x.to(nq::kFloat32).impl() == x.impl());
  nq::Tensor i = x.to(nq::kInt64);
  CHECK(i.dtype() == nq::kInt64);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3});  // truncation
  CHECK(values(i.to(nq::kFloat32)) == V{1, -2, 3});
  // A strided source converts element by element.
  nq::Tensor m = nq::from_vector(V{0, 1, 2, 3, 4, 5}, {2, 3}).t().to(nq::kFloat32);
  CHECK(m.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  // to() is differentiable between float types.
  nq::Tensor p = nq::from_vector(std::vector<float>{1, 2}, {2}).requires_grad_();
  (p.to(nq::kFloat64) * 3.0).sum().backward();
  CHECK(p.grad().dtype() == nq::kFloat32);
  CHECK(values(p.grad()) == V{3, 3});
}

TEST_CASE("tensor: item") {
  CHECK(nq::full({1, 1}, 4.5).item() == 4.5);
  CHECK(nq::from_vector(std::vector<int64_t>{7}, {}).item() == 7.0);
  const std::string msg = error_of([] { (void)nq::zeros({2, 2}).item(); });
  CHECK(contains(msg, "nq::item"));
  CHECK(contains(msg, "[2,2]"));
}

TEST_CASE("tensor: printing shows the values, shape and dtype") {
  nq::Tensor x = nq::from_vector(V{1.5, -2, 3.25, 4, 5, 6}, {2, 3});
  const std::string s = nq::to_string(x);
  CHECK(contains(s, "1.5"));
  CHECK(contains(s, "-2"));
  CHECK(contains(s, "3.25"));
  CHECK(contains(s, "float64"));
  CHECK(contains(s, "[2,3]"));
  std::ostringstream os;
  os << nq::from_vector(std::vector<float>{0.5f}, {});
  CHECK(contains(os.str(), "0.5"));
  CHECK(contains(os.str(), "float32"));
  // Long dims are summarised; autograd state is shown.
  const std::string big = nq::to_string(nq::arange(100));
  CHECK(contains(big, "..."));
  CHECK(contains(big, "99"));
  nq::Tensor p = nq::ones({2}).requires_grad_();
  CHECK(contains(nq::to_string(p), "requires_grad"));
  CHECK(contains(nq::to_string(p * 2.0), "grad_fn=mul_scalar"));
  CHECK(x.brief() == "Tensor[2,3] float64");
  CHECK(nq::to_string(nq::Tensor()) == "tensor(undefined)");
}

// ---- error messages -------------------------------------------------------------------

TEST_CASE("errors: a shape mismatch names the op and both shapes") {
  nq::Tensor a = nq::zeros({2, 3}), b = nq::zeros({4});
  const std::string msg = error_of([&] { nq::add(a, b); });
  CHECK(contains(msg, "nq::add"));
  CHECK(contains(msg, "[2,3]"));
  CHECK(contains(msg, "[4]"));
  CHECK(contains(error_of([&] { nq::mul(a, b); }), "nq::mul"));
  CHECK(contains(error_of([&] { nq::where(a, a, b); }), "nq::where"));
  const std::string cat = error_of([&] { nq::concat({a, nq::zeros({3, 3})}, 1); });
  CHECK(contains(cat, "nq::concat"));
  CHECK(contains(cat, "[3,3]"));
  CHECK(contains(cat, "[2,3]"));
  CHECK(contains(error_of([&] { a.expand({4, 3}); }), "[4,3]"));
}

TEST_CASE("errors: a bad dim names the dim") {
  nq::Tensor x = nq::zeros({2, 3});
  const std::string msg = error_of([&] { x.sum({3}); });
  CHECK(contains(msg, "nq::sum"));
  CHECK(contains(msg, "dim 3"));
  CHECK(contains(msg, "rank 2"));
  CHECK(contains(error_of([&] { x.transpose(0, -3); }), "dim -3"));
  CHECK(contains(error_of([&] { nq::softmax(x, 2); }), "dim 2"));
  CHECK(contains(error_of([&] { x.narrow(1, 2, 2); }), "dim 1"));
  CHECK(contains(error_of([&] { nq::max(x, 5); }), "dim 5"));
}

TEST_CASE("errors: a dtype mismatch names both dtypes") {
  nq::Tensor a = nq::zeros({2}, nq::kFloat32), b = nq::zeros({2}, nq::kFloat64);
  const std::string msg = error_of([&] { nq::add(a, b); });
  CHECK(contains(msg, "nq::add"));
  CHECK(contains(msg, "float32"));
  CHECK(contains(msg, "float64"));
  const std::string mm = error_of([&] { nq::matmul(nq::zeros({2, 2}), nq::zeros({2, 2}, nq::kFloat64)); });
  CHECK(contains(mm, "float32"));
  CHECK(contains(mm, "float64"));
  const std::string dp = error_of([&] { (void)a.data_ptr<double>(); });
  CHECK(contains(dp, "float32"));
  CHECK(contains(dp, "float64"));
  CHECK(contains(error_of([&] { nq::exp(nq::arange(3, nq::kInt64)); }), "int64"));
}

TEST_CASE("errors: matmul with mismatched inner dims names both shapes") {
  const std::string msg = error_of([] { nq::matmul(nq::zeros({2, 3}), nq::zeros({4, 5})); });
  CHECK(contains(msg, "nq::matmul"));
  CHECK(contains(msg, "[2,3]"));
  CHECK(contains(msg, "[4,5]"));
  const std::string lin = error_of([] { nq::linear(nq::zeros({2, 3}), nq::zeros({5, 4})); });
  CHECK(contains(lin, "nq::linear"));
  CHECK(contains(lin, "[2,3]"));
  CHECK(contains(lin, "[5,4]"));
}

TEST_CASE("errors: op-specific messages") {
  const std::string emb = error_of([] {
    nq::embedding(nq::zeros({3, 2}), nq::from_vector(std::vector<int64_t>{0, 3}, {2}));
  });
  CHECK(contains(emb, "nq::embedding"));
  CHECK(contains(emb, "3"));
  const std::string ce = error_of([] {
    nq::cross_entropy(nq::zeros({2, 4}), nq::from_vector(std::vector<int64_t>{0, 1, 2}, {3}));
  });
  CHECK(contains(ce, "nq::cross_entropy"));
  CHECK(contains(ce, "[3]"));
  CHECK(contains(ce, "[2,4]"));
  const std::string dr = error_of([] { nq::dropout(nq::zeros({2}), 1.0); });
  CHECK(contains(dr, "nq::dropout"));
  const std::string ln = error_of([] { nq::layer_norm(nq::zeros({2, 3}), nq::zeros({4}), nq::Tensor()); });
  CHECK(contains(ln, "nq::layer_norm"));
  CHECK(contains(ln, "[4]"));
  const std::string at = error_of([] {
    nq::scaled_dot_product_attention(nq::zeros({1, 1, 2, 4}), nq::zeros({1, 1, 3, 5}),
                                     nq::zeros({1, 1, 3, 4}));
  });
  CHECK(contains(at, "nq::scaled_dot_product_attention"));
  CHECK(contains(at, "[1,1,3,5]"));
  CHECK(contains(error_of([] { (void)nq::Tensor().shape(); }), "undefined"));
}
