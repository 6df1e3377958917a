#pragma once
// A table-driven op checker in the spirit of ggml's test-backend-ops.
//
// Each OpCase names an op, describes its inputs (shape, value range and the
// memory layout the op should see), and gives an independent reference: plain
// double-precision loops over std::vector<double> with explicit index
// arithmetic, never nq ops. run_op_case() then checks
//
//   (a) the float64 forward against the reference (tight tolerance) and the
//       float32 forward against the reference evaluated on the float-rounded
//       inputs (loose tolerance);
//   (b) the gradient of every differentiable input against central finite
//       differences in float64. The scalar being differentiated is
//       loss = sum(out * R) for a fixed random R, so every output element is
//       weighted; analytically that is out.backward(R). Each element of the
//       input's *stored* tensor is perturbed, so for a sliced input the gaps
//       must get gradient 0 and for an expanded input each stored element gets
//       the sum over its broadcast copies.
//
// Failures name the case, the check, the input and element index, and both
// values. Set NQ_OP_FILTER=<substring> to run only matching cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <nextquill/nextquill.hpp>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace nqtest {

using nq::Shape;

// ---- plain index arithmetic (shared by the harness and the references) ------

// Row-major flat index of the multi-index `idx` in `shape`.
inline int64_t flat_index(const Shape& shape, const std::vector<int64_t>& idx) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
  return f;
}

// Multi-index of the row-major flat index `f` in `shape`.
inline std::vector<int64_t> unflatten(const Shape& shape, int64_t f) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = f % shape[d];
    f /= shape[d];
  }
  return idx;
}

// Calls f(idx) for every multi-index of `shape`, row-major (once for rank 0).
template <typename F>
void for_each_index(const Shape& shape, F&& f) {
  const int64_t n = nq::numel_of(shape);
  for (int64_t i = 0; i < n; ++i) f(unflatten(shape, i));
}

// Flat index into an input of shape `in` that numpy-broadcasts to the output
// multi-index `out_idx` (dims aligned on the right, size-1 dims pinned to 0).
inline int64_t broadcast_flat(const Shape& in, const std::vector<int64_t>& out_idx) {
  const size_t lead = out_idx.size() - in.size();
  int64_t f = 0;
  for (size_t d = 0; d < in.size(); ++d) f = f * in[d] + (in[d] == 1 ? 0 : out_idx[lead + d]);
  return f;
}

// numpy broadcast of two shapes (written here again, independent of nq).
inline Shape broadcast(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i + a.size() < n ? 1 : a[i + a.size() - n];
    const int64_t db = i + b.size() < n ? 1 : b[i + b.size() - n];
    out[i] = da == 1 ? db : da;
  }
  return out;
}

inline int64_t wrap(int64_t d, int64_t rank) { return d < 0 ? d + rank : d; }

// ---- what reference functions see -------------------------------------------

// One input as the reference sees it: its logical values, row-major over
// `shape`, whatever layout the op was given.
struct RefInput {
  Shape shape;
  std::vector<double> v;

  int64_t numel() const { return static_cast<int64_t>(v.size()); }
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t size(int64_t d) const { return shape[wrap(d, rank())]; }
  double operator[](int64_t i) const { return v[i]; }
  double at(const std::vector<int64_t>& idx) const { return v[flat_index(shape, idx)]; }
};

// The reference result: expected shape and row-major values.
struct RefOut {
  Shape shape;
  std::vector<double> v;
};

// ---- input descriptions -------------------------------------------------------

enum class Layout {
  Contiguous,  // a plain contiguous tensor
  Transposed,  // stored with the last two dims swapped, seen through .transpose(-2, -1)
  Permuted,    // stored with all dims reversed, seen through .permute(reversed)
  Sliced,      // a strided window of a larger tensor: .narrow(0, 1, n0) and every
               // other element of a longer last dim (.slice(-1, 1, 1 + 2n, 2))
  Expanded,    // a smaller tensor (expand_from) broadcast with .expand(shape)
};

inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous:
      return "contiguous";
    case Layout::Transposed:
      return "transposed";
    case Layout::Permuted:
      return "permuted";
    case Layout::Sliced:
      return "sliced";
    case Layout::Expanded:
      return "expanded";
  }
  return "?";
}

enum class InputKind {
  Random,     // drawn from [lo, hi), differentiable
  Fixed,      // given values, never differentiated (ids, targets, masks, weights)
  Undefined,  // an undefined nq::Tensor() (optional arguments)
};

