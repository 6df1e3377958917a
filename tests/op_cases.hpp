#pragma once
// The op table: every op with its inputs (shapes, value ranges, memory
// layouts) and an independent double-precision reference. Shared by
// tests/test_ops.cpp (CPU: forward vs the reference in float64/float32,
// gradients vs finite differences, see op_harness.hpp) and
// tests/gpu/test_op_table.cpp (the same cases on CUDA vs the CPU backend).
//
// References below are deliberately naive: loops over std::vector<double>
// with explicit index arithmetic, never nq ops.
//
// Everything is in an unnamed namespace: include this header from one
// translation unit per test binary.
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "op_harness.hpp"

namespace {

using namespace nqtest;
using Args = std::vector<nq::Tensor>;
using Refs = std::vector<RefInput>;
using Idx = std::vector<int64_t>;
using V = std::vector<double>;

// ---- reference building blocks -------------------------------------------------

// out = f(x) element-wise.
std::function<RefOut(const Refs&)> ref_unary(std::function<double(double)> f) {
  return [f](const Refs& in) {
    RefOut o{in[0].shape, {}};
    for (double x : in[0].v) o.v.push_back(f(x));
    return o;
  };
}

// out = f(a, b) with numpy broadcasting.
std::function<RefOut(const Refs&)> ref_binary(std::function<double(double, double)> f) {
  return [f](const Refs& in) {
    const RefInput &a = in[0], &b = in[1];
    RefOut o{broadcast(a.shape, b.shape), {}};
    for_each_index(o.shape, [&](const Idx& i) {
      o.v.push_back(f(a[broadcast_flat(a.shape, i)], b[broadcast_flat(b.shape, i)]));
    });
    return o;
  };
}

// Reduction over `dims` (empty = all) with an associative step and a finish.
RefOut ref_reduce(const RefInput& x, std::vector<int64_t> dims, bool keepdim, double init,
                  const std::function<double(double, double)>& step,
                  const std::function<double(double, int64_t)>& finish) {
  const int64_t r = x.rank();
  std::vector<bool> reduced(r, dims.empty());
  for (auto d : dims) reduced[wrap(d, r)] = true;
  Shape kshape = x.shape, oshape;
  int64_t count = 1;
  for (int64_t d = 0; d < r; ++d) {
    if (reduced[d]) {
      kshape[d] = 1;
      count *= x.shape[d];
    } else {
      oshape.push_back(x.shape[d]);
    }
  }
  std::vector<double> acc(nq::numel_of(kshape), init);
  for_each_index(x.shape, [&](Idx i) {
    const double v = x.at(i);
    for (int64_t d = 0; d < r; ++d)
      if (reduced[d]) i[d] = 0;
    double& a = acc[flat_index(kshape, i)];
    a = step(a, v);
  });
  for (auto& a : acc) a = finish(a, count);
  return {keepdim ? kshape : oshape, acc};
}

RefOut ref_sum(const RefInput& x, std::vector<int64_t> dims, bool keepdim) {
  return ref_reduce(x, std::move(dims), keepdim, 0.0, std::plus<double>(),
                    [](double a, int64_t) { return a; });
}
RefOut ref_mean(const RefInput& x, std::vector<int64_t> dims, bool keepdim) {
  return ref_reduce(x, std::move(dims), keepdim, 0.0, std::plus<double>(),
                    [](double a, int64_t n) { return a / static_cast<double>(n); });
}
RefOut ref_max(const RefInput& x, std::vector<int64_t> dims, bool keepdim) {
  return ref_reduce(
      x, std::move(dims), keepdim, -std::numeric_limits<double>::infinity(),
      [](double a, double v) { return v > a ? v : a; }, [](double a, int64_t) { return a; });
}

// Calls f(pos) for every line of `shape` along `dim`: pos are the row-major
// flat indices of that line's elements, in order.
template <typename F>
void for_each_line(const Shape& shape, int64_t dim, F&& f) {
  dim = wrap(dim, static_cast<int64_t>(shape.size()));
  Shape outer = shape;
  outer[dim] = 1;
  for_each_index(outer, [&](Idx i) {
    std::vector<int64_t> pos;
    for (int64_t k = 0; k < shape[dim]; ++k) {
      i[dim] = k;
      pos.push_back(flat_index(shape, i));
    }
    f(pos);
  });
}

// numpy matmul semantics written out: 1-d operands promoted, batches broadcast.
RefOut ref_matmul(const RefInput& a, const RefInput& b) {
  Shape as = a.shape, bs = b.shape;
  const bool va = as.size() == 1, vb = bs.size() == 1;
  if (va) as = {1, as[0]};
  if (vb) bs = {bs[0], 1};
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  const Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const Shape batch = broadcast(ab, bb);
  Shape oshape = batch;
  if (!va) oshape.push_back(M);
  if (!vb) oshape.push_back(N);
  RefOut o{oshape, {}};
  for_each_index(batch, [&](const Idx& bi) {
    const int64_t oa = broadcast_flat(ab, bi) * M * K, ob = broadcast_flat(bb, bi) * K * N;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += a[oa + m * K + k] * b[ob + k * N + n];
        o.v.push_back(acc);
      }
  });
  return o;
}

// y[..., o] = sum_i x[..., i] w[o, i] (+ bias[o]).
RefOut ref_linear(const RefInput& x, const RefInput& w, const RefInput* bias) {
  const int64_t In = x.shape.back(), Out = w.shape[0], rows = x.numel() / In;
  Shape os = x.shape;
  os.back() = Out;
  RefOut o{os, {}};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < Out; ++j) {
      double acc = bias ? (*bias)[j] : 0.0;
      for (int64_t i = 0; i < In; ++i) acc += x[r * In + i] * w[j * In + i];
      o.v.push_back(acc);
    }
  return o;
}

// Concatenation of `parts` along dim.
RefOut ref_concat(const std::vector<RefInput>& parts, int64_t dim) {
  dim = wrap(dim, parts[0].rank());
  Shape os = parts[0].shape;
  os[dim] = 0;
  for (const auto& p : parts) os[dim] += p.shape[dim];
  RefOut o{os, std::vector<double>(nq::numel_of(os))};
  int64_t at = 0;
  for (const auto& p : parts) {
    for_each_index(p.shape, [&](Idx i) {
      const double v = p.at(i);
      i[dim] += at;
      o.v[flat_index(os, i)] = v;
    });
    at += p.shape[dim];
  }
  return o;
}

// x[start : start + step*count : step] along dim.
RefInput ref_slice(const RefInput& x, int64_t dim, int64_t start, int64_t count, int64_t step = 1) {
  dim = wrap(dim, x.rank());
  Shape os = x.shape;
  os[dim] = count;
  RefInput o{os, {}};
  for_each_index(os, [&](Idx i) {
    i[dim] = start + step * i[dim];
    o.v.push_back(x.at(i));
  });
  return o;
}

RefOut ref_permute(const RefInput& x, const std::vector<int64_t>& p) {
  Shape os(p.size());
  for (size_t i = 0; i < p.size(); ++i) os[i] = x.shape[p[i]];
  RefOut o{os, {}};
  for_each_index(os, [&](const Idx& i) {
    Idx src(p.size());
    for (size_t d = 0; d < p.size(); ++d) src[p[d]] = i[d];
    o.v.push_back(x.at(src));
  });
  return o;
}

RefOut ref_expand(const RefInput& x, const Shape& to) {
  RefOut o{to, {}};
  for_each_index(to, [&](const Idx& i) { o.v.push_back(x[broadcast_flat(x.shape, i)]); });
  return o;
}

// Same values, another shape (reshape/view/squeeze/unsqueeze/flatten).
RefOut ref_reshape(const RefInput& x, Shape to) { return {std::move(to), x.v}; }

// softmax (or log_softmax) along `dim`, max-subtracted.
RefOut ref_softmax(const RefInput& x, int64_t dim, bool log) {
  RefOut o{x.shape, std::vector<double>(x.numel())};
  for_each_line(x.shape, dim, [&](const std::vector<int64_t>& pos) {
    double m = -std::numeric_limits<double>::infinity();
    for (auto p : pos) m = std::max(m, x[p]);
    double s = 0;
    for (auto p : pos) s += std::exp(x[p] - m);
    for (auto p : pos) o.v[p] = log ? x[p] - m - std::log(s) : std::exp(x[p] - m) / s;
  });
  return o;
}