struct InputSpec {
  InputKind kind = InputKind::Random;
  Shape shape;  // the logical shape the op sees
  Layout layout = Layout::Contiguous;
  Shape expand_from;  // Layout::Expanded: the stored shape
  // Random inputs.
  double lo = -1.0, hi = 1.0;
  double min_abs = 0.0;   // redraw values with |v| < min_abs (kinks at 0: abs, relu)
  bool distinct = false;  // well-separated values (no ties for max/argmax)
  // Fixed inputs.
  std::vector<double> values;
  bool integer = true;  // int64; otherwise floating in the case's dtype

  // Chainable modifiers: in({2, 3}).range(0.5, 2).transposed()
  InputSpec range(double l, double h) const {
    auto c = *this;
    c.lo = l;
    c.hi = h;
    return c;
  }
  InputSpec away_from_zero(double m) const {
    auto c = *this;
    c.min_abs = m;
    return c;
  }
  InputSpec distinct_values() const {
    auto c = *this;
    c.distinct = true;
    return c;
  }
  InputSpec transposed() const {
    auto c = *this;
    c.layout = Layout::Transposed;
    return c;
  }
  InputSpec permuted() const {
    auto c = *this;
    c.layout = Layout::Permuted;
    return c;
  }
  InputSpec sliced() const {
    auto c = *this;
    c.layout = Layout::Sliced;
    return c;
  }
  InputSpec expanded_from(Shape stored) const {
    auto c = *this;
    c.layout = Layout::Expanded;
    c.expand_from = std::move(stored);
    return c;
  }
  bool differentiable() const { return kind == InputKind::Random; }
};

// A differentiable input with values in [-1, 1).
inline InputSpec in(Shape shape) {
  InputSpec s;
  s.shape = std::move(shape);
  return s;
}
// An int64 input (ids, targets, masks) with the given row-major values.
inline InputSpec ints(std::vector<int64_t> values, Shape shape) {
  InputSpec s;
  s.kind = InputKind::Fixed;
  s.shape = std::move(shape);
  s.values.assign(values.begin(), values.end());
  s.integer = true;
  return s;
}
// A floating input in the case's dtype that is not differentiated (weights, masks).
inline InputSpec fixed(std::vector<double> values, Shape shape) {
  InputSpec s;
  s.kind = InputKind::Fixed;
  s.shape = std::move(shape);
  s.values = std::move(values);
  s.integer = false;
  return s;
}
// An undefined tensor (e.g. layer_norm without affine parameters).
inline InputSpec undefined() {
  InputSpec s;
  s.kind = InputKind::Undefined;
  return s;
}

// |got - want| <= abs + rel * |want| (NaN never passes).
struct Tol {
  double rel;
  double abs;
};

struct OpCase {
  std::string name{};
  std::vector<InputSpec> inputs{};
  std::function<nq::Tensor(const std::vector<nq::Tensor>&)> op{};
  // The independent reference; see RefInput.
  std::function<RefOut(const std::vector<RefInput>&)> reference{};
  // Instead of `reference`, for ops with hidden randomness (dropout): also
  // sees the values the op produced, to recover what it drew.
  std::function<RefOut(const std::vector<RefInput>&, const RefInput& actual)> reference_given_output{};
  Tol fwd{1e-6, 1e-8};    // float64 forward
  Tol fwd32{1e-4, 1e-5};  // float32 forward
  Tol grad{1e-5, 1e-6};   // float64 gradient vs finite differences
  double fd_step = 1e-6;
  bool check_f32 = true;
  bool check_grad = true;  // off for ops with no differentiable output (argmax)
};

// ---- materialising inputs ---------------------------------------------------

// One input's stored values (what finite differences perturb).
struct Stored {
  Shape shape;
  std::vector<double> v;
};

// The shape of the tensor that is actually allocated for a layout.
inline Shape stored_shape(const InputSpec& s) {
  Shape st = s.shape;
  switch (s.layout) {
    case Layout::Contiguous:
      break;
    case Layout::Transposed:
      std::swap(st[st.size() - 1], st[st.size() - 2]);
      break;
    case Layout::Permuted:
      std::reverse(st.begin(), st.end());
      break;
    case Layout::Sliced:
      if (st.size() >= 2) st[0] += 2;
      st.back() = 2 * st.back() + 1;
      break;
    case Layout::Expanded:
      st = s.expand_from;
      break;
  }
  return st;
}

// Where logical element `idx` lives in the stored tensor (row-major flat
// index), from the layout's definition alone.
inline int64_t stored_flat(const InputSpec& s, const Shape& st, std::vector<int64_t> idx) {
  switch (s.layout) {
    case Layout::Contiguous:
      break;
    case Layout::Transposed:
      std::swap(idx[idx.size() - 1], idx[idx.size() - 2]);
      break;
    case Layout::Permuted:
      std::reverse(idx.begin(), idx.end());
      break;
    case Layout::Sliced:
      if (idx.size() >= 2) idx[0] += 1;
      idx.back() = 1 + 2 * idx.back();
      break;
    case Layout::Expanded:
      return broadcast_flat(st, idx);
  }
  return flat_index(st, idx);
}

// The logical (row-major) values of an input given its stored values.
inline std::vector<double> logical_values(const InputSpec& s, const Stored& st) {
  std::vector<double> out(nq::numel_of(s.shape));
  int64_t i = 0;
  for_each_index(s.shape,
                 [&](const std::vector<int64_t>& idx) { out[i++] = st.v[stored_flat(s, st.shape, idx)]; });
  return out;
}

inline double round_to(double x, nq::DType d) {
  return d == nq::kFloat32 ? static_cast<double>(static_cast<float>(x)) : x;
}

inline uint64_t seed_of(const std::string& name) {  // FNV-1a: stable everywhere
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Draws the stored values of a random input.
inline Stored draw(const InputSpec& s, nq::Generator& g) {
  Stored st;
  st.shape = s.kind == InputKind::Fixed ? s.shape : stored_shape(s);
  if (s.kind == InputKind::Fixed) {
    st.v = s.values;
    return st;
  }
  const int64_t n = nq::numel_of(st.shape);
  st.v.resize(n);
  if (s.distinct) {  // a shuffled ladder: neighbours differ by >= 0.4 (hi-lo)/n
    std::vector<int64_t> rank(n);
    std::iota(rank.begin(), rank.end(), 0);
    for (int64_t i = n - 1; i > 0; --i) std::swap(rank[i], rank[static_cast<int64_t>(g.uniform() * (i + 1))]);
    for (int64_t i = 0; i < n; ++i)
      st.v[i] = s.lo + (s.hi - s.lo) * (static_cast<double>(rank[i]) + 0.5 + 0.2 * (g.uniform() - 0.5)) / n;
    return st;
  }
  for (auto& x : st.v) {
    do x = s.lo + (s.hi - s.lo) * g.uniform();
    while (std::abs(x) < s.min_abs);
  }
  return st;
}

// The tensor the op sees, built from `st` through real view ops so that the
// gradient flows back to `leaf` (the stored tensor).
struct Built {
  nq::Tensor leaf;
  nq::Tensor arg;
};

inline Built build(const InputSpec& s, const Stored& st, nq::DType dtype, bool requires_grad) {
  if (s.kind == InputKind::Undefined) return {};
  if (s.kind == InputKind::Fixed) {
    nq::Tensor t = nq::from_vector(st.v, st.shape, s.integer ? nq::kInt64 : dtype);
    return {t, t};
  }
  nq::Tensor leaf = nq::from_vector(st.v, st.shape, dtype);
  if (requires_grad) leaf.set_requires_grad(true);
  nq::Tensor x = leaf;
  const int64_t r = static_cast<int64_t>(s.shape.size());
  switch (s.layout) {
    case Layout::Contiguous:
      break;
    case Layout::Transposed:
      x = leaf.transpose(-2, -1);
      break;
    case Layout::Permuted: {
      std::vector<int64_t> p(r);
      for (int64_t i = 0; i < r; ++i) p[i] = r - 1 - i;
      x = leaf.permute(p);
      break;
    }
    case Layout::Sliced:
      if (r >= 2) x = x.narrow(0, 1, s.shape[0]);
      x = x.slice(-1, 1, 1 + 2 * s.shape.back(), 2);
      break;
    case Layout::Expanded:
      x = leaf.expand(s.shape);
      break;
  }
  return {leaf, x};
}

// ---- the checks ----------------------------------------------------------------

namespace detail {

inline bool within(double got, double want, Tol t) {
  return std::abs(got - want) <= t.abs + t.rel * std::abs(want);  // false for NaN
}

inline std::string fmt(double x) {
  std::ostringstream os;
  os.precision(12);
  os << x;
  return os.str();
}

// Collects failures of one case and reports them (a few per check) through doctest.
class Report {
 public:
  explicit Report(std::string name) : name_(std::move(name)) {}
  void fail(const std::string& check, const std::string& what) {
    if (++count_[check] <= kShown) FAIL_CHECK("op case '" << name_ << "', " << check << ": " << what);
  }
  void finish() {
    for (const auto& [check, n] : count_)
      if (n > kShown)
        FAIL_CHECK("op case '" << name_ << "', " << check << ": ... and " << n - kShown << " more");
  }
  bool ok() const { return count_.empty(); }

 private:
  static constexpr int kShown = 4;
  std::string name_;
  std::map<std::string, int> count_;
};

inline std::vector<RefInput> ref_inputs(const OpCase& c, const std::vector<Stored>& st, nq::DType dtype) {
  std::vector<RefInput> r(c.inputs.size());
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    const InputSpec& s = c.inputs[k];
    if (s.kind == InputKind::Undefined) continue;
    r[k].shape = s.shape;
    r[k].v = s.kind == InputKind::Fixed ? s.values : logical_values(s, st[k]);
    if (!(s.kind == InputKind::Fixed && s.integer))
      for (auto& x : r[k].v) x = round_to(x, dtype);
  }
  return r;
}

inline std::vector<nq::Tensor> build_args(const OpCase& c, const std::vector<Stored>& st, nq::DType dtype,
                                          bool requires_grad, std::vector<nq::Tensor>* leaves = nullptr) {
  std::vector<nq::Tensor> args;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    Built b = build(c.inputs[k], st[k], dtype, requires_grad && c.inputs[k].differentiable());
    args.push_back(b.arg);
    if (leaves) leaves->push_back(b.leaf);
  }
  return args;
}