RefOut ref_logsumexp(const RefInput& x, int64_t dim, bool keepdim) {
  dim = wrap(dim, x.rank());
  Shape ks = x.shape, os;
  ks[dim] = 1;
  for (int64_t d = 0; d < x.rank(); ++d)
    if (d != dim) os.push_back(x.shape[d]);
  RefOut o{keepdim ? ks : os, {}};
  for_each_line(x.shape, dim, [&](const std::vector<int64_t>& pos) {
    double m = -std::numeric_limits<double>::infinity();
    for (auto p : pos) m = std::max(m, x[p]);
    double s = 0;
    for (auto p : pos) s += std::exp(x[p] - m);
    o.v.push_back(m + std::log(s));
  });
  return o;
}

// Normalisation over the last dim; center = layer norm.
RefOut ref_norm(const RefInput& x, const RefInput* w, const RefInput* b, double eps, bool center) {
  const int64_t C = x.shape.back(), rows = x.numel() / C;
  RefOut o{x.shape, {}};
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0;
    if (center) {
      for (int64_t i = 0; i < C; ++i) mu += x[r * C + i];
      mu /= static_cast<double>(C);
    }
    double var = 0;
    for (int64_t i = 0; i < C; ++i) var += (x[r * C + i] - mu) * (x[r * C + i] - mu);
    var /= static_cast<double>(C);
    for (int64_t i = 0; i < C; ++i) {
      double y = (x[r * C + i] - mu) / std::sqrt(var + eps);
      if (w) y *= (*w)[i];
      if (b) y += (*b)[i];
      o.v.push_back(y);
    }
  }
  return o;
}

RefOut ref_embedding(const RefInput& w, const RefInput& ids) {
  const int64_t C = w.shape[1];
  Shape os = ids.shape;
  os.push_back(C);
  RefOut o{os, {}};
  for (double id : ids.v)
    for (int64_t c = 0; c < C; ++c) o.v.push_back(w[static_cast<int64_t>(id) * C + c]);
  return o;
}

// softmax(scale q k^T over visible keys) v per (b, h); no visible key -> 0.
RefOut ref_attention(const RefInput& q, const RefInput& k, const RefInput& v, const RefInput* mask,
                     bool causal, std::optional<double> scale_opt) {
  const int64_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3];
  const int64_t S = k.shape[2], Dv = v.shape[3];
  const double scale = scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D));
  RefOut o{{B, H, T, Dv}, std::vector<double>(B * H * T * Dv, 0.0)};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        std::vector<int64_t> vis;
        for (int64_t j = 0; j < S; ++j) {
          const bool causal_ok = !causal || j <= t + S - T;
          const bool real = !mask || (*mask)[b * S + j] != 0;
          if (causal_ok && real) vis.push_back(j);
        }
        if (vis.empty()) continue;
        std::vector<double> s;
        for (auto j : vis) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += q[((b * H + h) * T + t) * D + d] * k[((b * H + h) * S + j) * D + d];
          s.push_back(scale * dot);
        }
        double m = -std::numeric_limits<double>::infinity();
        for (double x : s) m = std::max(m, x);
        double z = 0;
        for (double x : s) z += std::exp(x - m);
        for (size_t a = 0; a < vis.size(); ++a) {
          const double p = std::exp(s[a] - m) / z;
          for (int64_t e = 0; e < Dv; ++e)
            o.v[((b * H + h) * T + t) * Dv + e] += p * v[((b * H + h) * S + vis[a]) * Dv + e];
        }
      }
  return o;
}

RefOut ref_cross_entropy(const RefInput& z, const RefInput& tg, const RefInput* w, int64_t ignore,
                         nq::Reduction red) {
  const int64_t V = z.shape.back(), R = tg.numel();
  std::vector<double> per(R, 0.0);
  double total = 0, n_valid = 0, w_valid = 0;
  for (int64_t r = 0; r < R; ++r) {
    const auto y = static_cast<int64_t>(tg[r]);
    if (y == ignore) continue;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < V; ++j) m = std::max(m, z[r * V + j]);
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(z[r * V + j] - m);
    const double wi = w ? (*w)[r] : 1.0;
    per[r] = wi * (m + std::log(s) - z[r * V + y]);
    total += per[r];
    n_valid += 1;
    w_valid += wi;
  }
  switch (red) {
    case nq::Reduction::None:
      return {tg.shape, per};
    case nq::Reduction::Sum:
      return {{}, {total}};
    case nq::Reduction::Mean:
      return {{}, {n_valid ? total / n_valid : 0.0}};
    case nq::Reduction::WeightedMean:
      return {{}, {w_valid ? total / w_valid : 0.0}};
  }
  return {};
}