// (a) forward in `dtype` against the reference.
inline void check_forward(const OpCase& c, const std::vector<Stored>& st, nq::DType dtype, Tol tol,
                          Report& rep) {
  const std::string check = std::string(nq::dtype_name(dtype)) + " forward";
  std::vector<RefInput> refs = ref_inputs(c, st, dtype);
  std::vector<nq::Tensor> args = build_args(c, st, dtype, false);
  // The harness itself: each argument must hold the logical values, and a
  // non-contiguous layout must really be non-contiguous.
  for (size_t k = 0; k < args.size(); ++k) {
    const InputSpec& s = c.inputs[k];
    if (s.kind != InputKind::Random) continue;
    if (args[k].shape() != s.shape || args[k].to_vector<double>() != refs[k].v)
      rep.fail(check, "harness: input " + std::to_string(k) + " (" + layout_name(s.layout) +
                          ") does not hold its logical values");
    if (s.layout != Layout::Contiguous && args[k].is_contiguous())
      rep.fail(check, "harness: input " + std::to_string(k) + " is meant to be " + layout_name(s.layout) +
                          " but is contiguous; pick a shape without size-1 dims");
  }
  nq::Tensor out;
  try {
    out = c.op(args);
  } catch (const std::exception& e) {
    rep.fail(check, std::string("threw: ") + e.what());
    return;
  }
  // Inputs must be left alone.
  for (size_t k = 0; k < args.size(); ++k)
    if (c.inputs[k].kind == InputKind::Random && args[k].to_vector<double>() != refs[k].v)
      rep.fail(check, "input " + std::to_string(k) + " was modified by the op");
  if (nq::is_floating(out.dtype()) && out.dtype() != dtype)
    rep.fail(check, std::string("output dtype is ") + nq::dtype_name(out.dtype()) + ", expected " +
                        nq::dtype_name(dtype));
  RefInput actual{out.shape(), out.to_vector<double>()};
  RefOut want = c.reference_given_output ? c.reference_given_output(refs, actual) : c.reference(refs);
  if (out.shape() != want.shape) {
    rep.fail(check, "output shape " + nq::shape_str(out.shape()) + ", expected " + nq::shape_str(want.shape));
    return;
  }
  if (static_cast<int64_t>(want.v.size()) != nq::numel_of(want.shape)) {
    rep.fail(check, "reference returned " + std::to_string(want.v.size()) + " values for shape " +
                        nq::shape_str(want.shape));
    return;
  }
  for (size_t i = 0; i < want.v.size(); ++i)
    if (!within(actual.v[i], want.v[i], tol))
      rep.fail(check, "output[" + std::to_string(i) + "] (at " + nq::shape_str(unflatten(want.shape, i)) +
                          "): got " + fmt(actual.v[i]) + ", expected " + fmt(want.v[i]));
}

// sum(out * R) in double, computed outside nq.
inline double weighted_sum(const nq::Tensor& out, const std::vector<double>& R) {
  std::vector<double> o = out.to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += o[i] * R[i];
  return s;
}

// (b) float64 gradients against central finite differences.
inline void check_grads(const OpCase& c, std::vector<Stored> st, nq::Generator& g, Report& rep) {
  const std::string check = "float64 gradient";
  std::vector<nq::Tensor> leaves;
  std::vector<nq::Tensor> args = build_args(c, st, nq::kFloat64, true, &leaves);
  nq::Tensor out;
  try {
    out = c.op(args);
  } catch (const std::exception& e) {
    rep.fail(check, std::string("forward with requires_grad threw: ") + e.what());
    return;
  }
  if (!out.requires_grad()) {
    rep.fail(check, "the output does not require grad although its inputs do");
    return;
  }
  std::vector<double> R(out.numel());
  for (auto& r : R) r = 2.0 * g.uniform() - 1.0;
  try {
    out.backward(nq::from_vector(R, out.shape(), nq::kFloat64));
  } catch (const std::exception& e) {
    rep.fail(check, std::string("backward threw: ") + e.what());
    return;
  }
  auto loss_at = [&](const std::vector<Stored>& s) {
    nq::NoGradGuard ng;
    return weighted_sum(c.op(build_args(c, s, nq::kFloat64, false)), R);
  };
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    if (!c.inputs[k].differentiable()) continue;
    const int64_t n = static_cast<int64_t>(st[k].v.size());
    std::vector<double> fd(n);
    for (int64_t j = 0; j < n; ++j) {
      const double x0 = st[k].v[j], h = c.fd_step;
      st[k].v[j] = x0 + h;
      const double lp = loss_at(st);
      st[k].v[j] = x0 - h;
      const double lm = loss_at(st);
      st[k].v[j] = x0;
      fd[j] = (lp - lm) / (2 * h);
    }
    nq::Tensor gk = leaves[k].grad();
    const std::string where = "input " + std::to_string(k) + " (" + layout_name(c.inputs[k].layout) +
                              ", stored " + nq::shape_str(st[k].shape) + ")";
    if (!gk.defined()) {
      // Acceptable only when the true gradient is zero.
      if (std::any_of(fd.begin(), fd.end(), [&](double v) { return !within(0.0, v, c.grad); }))
        rep.fail(check, where + ": no gradient reached it");
      continue;
    }
    if (gk.shape() != st[k].shape) {
      rep.fail(check, where + ": .grad has shape " + nq::shape_str(gk.shape()));
      continue;
    }
    if (gk.dtype() != nq::kFloat64)
      rep.fail(check, where + ": .grad has dtype " + nq::dtype_name(gk.dtype()));
    std::vector<double> ga = gk.to_vector<double>();
    for (int64_t j = 0; j < n; ++j)
      if (!within(ga[j], fd[j], c.grad))
        rep.fail(check, where + ", element " + std::to_string(j) + " (at " +
                            nq::shape_str(unflatten(st[k].shape, j)) + "): backward " + fmt(ga[j]) +
                            ", finite difference " + fmt(fd[j]));
  }
}

}  // namespace detail

inline bool selected(const OpCase& c) {
  const char* f = std::getenv("NQ_OP_FILTER");
  return !f || c.name.find(f) != std::string::npos;
}

// Runs every check of one case; returns whether all passed.
inline bool run_op_case(const OpCase& c) {
  detail::Report rep(c.name);
  for (size_t k = 0; k < c.inputs.size(); ++k) {  // a layout needs enough dims to act on
    const InputSpec& s = c.inputs[k];
    const size_t need = s.layout == Layout::Transposed ? 2 : s.layout == Layout::Contiguous ? 0 : 1;
    if (s.kind == InputKind::Random && s.shape.size() < need) {
      rep.fail("table", "input " + std::to_string(k) + ": layout " + layout_name(s.layout) +
                            " needs rank >= " + std::to_string(need));
      rep.finish();
      return false;
    }
  }
  nq::Generator g(seed_of(c.name));
  std::vector<Stored> st;
  for (const auto& s : c.inputs) st.push_back(draw(s, g));
  auto guarded = [&](const char* check, auto&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      rep.fail(check, std::string("threw: ") + e.what());
    }
  };
  guarded("float64 forward", [&] { detail::check_forward(c, st, nq::kFloat64, c.fwd, rep); });
  if (c.check_f32)
    guarded("float32 forward", [&] { detail::check_forward(c, st, nq::kFloat32, c.fwd32, rep); });
  if (c.check_grad) guarded("float64 gradient", [&] { detail::check_grads(c, st, g, rep); });
  rep.finish();
  return rep.ok();
}

}  // namespace nqtest