double gelu_exact(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh(double x) {
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

// ---- the table -------------------------------------------------------------------

std::vector<OpCase> op_table() {
  std::vector<OpCase> t;
  auto add = [&](OpCase c) { t.push_back(std::move(c)); };

  // ---- binary element-wise, with broadcasting and non-contiguous operands ----
  struct Binary {
    const char* name;
    nq::Tensor (*op)(const nq::Tensor&, const nq::Tensor&);
    std::function<double(double, double)> f;
    double blo, bhi;  // range of the second operand (div: away from 0)
  };
  const std::vector<Binary> binaries = {
      {"add", nq::add, [](double a, double b) { return a + b; }, -1, 1},
      {"sub", nq::sub, [](double a, double b) { return a - b; }, -1, 1},
      {"mul", nq::mul, [](double a, double b) { return a * b; }, -1, 1},
      {"div", nq::div, [](double a, double b) { return a / b; }, 0.5, 2},
  };
  for (const auto& b : binaries) {
    auto op = b.op;
    auto f = ref_binary(b.f);
    auto call = [op](const Args& a) { return op(a[0], a[1]); };
    const std::string n = b.name;
    add({.name = n + " (3,1,4)x(2,4)",
         .inputs = {in({3, 1, 4}), in({2, 4}).range(b.blo, b.bhi)},
         .op = call,
         .reference = f});
    add({.name = n + " (2,3)x() scalar-shaped",
         .inputs = {in({2, 3}), in({}).range(b.blo, b.bhi)},
         .op = call,
         .reference = f});
    add({.name = n + " ()x(2,3) scalar-shaped first",
         .inputs = {in({}), in({2, 3}).range(b.blo, b.bhi)},
         .op = call,
         .reference = f});
    add({.name = n + " transposed a",
         .inputs = {in({3, 4}).transposed(), in({3, 4}).range(b.blo, b.bhi)},
         .op = call,
         .reference = f});
    add({.name = n + " transposed b, broadcast row",
         .inputs = {in({2, 3, 4}), in({3, 4}).range(b.blo, b.bhi).transposed()},
         .op = call,
         .reference = f});
    add({.name = n + " sliced a, expanded b",
         .inputs = {in({3, 4}).sliced(), in({3, 4}).range(b.blo, b.bhi).expanded_from({1, 4})},
         .op = call,
         .reference = f});
  }
  add({.name = "operator+ chain a+b*c-d/e",
       .inputs = {in({2, 3}), in({2, 3}), in({3}), in({2, 1}), in({2, 3}).range(0.5, 2)},
       .op = [](const Args& a) { return a[0] + a[1] * a[2] - a[3] / a[4]; },
       .reference =
           [](const Refs& r) {
             RefOut o{{2, 3}, {}};
             for (int64_t i = 0; i < 2; ++i)
               for (int64_t j = 0; j < 3; ++j)
                 o.v.push_back(r[0][i * 3 + j] + r[1][i * 3 + j] * r[2][j] - r[3][i] / r[4][i * 3 + j]);
             return o;
           }});

  // ---- with scalars ----------------------------------------------------------
  add({.name = "add scalar",
       .inputs = {in({2, 3, 4})},
       .op = [](const Args& a) { return nq::add(a[0], 2.5); },
       .reference = ref_unary([](double x) { return x + 2.5; })});
  add({.name = "mul scalar (transposed)",
       .inputs = {in({3, 4}).transposed()},
       .op = [](const Args& a) { return nq::mul(a[0], -1.5); },
       .reference = ref_unary([](double x) { return -1.5 * x; })});
  add({.name = "rsub scalar",
       .inputs = {in({2, 3})},
       .op = [](const Args& a) { return nq::rsub(3.0, a[0]); },
       .reference = ref_unary([](double x) { return 3.0 - x; })});
  add({.name = "rdiv scalar (sliced)",
       .inputs = {in({2, 3}).range(0.5, 2).sliced()},
       .op = [](const Args& a) { return nq::rdiv(2.0, a[0]); },
       .reference = ref_unary([](double x) { return 2.0 / x; })});
  add({.name = "scalar operators x-1, x/4, 2-x, 1/x",
       .inputs = {in({2, 3}).range(0.5, 2)},
       .op = [](const Args& a) { return (a[0] - 1.0) + (a[0] / 4.0) * (2.0 - a[0]) + 1.0 / a[0]; },
       .reference = ref_unary([](double x) { return (x - 1.0) + (x / 4.0) * (2.0 - x) + 1.0 / x; })});
  add({.name = "neg",
       .inputs = {in({2, 3, 4})},
       .op = [](const Args& a) { return nq::neg(a[0]); },
       .reference = ref_unary([](double x) { return -x; })});
  add({.name = "neg (operator, permuted)",
       .inputs = {in({2, 3, 4}).permuted()},
       .op = [](const Args& a) { return -a[0]; },
       .reference = ref_unary([](double x) { return -x; })});

  // ---- pow ---------------------------------------------------------------------
  add({.name = "pow x^3 (negative bases)",
       .inputs = {in({3, 4})},
       .op = [](const Args& a) { return nq::pow(a[0], 3.0); },
       .reference = ref_unary([](double x) { return x * x * x; })});
  add({.name = "pow x^0.5",
       .inputs = {in({3, 4}).range(0.5, 2)},
       .op = [](const Args& a) { return nq::pow(a[0], 0.5); },
       .reference = ref_unary([](double x) { return std::sqrt(x); })});
  add({.name = "pow x^-1.5 (transposed)",
       .inputs = {in({3, 4}).range(0.5, 2).transposed()},
       .op = [](const Args& a) { return nq::pow(a[0], -1.5); },
       .reference = ref_unary([](double x) { return 1.0 / (x * std::sqrt(x)); })});
  add({.name = "pow x^0",
       .inputs = {in({2, 3})},
       .op = [](const Args& a) { return nq::pow(a[0], 0.0); },
       .reference = ref_unary([](double) { return 1.0; })});
  add({.name = "pow tensor^tensor (3,4)^(4)",
       .inputs = {in({3, 4}).range(0.5, 2), in({4}).range(-2, 2)},
       .op = [](const Args& a) { return nq::pow(a[0], a[1]); },
       .reference = ref_binary([](double x, double y) { return std::exp(y * std::log(x)); })});
  add({.name = "pow tensor^tensor scalar-shaped exponent, sliced base",
       .inputs = {in({2, 3}).range(0.5, 2).sliced(), in({}).range(0.5, 2)},
       .op = [](const Args& a) { return nq::pow(a[0], a[1]); },
       .reference = ref_binary([](double x, double y) { return std::exp(y * std::log(x)); })});

  // ---- maximum / minimum / where -----------------------------------------------
  add({.name = "maximum (2,3,4)x(3,4)",
       .inputs = {in({2, 3, 4}), in({3, 4})},
       .op = [](const Args& a) { return nq::maximum(a[0], a[1]); },
       .reference = ref_binary([](double x, double y) { return x > y ? x : y; })});
  add({.name = "minimum transposed a, (4) b",
       .inputs = {in({3, 4}).transposed(), in({4})},
       .op = [](const Args& a) { return nq::minimum(a[0], a[1]); },
       .reference = ref_binary([](double x, double y) { return x < y ? x : y; })});
  add({.name = "where int64 cond (3,4), a (2,3,4), b (4)",
       .inputs = {ints({1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0}, {3, 4}), in({2, 3, 4}), in({4})},
       .op = [](const Args& a) { return nq::where(a[0], a[1], a[2]); },
       .reference =
           [](const Refs& r) {
             RefOut o{{2, 3, 4}, {}};
             for_each_index(o.shape, [&](const Idx& i) {
               o.v.push_back(r[0][i[1] * 4 + i[2]] != 0 ? r[1][flat_index({2, 3, 4}, i)] : r[2][i[2]]);
             });
             return o;
           }});
  add({.name = "where float cond, transposed a",
       .inputs = {fixed({0, 1, 1, 0, 1, 0}, {2, 3}), in({2, 3}).transposed(), in({2, 3})},
       .op = [](const Args& a) { return nq::where(a[0], a[1], a[2]); },
       .reference =
           [](const Refs& r) {
             RefOut o{{2, 3}, {}};
             for (int64_t i = 0; i < 6; ++i) o.v.push_back(r[0][i] != 0 ? r[1][i] : r[2][i]);
             return o;
           }});

  // ---- unary: each on a contiguous and on a non-contiguous input -----------------
  struct Unary {
    const char* name;
    std::function<nq::Tensor(const nq::Tensor&)> op;
    std::function<double(double)> f;
    InputSpec x;
  };
  const std::vector<Unary> unaries = {
      {"exp", [](const nq::Tensor& x) { return nq::exp(x); }, [](double x) { return std::exp(x); },
       in({2, 3, 4}).range(-2, 2)},
      {"log", [](const nq::Tensor& x) { return nq::log(x); }, [](double x) { return std::log(x); },
       in({2, 3, 4}).range(0.5, 3)},
      {"sqrt", [](const nq::Tensor& x) { return nq::sqrt(x); }, [](double x) { return std::sqrt(x); },
       in({2, 3, 4}).range(0.5, 3)},
      {"rsqrt", [](const nq::Tensor& x) { return nq::rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); },
       in({2, 3, 4}).range(0.5, 3)},
      {"abs", [](const nq::Tensor& x) { return nq::abs(x); }, [](double x) { return x < 0 ? -x : x; },
       in({2, 3, 4}).away_from_zero(0.05)},
      {"square", [](const nq::Tensor& x) { return nq::square(x); }, [](double x) { return x * x; },
       in({2, 3, 4})},
      {"tanh", [](const nq::Tensor& x) { return nq::tanh(x); }, [](double x) { return std::tanh(x); },
       in({2, 3, 4}).range(-3, 3)},
      {"sigmoid", [](const nq::Tensor& x) { return nq::sigmoid(x); },
       [](double x) { return 1 / (1 + std::exp(-x)); }, in({2, 3, 4}).range(-8, 8)},
      {"relu", [](const nq::Tensor& x) { return nq::relu(x); }, [](double x) { return x > 0 ? x : 0.0; },
       in({2, 3, 4}).away_from_zero(0.05)},
      {"gelu exact", [](const nq::Tensor& x) { return nq::gelu(x); }, gelu_exact, in({2, 3, 4}).range(-4, 4)},
      {"gelu tanh", [](const nq::Tensor& x) { return nq::gelu(x, nq::GeluApprox::Tanh); }, gelu_tanh,
       in({2, 3, 4}).range(-4, 4)},
      {"silu", [](const nq::Tensor& x) { return nq::silu(x); },
       [](double x) { return x / (1 + std::exp(-x)); }, in({2, 3, 4}).range(-6, 6)},
  };
  for (const auto& u : unaries) {
    auto op = u.op;
    auto call = [op](const Args& a) { return op(a[0]); };
    add({.name = u.name, .inputs = {u.x}, .op = call, .reference = ref_unary(u.f)});
    add({.name = std::string(u.name) + " (transposed)",
         .inputs = {u.x.transposed()},
         .op = call,
         .reference = ref_unary(u.f)});
    add({.name = std::string(u.name) + " (sliced)",
         .inputs = {u.x.sliced()},
         .op = call,
         .reference = ref_unary(u.f)});
  }

  // ---- reductions ------------------------------------------------------------------
  struct Red {
    const char* name;
    std::vector<int64_t> dims;
    bool keepdim;
    InputSpec x;
  };
  const std::vector<Red> sums = {
      {"all dims", {}, false, in({2, 3, 4})},
      {"dim 1", {1}, false, in({2, 3, 4})},
      {"dims {0,2} keepdim", {0, 2}, true, in({2, 3, 4})},
      {"dim -1 keepdim", {-1}, true, in({2, 3, 4})},
      {"all dims, permuted input", {}, false, in({2, 3, 4}).permuted()},
      {"dim 0, transposed input", {0}, false, in({2, 3, 4}).transposed()},
      {"dim 1, sliced input", {1}, false, in({3, 4, 5}).sliced()},
      {"dims {0,1}, expanded input", {0, 1}, false, in({2, 3, 4}).expanded_from({3, 1})},
      {"all dims of a scalar-shaped tensor", {}, false, in({})},
  };
  for (const auto& r : sums) {
    auto dims = r.dims;
    bool kd = r.keepdim;
    add({.name = std::string("sum ") + r.name,
         .inputs = {r.x},
         .op = [dims, kd](const Args& a) { return nq::sum(a[0], dims, kd); },
         .reference = [dims, kd](const Refs& in) { return ref_sum(in[0], dims, kd); }});
    add({.name = std::string("mean ") + r.name,
         .inputs = {r.x},
         .op = [dims, kd](const Args& a) { return nq::mean(a[0], dims, kd); },
         .reference = [dims, kd](const Refs& in) { return ref_mean(in[0], dims, kd); }});
  }
  add({.name = "Tensor::sum() / Tensor::mean({1}, keepdim)",
       .inputs = {in({2, 3})},
       .op = [](const Args& a) { return a[0].sum() + a[0].mean({1}, true); },
       .reference =
           [](const Refs& r) {
             double s = 0;
             for (double v : r[0].v) s += v;
             RefOut o{{2, 1}, {}};
             for (int64_t i = 0; i < 2; ++i)
               o.v.push_back(s + (r[0][i * 3] + r[0][i * 3 + 1] + r[0][i * 3 + 2]) / 3);
             return o;
           }});
  add({.name = "sum_to (2,3,4) -> (3,1)",
       .inputs = {in({2, 3, 4})},
       .op =
           [](const Args& a) {
             return nq::sum_to(a[0], {3, 1});
           },
       .reference =
           [](const Refs& r) {
             RefOut o = ref_sum(r[0], {0, 2}, true);
             o.shape = {3, 1};
             return o;
           }});
  add({.name = "max dim 1",
       .inputs = {in({2, 3, 4}).distinct_values()},
       .op = [](const Args& a) { return nq::max(a[0], 1); },
       .reference = [](const Refs& r) { return ref_max(r[0], {1}, false); }});
  add({.name = "max dim -1 keepdim",
       .inputs = {in({2, 3, 4}).distinct_values()},
       .op = [](const Args& a) { return a[0].max(-1, true); },
       .reference = [](const Refs& r) { return ref_max(r[0], {-1}, true); }});
  add({.name = "max dim 0 of a transposed input",
       .inputs = {in({3, 4}).distinct_values().transposed()},
       .op = [](const Args& a) { return nq::max(a[0], 0); },
       .reference = [](const Refs& r) { return ref_max(r[0], {0}, false); }});
  add({.name = "max over all elements (sliced)",
       .inputs = {in({3, 4}).distinct_values().sliced()},
       .op = [](const Args& a) { return nq::max(a[0]); },
       .reference = [](const Refs& r) { return ref_max(r[0], {}, false); }});
  add({.name = "argmax dim 1",
       .inputs = {in({2, 3, 4}).distinct_values()},
       .op = [](const Args& a) { return nq::argmax(a[0], 1); },
       .reference =
           [](const Refs& r) {
             RefOut o{{2, 4}, {}};
             for (int64_t i = 0; i < 2; ++i)
               for (int64_t k = 0; k < 4; ++k) {
                 int64_t best = 0;
                 for (int64_t j = 1; j < 3; ++j)
                   if (r[0].at({i, j, k}) > r[0].at({i, best, k})) best = j;
                 o.v.push_back(static_cast<double>(best));
               }
             return o;
           },
       .check_grad = false});

  // ---- matmul / linear -------------------------------------------------------------
  auto mm = [](const Args& a) { return nq::matmul(a[0], a[1]); };
  auto mm_ref = [](const Refs& r) { return ref_matmul(r[0], r[1]); };
  struct MM {
    const char* name;
    InputSpec a, b;
  };
  const std::vector<MM> mms = {
      {"2-d (3,4)@(4,5)", in({3, 4}), in({4, 5})},
      {"batched 3-d (2,3,4)@(2,4,5)", in({2, 3, 4}), in({2, 4, 5})},
      {"4-d (2,2,3,4)@(2,2,4,3)", in({2, 2, 3, 4}), in({2, 2, 4, 3})},
      {"broadcast batch (2,1,3,4)@(5,4,2)", in({2, 1, 3, 4}), in({5, 4, 2})},
      {"broadcast batch (3,4)@(2,4,5)", in({3, 4}), in({2, 4, 5})},
      {"vector @ matrix (4)@(4,5)", in({4}), in({4, 5})},
      {"matrix @ vector (3,4)@(4)", in({3, 4}), in({4})},
      {"vector @ vector (4)@(4)", in({4}), in({4})},
      {"batched @ vector (2,3,4)@(4)", in({2, 3, 4}), in({4})},
      {"vector @ batched (4)@(2,4,3)", in({4}), in({2, 4, 3})},
      {"a.t() (3,4)@(4,5)", in({3, 4}).transposed(), in({4, 5})},
      {"b.t() (3,4)@(4,5)", in({3, 4}), in({4, 5}).transposed()},
      {"a.t() @ b.t()", in({3, 4}).transposed(), in({4, 5}).transposed()},
      {"batched a.t() @ b.t()", in({2, 3, 4}).transposed(), in({2, 4, 5}).transposed()},
      {"folded (2,3,4)@(4,5) with b.t()", in({2, 3, 4}), in({4, 5}).transposed()},
      {"sliced a (unfoldable) @ (4,5)", in({2, 3, 4}).sliced(), in({4, 5})},
      {"permuted a (2,3,4)@(4,5)", in({2, 3, 4}).permuted(), in({4, 5})},
      {"sliced b (3,4)@(4,5)", in({3, 4}), in({4, 5}).sliced()},
      {"expanded batch of b", in({2, 3, 4}), in({2, 4, 5}).expanded_from({4, 5})},
      {"N=1 (3,4)@(4,1)", in({3, 4}), in({4, 1})},
      {"M=1 (1,4)@(4,5)", in({1, 4}), in({4, 5})},
      {"b with stride-0 rows (expanded from (1,5))", in({3, 4}), in({4, 5}).expanded_from({1, 5})},
      {"a with stride-0 columns (expanded from (3,1))", in({3, 4}).expanded_from({3, 1}), in({4, 5})},
      {"a with stride-0 rows (expanded from (1,4))", in({3, 4}).expanded_from({1, 4}), in({4, 5})},
      {"both sliced 2-d", in({3, 4}).sliced(), in({4, 2}).sliced()},
      {"empty inner dim (2,0)@(0,3) gives zeros", in({2, 0}), in({0, 3})},
  };
  for (const auto& m : mms)
    add({.name = std::string("matmul ") + m.name, .inputs = {m.a, m.b}, .op = mm, .reference = mm_ref});
  add({.name = "matmul (B,T,K)@w.t() with w (N,K): folded linear",
       .inputs = {in({2, 3, 4}), in({5, 4})},
       .op = [](const Args& a) { return nq::matmul(a[0], a[1].t()); },
       .reference = [](const Refs& r) { return ref_linear(r[0], r[1], nullptr); }});
  add({.name = "linear with bias (2,3,4)",
       .inputs = {in({2, 3, 4}), in({5, 4}), in({5})},
       .op = [](const Args& a) { return nq::linear(a[0], a[1], a[2]); },
       .reference = [](const Refs& r) { return ref_linear(r[0], r[1], &r[2]); }});
  add({.name = "linear without bias (3,4)",
       .inputs = {in({3, 4}), in({5, 4})},
       .op = [](const Args& a) { return nq::linear(a[0], a[1]); },
       .reference = [](const Refs& r) { return ref_linear(r[0], r[1], nullptr); }});
  add({.name = "linear, permuted x and transposed w",
       .inputs = {in({2, 3, 4}).permuted(), in({5, 4}).transposed(), in({5})},
       .op = [](const Args& a) { return nq::linear(a[0], a[1], a[2]); },
       .reference = [](const Refs& r) { return ref_linear(r[0], r[1], &r[2]); }});

  // ---- joining and splitting ---------------------------------------------------------
  add({.name = "concat dim 1 (one sliced)",
       .inputs = {in({2, 3, 4}), in({2, 2, 4}).sliced(), in({2, 1, 4})},
       .op =
           [](const Args& a) {
             return nq::concat({a[0], a[1], a[2]}, 1);
           },
       .reference =
           [](const Refs& r) {
             return ref_concat({r[0], r[1], r[2]}, 1);
           }});
  add({.name = "concat dim -1 (one transposed)",
       .inputs = {in({3, 4}).transposed(), in({3, 2})},
       .op =
           [](const Args& a) {
             return nq::concat({a[0], a[1]}, -1);
           },
       .reference =
           [](const Refs& r) {
             return ref_concat({r[0], r[1]}, -1);
           }});
  add({.name = "concat dim 0 of 1-d",
       .inputs = {in({2}), in({3}), in({1})},
       .op =
           [](const Args& a) {
             return nq::concat({a[0], a[1], a[2]}, 0);
           },
       .reference =
           [](const Refs& r) {
             return ref_concat({r[0], r[1], r[2]}, 0);
           }});
  add({.name = "concat the same tensor twice",
       .inputs = {in({2, 3})},
       .op =
           [](const Args& a) {
             return nq::concat({a[0], a[0]}, 0);
           },
       .reference =
           [](const Refs& r) {
             return ref_concat({r[0], r[0]}, 0);
           }});
  add({.name = "stack dim 0",
       .inputs = {in({2, 3}), in({2, 3}), in({2, 3})},
       .op =
           [](const Args& a) {
             return nq::stack({a[0], a[1], a[2]}, 0);
           },
       .reference =
           [](const Refs& r) {
             std::vector<RefInput> u;
             for (const auto& x : r) u.push_back({{1, 2, 3}, x.v});
             return ref_concat(u, 0);
           }});
  add({.name = "stack dim -1 (one transposed)",
       .inputs = {in({2, 3}), in({2, 3}).transposed()},
       .op =
           [](const Args& a) {
             return nq::stack({a[0], a[1]}, -1);
           },
       .reference =
           [](const Refs& r) {
             return ref_concat({RefInput{{2, 3, 1}, r[0].v}, RefInput{{2, 3, 1}, r[1].v}}, -1);
           }});
  // Multi-output ops: the pieces are reassembled in another order (and one
  // scaled) so that each piece's gradient is checked.
  add({.name = "split size 2 along dim 1 (sizes 2,2,1)",
       .inputs = {in({2, 5, 3})},
       .op =
           [](const Args& a) {
             auto p = nq::split(a[0], 2, 1);
             REQUIRE(p.size() == 3);
             return nq::concat({p[2], p[0] * 2.0, p[1]}, 1);
           },
       .reference =
           [](const Refs& r) {
             RefInput p0 = ref_slice(r[0], 1, 0, 2), p1 = ref_slice(r[0], 1, 2, 2),
                      p2 = ref_slice(r[0], 1, 4, 1);
             for (auto& v : p0.v) v *= 2;
             return ref_concat({p2, p0, p1}, 1);
           }});
  add({.name = "split sizes {1,3,1} along dim -1 (transposed input)",
       .inputs = {in({2, 5}).transposed()},
       .op =
           [](const Args& a) {
             auto p = nq::split(a[0], std::vector<int64_t>{1, 3, 1}, -1);
             REQUIRE(p.size() == 3);
             return nq::concat({p[1], p[2], p[0]}, -1);
           },
       .reference =
           [](const Refs& r) {
             return ref_concat(
                 {ref_slice(r[0], -1, 1, 3), ref_slice(r[0], -1, 4, 1), ref_slice(r[0], -1, 0, 1)}, -1);
           }});
  add({.name = "chunk 3 along dim 0 of 7 rows (3,3,1)",
       .inputs = {in({7, 2})},
       .op =
           [](const Args& a) {
             auto p = nq::chunk(a[0], 3, 0);
             REQUIRE(p.size() == 3);
             return nq::concat({p[2], p[1] * -1.0, p[0]}, 0);
           },
       .reference =
           [](const Refs& r) {
             RefInput p1 = ref_slice(r[0], 0, 3, 3);
             for (auto& v : p1.v) v = -v;
             return ref_concat({ref_slice(r[0], 0, 6, 1), p1, ref_slice(r[0], 0, 0, 3)}, 0);
           }});

  // ---- view ops (as ops: forward values and gradient routing) ---------------------------
  add({.name = "narrow(1, 1, 2)",
       .inputs = {in({2, 4, 3})},
       .op = [](const Args& a) { return a[0].narrow(1, 1, 2); },
       .reference =
           [](const Refs& r) {
             RefInput s = ref_slice(r[0], 1, 1, 2);
             return RefOut{s.shape, s.v};
           }});
  add({.name = "narrow negative start on a transposed input",
       .inputs = {in({3, 4}).transposed()},
       .op = [](const Args& a) { return a[0].narrow(-1, -3, 2); },
       .reference =
           [](const Refs& r) {
             RefInput s = ref_slice(r[0], -1, 1, 2);
             return RefOut{s.shape, s.v};
           }});
  add({.name = "select(1, 2)",
       .inputs = {in({2, 4, 3})},
       .op = [](const Args& a) { return a[0].select(1, 2); },
       .reference =
           [](const Refs& r) {
             RefInput s = ref_slice(r[0], 1, 2, 1);
             return RefOut{{2, 3}, s.v};
           }});
  add({.name = "select(-1, -1) of a sliced input",
       .inputs = {in({3, 4}).sliced()},
       .op = [](const Args& a) { return a[0].select(-1, -1); },
       .reference =
           [](const Refs& r) {
             RefInput s = ref_slice(r[0], -1, 3, 1);
             return RefOut{{3}, s.v};
           }});
  add({.name = "slice(2, 1, 6, 2)",
       .inputs = {in({2, 3, 7})},
       .op = [](const Args& a) { return a[0].slice(2, 1, 6, 2); },
       .reference =
           [](const Refs& r) {
             RefInput s = ref_slice(r[0], 2, 1, 3, 2);
             return RefOut{s.shape, s.v};
           }});
  add({.name = "slice(0, -3, 100, 2) clamps",
       .inputs = {in({5, 2})},
       .op = [](const Args& a) { return a[0].slice(0, -3, 100, 2); },
       .reference =
           [](const Refs& r) {
             RefInput s = ref_slice(r[0], 0, 2, 2, 2);
             return RefOut{s.shape, s.v};
           }});
  add({.name = "expand (3,1) -> (2,3,4)",
       .inputs = {in({3, 1})},
       .op =
           [](const Args& a) {
             return a[0].expand({2, 3, 4});
           },
       .reference =
           [](const Refs& r) {
             return ref_expand(r[0], {2, 3, 4});
           }});
  add({.name = "expand with -1 (2,1) -> (2,3)",
       .inputs = {in({2, 1})},
       .op =
           [](const Args& a) {
             return a[0].expand({-1, 3});
           },
       .reference =
           [](const Refs& r) {
             return ref_expand(r[0], {2, 3});
           }});
  add({.name = "permute {2,0,1}",
       .inputs = {in({2, 3, 4})},
       .op =
           [](const Args& a) {
             return a[0].permute({2, 0, 1});
           },
       .reference =
           [](const Refs& r) {
             return ref_permute(r[0], {2, 0, 1});
           }});
  add({.name = "transpose(0, 2) of a sliced input",
       .inputs = {in({2, 3, 4}).sliced()},
       .op = [](const Args& a) { return a[0].transpose(0, 2); },
       .reference =
           [](const Refs& r) {
             return ref_permute(r[0], {2, 1, 0});
           }});
  add({.name = "t()",
       .inputs = {in({3, 4})},
       .op = [](const Args& a) { return a[0].t(); },
       .reference =
           [](const Refs& r) {
             return ref_permute(r[0], {1, 0});
           }});
  add({.name = "reshape (2,3,4) -> (6,4)",
       .inputs = {in({2, 3, 4})},
       .op =
           [](const Args& a) {
             return a[0].reshape({6, 4});
           },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {6, 4});
           }});
  add({.name = "reshape of a transposed input (copies)",
       .inputs = {in({3, 4}).transposed()},
       .op =
           [](const Args& a) {
             return a[0].reshape({2, -1});
           },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {2, 6});
           }});
  add({.name = "reshape of a sliced input",
       .inputs = {in({2, 3, 4}).sliced()},
       .op = [](const Args& a) { return a[0].reshape({-1}); },
       .reference = [](const Refs& r) { return ref_reshape(r[0], {24}); }});
  add({.name = "view (2,3,4) -> (4,6)",
       .inputs = {in({2, 3, 4})},
       .op =
           [](const Args& a) {
             return a[0].view({4, 6});
           },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {4, 6});
           }});
  add({.name = "view of a sliced-in-dim-0 input that stays viewable",
       .inputs = {in({4, 3, 4}).sliced()},
       .op =
           [](const Args& a) {
             return a[0].view({4, 3, 2, 2});
           },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {4, 3, 2, 2});
           }});
  add({.name = "squeeze(1)",
       .inputs = {in({2, 1, 3})},
       .op = [](const Args& a) { return a[0].squeeze(1); },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {2, 3});
           }});
  add({.name = "squeeze() all",
       .inputs = {in({1, 2, 1, 3})},
       .op = [](const Args& a) { return a[0].squeeze(); },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {2, 3});
           }});
  add({.name = "unsqueeze(0) and unsqueeze(-1) of a transposed input",
       .inputs = {in({2, 3}).transposed()},
       .op = [](const Args& a) { return a[0].unsqueeze(0).unsqueeze(-1); },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {1, 2, 3, 1});
           }});
  add({.name = "flatten(1)",
       .inputs = {in({2, 3, 4})},
       .op = [](const Args& a) { return a[0].flatten(1); },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {2, 12});
           }});
  add({.name = "contiguous() of a transposed input",
       .inputs = {in({3, 4}).transposed()},
       .op =
           [](const Args& a) {
             nq::Tensor c = a[0].contiguous();
             CHECK(c.is_contiguous());
             return c;
           },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {3, 4});
           }});
  add({.name = "clone() of a sliced input",
       .inputs = {in({3, 4}).sliced()},
       .op = [](const Args& a) { return a[0].clone(); },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {3, 4});
           }});
  add({.name = "chained views t().narrow().unsqueeze().expand()",
       .inputs = {in({3, 4})},
       .op =
           [](const Args& a) {
             return a[0].t().narrow(0, 1, 2).unsqueeze(0).expand({2, 2, 3});
           },
       .reference =
           [](const Refs& r) {
             RefOut tr = ref_permute(r[0], {1, 0});
             RefInput n = ref_slice(RefInput{tr.shape, tr.v}, 0, 1, 2);
             return ref_expand(RefInput{{1, 2, 3}, n.v}, {2, 2, 3});
           }});

  // ---- softmax family ------------------------------------------------------------------
  for (int64_t dim : {-1, 1}) {
    const std::string d = " dim " + std::to_string(dim);
    add({.name = "softmax" + d,
         .inputs = {in({2, 3, 5}).range(-3, 3)},
         .op = [dim](const Args& a) { return nq::softmax(a[0], dim); },
         .reference = [dim](const Refs& r) { return ref_softmax(r[0], dim, false); }});
    add({.name = "log_softmax" + d,
         .inputs = {in({2, 3, 5}).range(-3, 3)},
         .op = [dim](const Args& a) { return nq::log_softmax(a[0], dim); },
         .reference = [dim](const Refs& r) { return ref_softmax(r[0], dim, true); }});
    add({.name = "logsumexp" + d,
         .inputs = {in({2, 3, 5}).range(-3, 3)},
         .op = [dim](const Args& a) { return nq::logsumexp(a[0], dim); },
         .reference = [dim](const Refs& r) { return ref_logsumexp(r[0], dim, false); }});
  }
  add({.name = "softmax dim -1 of a transposed input",
       .inputs = {in({2, 4, 3}).range(-3, 3).transposed()},
       .op = [](const Args& a) { return nq::softmax(a[0], -1); },
       .reference = [](const Refs& r) { return ref_softmax(r[0], -1, false); }});
  add({.name = "softmax dim 0 of a sliced input",
       .inputs = {in({3, 4}).range(-3, 3).sliced()},
       .op = [](const Args& a) { return nq::softmax(a[0], 0); },
       .reference = [](const Refs& r) { return ref_softmax(r[0], 0, false); }});
  add({.name = "softmax large logits [50,100)",
       .inputs = {in({3, 5}).range(50, 100)},
       .op = [](const Args& a) { return nq::softmax(a[0]); },
       .reference = [](const Refs& r) { return ref_softmax(r[0], -1, false); }});
  add({.name = "log_softmax large logits [-100,100)",
       .inputs = {in({3, 5}).range(-100, 100)},
       .op = [](const Args& a) { return nq::log_softmax(a[0]); },
       .reference = [](const Refs& r) { return ref_softmax(r[0], -1, true); }});
  add({.name = "log_softmax dim 1 of a permuted input",
       .inputs = {in({2, 3, 4}).range(-3, 3).permuted()},
       .op = [](const Args& a) { return nq::log_softmax(a[0], 1); },
       .reference = [](const Refs& r) { return ref_softmax(r[0], 1, true); }});
  add({.name = "logsumexp dim 1 keepdim",
       .inputs = {in({2, 3, 5}).range(-3, 3)},
       .op = [](const Args& a) { return nq::logsumexp(a[0], 1, true); },
       .reference = [](const Refs& r) { return ref_logsumexp(r[0], 1, true); }});
  add({.name = "logsumexp large values, transposed input",
       .inputs = {in({3, 4}).range(80, 120).transposed()},
       .op = [](const Args& a) { return nq::logsumexp(a[0], -1); },
       .reference = [](const Refs& r) { return ref_logsumexp(r[0], -1, false); }});

  // ---- normalisation -------------------------------------------------------------------
  add({.name = "layer_norm affine",
       .inputs = {in({2, 3, 8}).range(-2, 2), in({8}), in({8})},
       .op = [](const Args& a) { return nq::layer_norm(a[0], a[1], a[2]); },
       .reference = [](const Refs& r) { return ref_norm(r[0], &r[1], &r[2], 1e-5, true); }});
  add({.name = "layer_norm no affine",
       .inputs = {in({2, 3, 8}).range(-2, 2), undefined(), undefined()},
       .op = [](const Args& a) { return nq::layer_norm(a[0], a[1], a[2]); },
       .reference = [](const Refs& r) { return ref_norm(r[0], nullptr, nullptr, 1e-5, true); }});
  add({.name = "layer_norm weight only, eps 1e-2",
       .inputs = {in({3, 6}), in({6}), undefined()},
       .op = [](const Args& a) { return nq::layer_norm(a[0], a[1], a[2], 1e-2); },
       .reference = [](const Refs& r) { return ref_norm(r[0], &r[1], nullptr, 1e-2, true); }});
  add({.name = "layer_norm affine, transposed x",
       .inputs = {in({5, 6}).range(-2, 2).transposed(), in({6}), in({6})},
       .op = [](const Args& a) { return nq::layer_norm(a[0], a[1], a[2]); },
       .reference = [](const Refs& r) { return ref_norm(r[0], &r[1], &r[2], 1e-5, true); }});
  add({.name = "rms_norm",
       .inputs = {in({2, 3, 8}).range(-2, 2), in({8})},
       .op = [](const Args& a) { return nq::rms_norm(a[0], a[1]); },
       .reference = [](const Refs& r) { return ref_norm(r[0], &r[1], nullptr, 1e-6, false); }});
  add({.name = "rms_norm sliced x, eps 1e-3",
       .inputs = {in({3, 6}).range(-2, 2).sliced(), in({6})},
       .op = [](const Args& a) { return nq::rms_norm(a[0], a[1], 1e-3); },
       .reference = [](const Refs& r) { return ref_norm(r[0], &r[1], nullptr, 1e-3, false); }});
  add({.name = "rms_norm without weight",
       .inputs = {in({4, 5}).range(-2, 2), undefined()},
       .op = [](const Args& a) { return nq::rms_norm(a[0], a[1]); },
       .reference = [](const Refs& r) { return ref_norm(r[0], nullptr, nullptr, 1e-6, false); }});

  // ---- embedding -------------------------------------------------------------------------
  add({.name = "embedding ids (2,3) with repeats",
       .inputs = {in({5, 4}), ints({1, 3, 1, 0, 3, 3}, {2, 3})},
       .op = [](const Args& a) { return nq::embedding(a[0], a[1]); },
       .reference = [](const Refs& r) { return ref_embedding(r[0], r[1]); }});
  add({.name = "embedding 1-d ids, transposed (tied) weight",
       .inputs = {in({6, 3}).transposed(), ints({2, 2, 0, 5}, {4})},
       .op = [](const Args& a) { return nq::embedding(a[0], a[1]); },
       .reference = [](const Refs& r) { return ref_embedding(r[0], r[1]); }});
  add({.name = "embedding scalar id",
       .inputs = {in({4, 3}), ints({2}, {})},
       .op = [](const Args& a) { return nq::embedding(a[0], a[1]); },
       .reference = [](const Refs& r) { return ref_embedding(r[0], r[1]); }});

  // ---- dropout: the generator is reseeded before every call, so each
  // finite-difference evaluation sees the same mask ------------------------------------------
  for (double p : {0.5, 0.25}) {
    auto gen = std::make_shared<nq::Generator>(1234);
    add({.name = "dropout p=" + std::to_string(p),
         .inputs = {in({4, 8}).range(0.5, 2)},
         .op =
             [gen, p](const Args& a) {
               gen->manual_seed(1234);
               return nq::dropout(a[0], p, true, gen.get());
             },
         // Kept elements (nonzero output) must equal x / (1-p); the rest 0.
         .reference_given_output =
             [p](const Refs& r, const RefInput& out) {
               RefOut o{r[0].shape, {}};
               for (int64_t i = 0; i < r[0].numel(); ++i)
                 o.v.push_back(out[i] == 0 ? 0.0 : r[0][i] / (1 - p));
               return o;
             }});
  }
  {
    auto gen = std::make_shared<nq::Generator>(99);
    add({.name = "dropout p=0.5 of a transposed input",
         .inputs = {in({3, 5}).range(0.5, 2).transposed()},
         .op =
             [gen](const Args& a) {
               gen->manual_seed(99);
               return nq::dropout(a[0], 0.5, true, gen.get());
             },
         .reference_given_output =
             [](const Refs& r, const RefInput& out) {
               RefOut o{r[0].shape, {}};
               for (int64_t i = 0; i < r[0].numel(); ++i) o.v.push_back(out[i] == 0 ? 0.0 : 2 * r[0][i]);
               return o;
             }});
  }
  add({.name = "dropout eval mode is the identity",
       .inputs = {in({3, 4})},
       .op = [](const Args& a) { return nq::dropout(a[0], 0.5, false); },
       .reference = [](const Refs& r) { return ref_reshape(r[0], r[0].shape); }});
  add({.name = "dropout p=0 is the identity",
       .inputs = {in({3, 4})},
       .op = [](const Args& a) { return nq::dropout(a[0], 0.0, true); },
       .reference = [](const Refs& r) { return ref_reshape(r[0], r[0].shape); }});

  // ---- scaled_dot_product_attention ------------------------------------------------------
  // inputs: q, k, v (, key_padding_mask)
  auto attn = [](bool causal, std::optional<double> scale = std::nullopt) {
    return [causal, scale](const Args& a) {
      nq::AttentionOptions o;
      o.causal = causal;
      o.scale = scale;
      if (a.size() > 3) o.key_padding_mask = a[3];
      return nq::scaled_dot_product_attention(a[0], a[1], a[2], o);
    };
  };
  auto attn_ref = [](bool causal, std::optional<double> scale = std::nullopt) {
    return [causal, scale](const Refs& r) {
      return ref_attention(r[0], r[1], r[2], r.size() > 3 ? &r[3] : nullptr, causal, scale);
    };
  };
  const auto q = in({2, 2, 3, 4}).range(-2, 2), k = in({2, 2, 3, 4}).range(-2, 2), v = in({2, 2, 3, 4});
  add({.name = "attention plain", .inputs = {q, k, v}, .op = attn(false), .reference = attn_ref(false)});
  add({.name = "attention causal", .inputs = {q, k, v}, .op = attn(true), .reference = attn_ref(true)});
  add({.name = "attention right padding",
       .inputs = {q, k, v, ints({1, 1, 1, 1, 0, 0}, {2, 3})},
       .op = attn(false),
       .reference = attn_ref(false)});
  add({.name = "attention causal + right padding",
       .inputs = {q, k, v, ints({1, 1, 0, 1, 1, 1}, {2, 3})},
       .op = attn(true),
       .reference = attn_ref(true)});
  add({.name = "attention causal + left padding (fully masked rows)",
       .inputs = {q, k, v, ints({1, 1, 1, 0, 0, 1}, {2, 3})},
       .op = attn(true),
       .reference = attn_ref(true)});
  add({.name = "attention float mask, custom scale",
       .inputs = {q, k, v, fixed({1, 0, 1, 1, 1, 0}, {2, 3})},
       .op = attn(false, 0.3),
       .reference = attn_ref(false, 0.3)});
  add({.name = "attention T=2 != S=4, Dv=3",
       .inputs = {in({2, 2, 2, 4}).range(-2, 2), in({2, 2, 4, 4}).range(-2, 2), in({2, 2, 4, 3})},
       .op = attn(false),
       .reference = attn_ref(false)});
  add({.name = "attention causal T=2 < S=4 (last query sees all keys)",
       .inputs = {in({1, 2, 2, 4}).range(-2, 2), in({1, 2, 4, 4}).range(-2, 2), in({1, 2, 4, 4})},
       .op = attn(true),
       .reference = attn_ref(true)});
  add({.name = "attention causal T=4 > S=2 (early queries see nothing)",
       .inputs = {in({1, 2, 4, 3}).range(-2, 2), in({1, 2, 2, 3}).range(-2, 2), in({1, 2, 2, 3})},
       .op = attn(true),
       .reference = attn_ref(true)});
  add({.name = "attention causal, non-contiguous q (transposed) and k (sliced), left padding",
       .inputs = {in({2, 2, 3, 4}).range(-2, 2).transposed(), in({2, 2, 3, 4}).range(-2, 2).sliced(),
                  v.permuted(), ints({0, 1, 1, 1, 1, 1}, {2, 3})},
       .op = attn(true),
       .reference = attn_ref(true)});
  add({.name = "attention q from a (B,T,H,D) projection via transpose(1,2)",
       .inputs = {in({2, 3, 2, 4}).range(-2, 2), k, v},
       .op =
           [](const Args& a) {
             nq::AttentionOptions o;
             o.causal = true;
             return nq::scaled_dot_product_attention(a[0].transpose(1, 2), a[1], a[2], o);
           },
       .reference =
           [](const Refs& r) {
             RefOut qt = ref_permute(r[0], {0, 2, 1, 3});
             return ref_attention(RefInput{qt.shape, qt.v}, r[1], r[2], nullptr, true, std::nullopt);
           }});
  add({.name = "attention with k/v heads expanded (shared kv)",
       .inputs = {q, in({2, 2, 3, 4}).range(-2, 2).expanded_from({2, 1, 3, 4}),
                  v.expanded_from({2, 1, 3, 4})},
       .op = attn(false),
       .reference = attn_ref(false)});

  // ---- cross_entropy -----------------------------------------------------------------------
  // inputs: logits (2,3,5), targets (2,3) with one ignored (-100), weights (2,3)
  const auto logits = in({2, 3, 5}).range(-3, 3);
  const auto targets = ints({1, 4, -100, 0, 2, 2}, {2, 3});
  const auto weights = fixed({0.5, 2.0, 1.5, 1.0, 0.25, 3.0}, {2, 3});
  const std::vector<std::pair<const char*, nq::Reduction>> reductions = {
      {"None", nq::Reduction::None},
      {"Sum", nq::Reduction::Sum},
      {"Mean", nq::Reduction::Mean},
      {"WeightedMean", nq::Reduction::WeightedMean}};
  auto ce = [](nq::Reduction red, int64_t ignore = -100) {
    return [red, ignore](const Args& a) {
      nq::CrossEntropyOptions o;
      o.reduction = red;
      o.ignore_index = ignore;
      if (a.size() > 2) o.weights = a[2];
      return nq::cross_entropy(a[0], a[1], o);
    };
  };
  auto ce_ref = [](nq::Reduction red, int64_t ignore = -100) {
    return [red, ignore](const Refs& r) {
      return ref_cross_entropy(r[0], r[1], r.size() > 2 ? &r[2] : nullptr, ignore, red);
    };
  };
  for (const auto& [rname, red] : reductions) {
    const std::string n = rname;
    add({.name = "cross_entropy " + n + " with ignore_index",
         .inputs = {logits, targets},
         .op = ce(red),
         .reference = ce_ref(red)});
    add({.name = "cross_entropy " + n + " with per-token weights",
         .inputs = {logits, targets, weights},
         .op = ce(red),
         .reference = ce_ref(red)});
    add({.name = "cross_entropy " + n + ", all targets ignored -> 0",
         .inputs = {logits, ints({-100, -100, -100, -100, -100, -100}, {2, 3}), weights},
         .op = ce(red),
         .reference = ce_ref(red)});
  }
  add({.name = "cross_entropy custom ignore_index 2 (a valid class id)",
       .inputs = {logits, ints({1, 4, 2, 0, 2, 3}, {2, 3})},
       .op = ce(nq::Reduction::Mean, 2),
       .reference = ce_ref(nq::Reduction::Mean, 2)});
  add({.name = "cross_entropy 2-d logits, transposed",
       .inputs = {in({4, 5}).range(-3, 3).transposed(), ints({0, 3, 4, 1}, {4})},
       .op = ce(nq::Reduction::Mean),
       .reference = ce_ref(nq::Reduction::Mean)});
  add({.name = "cross_entropy large logits",
       .inputs = {in({3, 6}).range(-100, 100), ints({5, 0, 3}, {3})},
       .op = ce(nq::Reduction::Sum),
       .reference = ce_ref(nq::Reduction::Sum),
       .fwd32 = {1e-4, 1e-3}});

  // ---- edge shapes: empty tensors, size-1 dims, scalar-shaped tensors ---------------------
  add({.name = "add with an empty operand (0,3)+(3)",
       .inputs = {in({0, 3}), in({3})},
       .op = [](const Args& a) { return a[0] + a[1]; },
       .reference = ref_binary(std::plus<double>())});
  add({.name = "sum over an empty dim gives zeros",
       .inputs = {in({2, 0})},
       .op = [](const Args& a) { return nq::sum(a[0], {1}); },
       .reference = [](const Refs& r) { return ref_sum(r[0], {1}, false); }});
  add({.name = "concat with an empty piece",
       .inputs = {in({2, 3}), in({2, 0})},
       .op =
           [](const Args& a) {
             return nq::concat({a[0], a[1]}, 1);
           },
       .reference =
           [](const Refs& r) {
             return ref_concat({r[0], r[1]}, 1);
           }});
  add({.name = "expand a scalar-shaped tensor",
       .inputs = {in({})},
       .op =
           [](const Args& a) {
             return a[0].expand({2, 3});
           },
       .reference =
           [](const Refs& r) {
             return ref_expand(r[0], {2, 3});
           }});
  add({.name = "softmax over a dim of size 1",
       .inputs = {in({3, 1})},
       .op = [](const Args& a) { return nq::softmax(a[0], -1); },
       .reference = [](const Refs& r) { return ref_softmax(r[0], -1, false); }});
  add({.name = "logsumexp of a scalar-shaped tensor",
       .inputs = {in({})},
       .op = [](const Args& a) { return nq::logsumexp(a[0], 0); },
       .reference = [](const Refs& r) { return ref_reshape(r[0], {}); }});
  add({.name = "layer_norm with C=1 (zero variance)",
       .inputs = {in({3, 1}), in({1}), in({1})},
       .op = [](const Args& a) { return nq::layer_norm(a[0], a[1], a[2]); },
       .reference = [](const Refs& r) { return ref_norm(r[0], &r[1], &r[2], 1e-5, true); }});
  add({.name = "max over a dim of size 1",
       .inputs = {in({3, 1})},
       .op = [](const Args& a) { return nq::max(a[0], 1); },
       .reference = [](const Refs& r) { return ref_max(r[0], {1}, false); }});
  add({.name = "where with cond broadcasting over both branches",
       .inputs = {ints({1, 0, 1, 0, 0, 1}, {2, 3}), in({3}), in({1})},
       .op = [](const Args& a) { return nq::where(a[0], a[1], a[2]); },
       .reference =
           [](const Refs& r) {
             RefOut o{{2, 3}, {}};
             for (int64_t i = 0; i < 6; ++i) o.v.push_back(r[0][i] != 0 ? r[1][i % 3] : r[2][0]);
             return o;
           }});
  add({.name = "unsqueeze twice of a sliced input",
       .inputs = {in({3, 4}).sliced()},
       .op = [](const Args& a) { return a[0].unsqueeze(1).unsqueeze(3); },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {3, 1, 4, 1});
           }});
  add({.name = "reshape of an expanded input (copies)",
       .inputs = {in({2, 3}).expanded_from({1, 3})},
       .op =
           [](const Args& a) {
             return a[0].reshape({3, 2});
           },
       .reference =
           [](const Refs& r) {
             return ref_reshape(r[0], {3, 2});
           }});
  // More queries than one causal row block (64): the blocks skip the masked
  // upper triangle and accumulate key-side gradients across blocks.
  add({.name = "attention causal T=S=70 (two row blocks)",
       .inputs = {in({1, 1, 70, 3}), in({1, 1, 70, 3}), in({1, 1, 70, 2})},
       .op = attn(true),
       .reference = attn_ref(true)});
  {
    std::vector<int64_t> keep(2 * 75, 1);
    for (int j = 0; j < 6; ++j) keep[75 + j] = 0;  // row 1: six left pads
    add({.name = "attention causal T=67 < S=75, left padding (two row blocks)",
         .inputs = {in({2, 1, 67, 2}), in({2, 1, 75, 2}), in({2, 1, 75, 2}), ints(keep, {2, 75})},
         .op = attn(true),
         .reference = attn_ref(true)});
  }
  add({.name = "attention with its only key padded outputs 0",
       .inputs = {in({1, 1, 1, 2}), in({1, 1, 1, 2}), in({1, 1, 1, 2}), ints({0}, {1, 1})},
       .op =
           [](const Args& a) {
             nq::AttentionOptions o;
             o.causal = true;
             o.key_padding_mask = a[3];
             return nq::scaled_dot_product_attention(a[0], a[1], a[2], o);
           },
       .reference =
           [](const Refs& r) { return ref_attention(r[0], r[1], r[2], &r[3], true, std::nullopt); }});
  add({.name = "cross_entropy WeightedMean with all-zero weights -> 0",
       .inputs = {in({2, 3}), ints({0, 1}, {2}), fixed({0, 0}, {2})},
       .op =
           [](const Args& a) {
             nq::CrossEntropyOptions o;
             o.reduction = nq::Reduction::WeightedMean;
             o.weights = a[2];
             return nq::cross_entropy(a[0], a[1], o);
           },
       .reference =
           [](const Refs& r) {
             return ref_cross_entropy(r[0], r[1], &r[2], -100, nq::Reduction::WeightedMean);
           }});
  // ---- rope ------------------------------------------------------------------------
  // inputs: x (B,H,T,D), cos, sin; the reference rotates pair (i, i+D/2) by the
  // angle whose cos/sin are given (any values: the op does not assume cos^2+sin^2=1).
  auto ref_rope = [](const Refs& r) {
    const RefInput &x = r[0], &c = r[1], &s = r[2];
    const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), D2 = D / 2;
    const bool shared = c.rank() == 2;
    RefOut o{x.shape, std::vector<double>(x.v.size())};
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t i = 0; i < D2; ++i) {
            const int64_t ti = shared ? t * D2 + i : (b * T + t) * D2 + i;
            const double x1 = x.at({b, h, t, i}), x2 = x.at({b, h, t, i + D2});
            o.v[flat_index(x.shape, {b, h, t, i})] = x1 * c[ti] - x2 * s[ti];
            o.v[flat_index(x.shape, {b, h, t, i + D2})] = x2 * c[ti] + x1 * s[ti];
          }
    return o;
  };
  auto rope_op = [](const Args& a) { return nq::rope(a[0], a[1], a[2]); };
  const std::vector<double> cs = {0.9, 0.1, -0.4, 0.7, 0.3, -0.8, 0.5, 0.6, -0.2, 1.0, 0.0, -0.6,
                                  0.8, -0.3, 0.2, 0.4, -0.9, 0.35, 0.55, -0.15, 0.65, -0.45, 0.25, 0.05};
  const std::vector<double> sn = {0.2, -0.7, 0.6, 0.3, -0.1, 0.5, 0.9, -0.4, 0.8, 0.0, -1.0, 0.45,
                                  -0.25, 0.75, 0.15, -0.65, 0.05, 0.85, -0.35, 0.95, 0.3, -0.55, 0.1, 0.4};
  add({.name = "rope (B,T,D/2) tables",
       .inputs = {in({2, 2, 3, 4}), fixed(std::vector<double>(cs.begin(), cs.begin() + 12), {2, 3, 2}),
                  fixed(std::vector<double>(sn.begin(), sn.begin() + 12), {2, 3, 2})},
       .op = rope_op,
       .reference = ref_rope});
  add({.name = "rope shared (T,D/2) tables, D=6",
       .inputs = {in({1, 2, 4, 6}), fixed(std::vector<double>(cs.begin(), cs.begin() + 12), {4, 3}),
                  fixed(std::vector<double>(sn.begin(), sn.begin() + 12), {4, 3})},
       .op = rope_op,
       .reference = ref_rope});
  add({.name = "rope on a (B,T,H,D) projection seen through transpose(1,2)",
       .inputs = {in({2, 3, 2, 4}), fixed(std::vector<double>(cs.begin(), cs.begin() + 12), {2, 3, 2}),
                  fixed(std::vector<double>(sn.begin(), sn.begin() + 12), {2, 3, 2})},
       .op = [](const Args& a) { return nq::rope(a[0].transpose(1, 2), a[1], a[2]); },
       .reference =
           [ref_rope](const Refs& r) {
             const RefInput& x = r[0];  // (B,T,H,D) -> (B,H,T,D)
             RefInput xt{{x.size(0), x.size(2), x.size(1), x.size(3)}, std::vector<double>(x.v.size())};
             for_each_index(x.shape, [&](const std::vector<int64_t>& i) {
               xt.v[flat_index(xt.shape, {i[0], i[2], i[1], i[3]})] = x.at(i);
             });
             return ref_rope({xt, r[1], r[2]});
           }});

  add({.name = "embedding with no ids",
       .inputs = {in({3, 2}), ints({}, {0})},
       .op = [](const Args& a) { return nq::embedding(a[0], a[1]); },
       .reference = [](const Refs& r) { return ref_embedding(r[0], r[1]); }});

  return t;
}

}  // namespace
