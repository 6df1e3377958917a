#pragma once
// Element-wise ops. Each op is its forward kernel (a lambda over one element)
// plus its backward right below it. Binary ops broadcast; their backward
// sums the gradient back to each input's shape (sum_to).
#include <Eigen/Core>
#include <cmath>

#include "../autograd/node.hpp"
#include "../config.hpp"  // before Eigen: sets EIGEN_DONT_PARALLELIZE
#include "../cpu/map.hpp"
#include "../cuda/core.hpp"
#include "factory.hpp"

namespace nq {

namespace detail {

// out = f(x) for a float tensor (f is generic over float/double).
template <typename F>
Tensor map1(const Tensor& x, const char* op, F f) {
  return visit_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return cpu::map_n<T, 1>({x}, op, [&](T a) { return static_cast<T>(f(a)); });
  });
}
template <typename F>
Tensor map2(const Tensor& a, const Tensor& b, const char* op, F f) {
  return visit_float(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return cpu::map_n<T, 2>({a, b}, op, [&](T x, T y) { return static_cast<T>(f(x, y)); });
  });
}
template <typename F>
Tensor map3(const Tensor& a, const Tensor& b, const Tensor& c, const char* op, F f) {
  return visit_float(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return cpu::map_n<T, 3>({a, b, c}, op, [&](T x, T y, T z) { return static_cast<T>(f(x, y, z)); });
  });
}

// A unary op y = fwd(x) with dy/dx computed element-wise by dfdx(x, y).
// Saves detached x and y (a saved tensor must not own the graph it is in).
template <typename Fwd, typename D>
Tensor unary(const char* op, const Tensor& x, Fwd fwd, D dfdx) {
  Tensor y = map1(x, op, fwd);
  Tensor xs = x.detach(), ys = y.detach();
  return record(op, y, {x}, [xs, ys, dfdx, op](const Tensor& g, const Node&) -> std::vector<Tensor> {
    return {map3(g, xs, ys, op, [&](auto gi, auto xi, auto yi) { return gi * dfdx(xi, yi); })};
  });
}

inline void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  NQ_CHECK(a.dtype() == b.dtype(), op, "dtype mismatch: ", a.brief(), " vs ", b.brief());
}

// ---- CUDA dispatch ---------------------------------------------------------------
// Every op has an op code (cuda/core.hpp) because the CPU's generic lambdas
// cannot run on the GPU. bin/tern/un pick the CUDA kernel for CUDA tensors
// and the lambda otherwise; the autograd recording around them is shared.
// Mixed float dtypes on CUDA (bf16 with f32 under mixed precision) compute in
// the wider dtype; the engine casts each input's gradient back to its dtype.
// The CPU keeps rejecting mismatches.
#if NEXTQUILL_WITH_CUDA
inline DType wider_float(DType a, DType b, const char* op) {
  NQ_CHECK(is_floating(a) && is_floating(b), op, "dtype mismatch: ", dtype_name(a), " vs ", dtype_name(b));
  auto rank = [](DType d) { return d == kFloat64 ? 3 : d == kFloat32 ? 2 : 1; };
  return rank(a) >= rank(b) ? a : b;
}
template <size_t N>
std::array<Tensor, N> cuda_operands(std::array<Tensor, N> in, const char* op) {
  DType d = in[0].dtype();
  for (size_t k = 0; k < N; ++k) {
    NQ_CHECK(in[k].device() == in[0].device(), op, "tensors on different devices: ", in[0].brief(), " on ",
             in[0].device().str(), ", ", in[k].brief(), " on ", in[k].device().str());
    if (in[k].dtype() != d) d = wider_float(d, in[k].dtype(), op);
  }
  NoGradGuard ng;
  for (auto& t : in) t = t.to(d);
  return in;
}
#endif

template <typename F>
Tensor bin(const Tensor& a, const Tensor& b, cuda::BinaryOp code, const char* op, F f) {
#if NEXTQUILL_WITH_CUDA
  if (a.device().is_cuda() || b.device().is_cuda()) {
    auto in = cuda_operands<2>({a, b}, op);
    return cuda::binary(code, in[0], in[1]);
  }
#endif
  (void)code;
  return map2(a, b, op, f);
}
template <typename F>
Tensor tern(const Tensor& a, const Tensor& b, const Tensor& c, cuda::TernaryOp code, const char* op, F f) {
#if NEXTQUILL_WITH_CUDA
  if (a.device().is_cuda() || b.device().is_cuda() || c.device().is_cuda()) {
    auto in = cuda_operands<3>({a, b, c}, op);
    return cuda::ternary(code, in[0], in[1], in[2]);
  }
#endif
  (void)code;
  return map3(a, b, c, op, f);
}

#if NEXTQUILL_WITH_CUDA
// y = f(x) on CUDA; saves x or y, whichever the backward formula reads.
inline Tensor cuda_unary(const char* op, cuda::UnaryOp code, const Tensor& x, double s) {
  Tensor y = cuda::unary(code, x, s);
  Tensor saved = cuda::unary_backward_uses_output(code) ? y.detach() : x.detach();
  return record(op, y, {x}, [code, saved, s](const Tensor& g, const Node&) -> std::vector<Tensor> {
    Tensor gg = g.dtype() == saved.dtype() ? g : g.to(saved.dtype());
    return {cuda::unary_backward(code, gg, saved, s)};
  });
}
#endif

// detail::unary on the CPU, the op code's kernels on CUDA.
template <typename Fwd, typename D>
Tensor un(const char* op, cuda::UnaryOp code, double s, const Tensor& x, Fwd fwd, D dfdx) {
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) return cuda_unary(op, code, x, s);
#endif
  (void)code, (void)s;
  return unary(op, x, fwd, dfdx);
}

}  // namespace detail

// ---- broadcasting reduction used by every binary backward -------------------
inline Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  NQ_CHECK(shape.size() <= x.shape().size(), "sum_to", "cannot reduce ", shape_str(x.shape()), " to ",
           shape_str(shape));
  const size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < x.shape().size(); ++i) {
    if (i < lead)
      dims.push_back(static_cast<int64_t>(i));
    else if (shape[i - lead] == 1 && x.shape()[i] != 1)
      dims.push_back(static_cast<int64_t>(i));
    else
      NQ_CHECK(shape[i - lead] == x.shape()[i], "sum_to", "cannot reduce ", shape_str(x.shape()), " to ",
               shape_str(shape));
  }
  return sum(x, dims, true).reshape(shape);
}

// ---- binary ------------------------------------------------------------------
inline Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = detail::bin(a, b, cuda::BinaryOp::Add, "add", [](auto x, auto y) { return x + y; });
  Shape sa = a.shape(), sb = b.shape();
  return record("add", out, {a, b}, [sa, sb](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    return {n.needs(0) ? sum_to(g, sa) : Tensor(), n.needs(1) ? sum_to(g, sb) : Tensor()};
  });
}

inline Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = detail::bin(a, b, cuda::BinaryOp::Sub, "sub", [](auto x, auto y) { return x - y; });
  Shape sa = a.shape(), sb = b.shape();
  return record("sub", out, {a, b}, [sa, sb](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    return {n.needs(0) ? sum_to(g, sa) : Tensor(), n.needs(1) ? sum_to(neg(g), sb) : Tensor()};
  });
}

inline Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = detail::bin(a, b, cuda::BinaryOp::Mul, "mul", [](auto x, auto y) { return x * y; });
  Tensor as = a.detach(), bs = b.detach();
  return record("mul", out, {a, b}, [as, bs](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    return {n.needs(0) ? sum_to(mul(g, bs), as.shape()) : Tensor(),
            n.needs(1) ? sum_to(mul(g, as), bs.shape()) : Tensor()};
  });
}

inline Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = detail::bin(a, b, cuda::BinaryOp::Div, "div", [](auto x, auto y) { return x / y; });
  Tensor as = a.detach(), bs = b.detach();
  return record("div", out, {a, b}, [as, bs](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    Tensor ga, gb;
    if (n.needs(0)) ga = sum_to(div(g, bs), as.shape());
    if (n.needs(1))  // d(a/b)/db = -a / b^2
      gb = sum_to(detail::tern(g, as, bs, cuda::TernaryOp::DivGradB, "div",
                               [](auto gi, auto x, auto y) { return -gi * x / (y * y); }),
                  bs.shape());
    return {ga, gb};
  });
}

inline Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = detail::bin(a, b, cuda::BinaryOp::Pow, "pow", [](auto x, auto y) { return std::pow(x, y); });
  Tensor as = a.detach(), bs = b.detach(), os = out.detach();
  return record("pow", out, {a, b}, [as, bs, os](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    Tensor ga, gb;
    if (n.needs(0))
      ga = sum_to(detail::tern(g, as, bs, cuda::TernaryOp::PowGradA, "pow",
                               [](auto gi, auto x, auto y) { return gi * y * std::pow(x, y - 1); }),
                  as.shape());
    if (n.needs(1))  // d(a^b)/db = a^b log a (0 where a == 0, the limit used by PyTorch)
      gb = sum_to(detail::tern(g, as, os, cuda::TernaryOp::PowGradB, "pow",
                               [](auto gi, auto x, auto o) {
                                 return x == 0 ? decltype(gi)(0) : gi * o * std::log(x);
                               }),
                  bs.shape());
    return {ga, gb};
  });
}

// Ties send the gradient to `a` (maximum) / `a` (minimum).
inline Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out =
      detail::bin(a, b, cuda::BinaryOp::Maximum, "maximum", [](auto x, auto y) { return x >= y ? x : y; });
  Tensor as = a.detach(), bs = b.detach();
  return record("maximum", out, {a, b}, [as, bs](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    Tensor ga, gb;
    if (n.needs(0))
      ga = sum_to(detail::tern(g, as, bs, cuda::TernaryOp::MaxGradA, "maximum",
                               [](auto gi, auto x, auto y) { return x >= y ? gi : 0; }),
                  as.shape());
    if (n.needs(1))
      gb = sum_to(detail::tern(g, as, bs, cuda::TernaryOp::MaxGradB, "maximum",
                               [](auto gi, auto x, auto y) { return x >= y ? 0 : gi; }),
                  bs.shape());
    return {ga, gb};
  });
}
inline Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out =
      detail::bin(a, b, cuda::BinaryOp::Minimum, "minimum", [](auto x, auto y) { return x <= y ? x : y; });
  Tensor as = a.detach(), bs = b.detach();
  return record("minimum", out, {a, b}, [as, bs](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    Tensor ga, gb;
    if (n.needs(0))
      ga = sum_to(detail::tern(g, as, bs, cuda::TernaryOp::MinGradA, "minimum",
                               [](auto gi, auto x, auto y) { return x <= y ? gi : 0; }),
                  as.shape());
    if (n.needs(1))
      gb = sum_to(detail::tern(g, as, bs, cuda::TernaryOp::MinGradB, "minimum",
                               [](auto gi, auto x, auto y) { return x <= y ? 0 : gi; }),
                  bs.shape());
    return {ga, gb};
  });
}

inline Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor c = cond.dtype() == a.dtype() ? cond : cond.to(a.dtype());
  Tensor out = detail::tern(c, a, b, cuda::TernaryOp::Where, "where",
                            [](auto ci, auto x, auto y) { return ci != 0 ? x : y; });
  Tensor cs = c.detach();
  Shape sa = a.shape(), sb = b.shape();
  return record("where", out, {a, b}, [cs, sa, sb](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    Tensor ga, gb;
    if (n.needs(0))
      ga = sum_to(detail::bin(g, cs, cuda::BinaryOp::WhereGradA, "where",
                              [](auto gi, auto ci) { return ci != 0 ? gi : 0; }),
                  sa);
    if (n.needs(1))
      gb = sum_to(detail::bin(g, cs, cuda::BinaryOp::WhereGradB, "where",
                              [](auto gi, auto ci) { return ci != 0 ? 0 : gi; }),
                  sb);
    return {ga, gb};
  });
}

// ---- with a scalar -------------------------------------------------------------
inline Tensor add(const Tensor& a, double s) {
  return detail::un(
      "add_scalar", cuda::UnaryOp::AddScalar, s, a, [s](auto x) { return x + static_cast<decltype(x)>(s); },
      [](auto, auto) { return 1; });
}
inline Tensor mul(const Tensor& a, double s) {
  return detail::un(
      "mul_scalar", cuda::UnaryOp::MulScalar, s, a, [s](auto x) { return x * static_cast<decltype(x)>(s); },
      [s](auto x, auto) { return static_cast<decltype(x)>(s); });
}
inline Tensor rsub(double s, const Tensor& a) {
  return detail::un(
      "rsub_scalar", cuda::UnaryOp::RsubScalar, s, a, [s](auto x) { return static_cast<decltype(x)>(s) - x; },
      [](auto, auto) { return -1; });
}
inline Tensor rdiv(double s, const Tensor& a) {
  return detail::un(
      "rdiv_scalar", cuda::UnaryOp::RdivScalar, s, a, [s](auto x) { return static_cast<decltype(x)>(s) / x; },
      [](auto x, auto y) { return -y / x; });
}
inline Tensor pow(const Tensor& a, double e) {
  return detail::un(
      "pow_scalar", cuda::UnaryOp::PowScalar, e, a,
      [e](auto x) { return std::pow(x, static_cast<decltype(x)>(e)); },
      [e](auto x, auto) {
        using T = decltype(x);
        return e == 0 ? T(0) : static_cast<T>(e) * std::pow(x, static_cast<T>(e - 1));
      });
}

// ---- unary ------------------------------------------------------------------
inline Tensor neg(const Tensor& x) {
  return detail::un(
      "neg", cuda::UnaryOp::Neg, 0, x, [](auto v) { return -v; }, [](auto, auto) { return -1; });
}
inline Tensor exp(const Tensor& x) {
  return detail::un(
      "exp", cuda::UnaryOp::Exp, 0, x, [](auto v) { return std::exp(v); }, [](auto, auto y) { return y; });
}
inline Tensor log(const Tensor& x) {
  return detail::un(
      "log", cuda::UnaryOp::Log, 0, x, [](auto v) { return std::log(v); },
      [](auto v, auto) { return 1 / v; });
}
inline Tensor sqrt(const Tensor& x) {
  return detail::un(
      "sqrt", cuda::UnaryOp::Sqrt, 0, x, [](auto v) { return std::sqrt(v); },
      [](auto, auto y) { return 1 / (2 * y); });
}
inline Tensor rsqrt(const Tensor& x) {
  return detail::un(
      "rsqrt", cuda::UnaryOp::Rsqrt, 0, x, [](auto v) { return 1 / std::sqrt(v); },
      [](auto, auto y) { return -y * y * y / 2; });
}
inline Tensor abs(const Tensor& x) {
  return detail::un(
      "abs", cuda::UnaryOp::Abs, 0, x, [](auto v) { return std::abs(v); },
      [](auto v, auto) { return static_cast<decltype(v)>((v > 0) - (v < 0)); });
}
inline Tensor square(const Tensor& x) {
  return detail::un(
      "square", cuda::UnaryOp::Square, 0, x, [](auto v) { return v * v; },
      [](auto v, auto) { return 2 * v; });
}
inline Tensor tanh(const Tensor& x) {
  return detail::un(
      "tanh", cuda::UnaryOp::Tanh, 0, x, [](auto v) { return std::tanh(v); },
      [](auto, auto y) { return 1 - y * y; });
}
inline Tensor sigmoid(const Tensor& x) {
  // Two branches keep exp() from overflowing for large |v|.
  return detail::un(
      "sigmoid", cuda::UnaryOp::Sigmoid, 0, x,
      [](auto v) {
        using T = decltype(v);
        if (v >= 0) return T(1) / (T(1) + std::exp(-v));
        T e = std::exp(v);
        return e / (T(1) + e);
      },
      [](auto, auto y) { return y * (1 - y); });
}
inline Tensor relu(const Tensor& x) {
  return detail::un(
      "relu", cuda::UnaryOp::Relu, 0, x, [](auto v) { return v > 0 ? v : decltype(v)(0); },
      [](auto v, auto) { return static_cast<decltype(v)>(v > 0); });
}
namespace detail {

// A unary op computed block by block on contiguous data with Eigen arrays, so
// transcendental functions (tanh, exp) use Eigen's vectorised versions rather
// than scalar libm calls (GELU was 40% of a GPT training step that way).
// fwd(const T* x, T* y, n); bwd(const T* g, const T* x, T* dx, n). Saves x.
inline constexpr int64_t kUnaryBlock = 4096;
template <typename Fwd, typename Bwd>
Tensor unary_blocks(const char* op, const Tensor& x, Fwd fwd, Bwd bwd) {
  cpu::require_cpu(x, op);
  Tensor xc = x.contiguous().detach();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  visit_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    cpu::parallel_for(0, xc.numel(), kUnaryBlock * 4, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i += kUnaryBlock) fwd(xp + i, yp + i, std::min(kUnaryBlock, e - i));
    });
  });
  return record(op, y, {x}, [xc, bwd, op](const Tensor& g, const Node&) -> std::vector<Tensor> {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xc.shape(), xc.dtype());
    visit_float(xc.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* gp = gc.data_ptr<T>();
      const T* xp = xc.data_ptr<T>();
      T* dp = dx.data_ptr<T>();
      cpu::parallel_for(0, xc.numel(), kUnaryBlock * 4, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i += kUnaryBlock)
          bwd(gp + i, xp + i, dp + i, std::min(kUnaryBlock, e - i));
      });
    });
    return {dx};
  });
}

template <typename T>
using VArr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using VArrMut = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

}  // namespace detail

// x * sigmoid(x); sigmoid = 0.5 (1 + tanh(x/2)) keeps it finite for any x.
inline Tensor silu(const Tensor& x) {
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) return detail::cuda_unary("silu", cuda::UnaryOp::Silu, x, 0.0);
#endif
  return detail::unary_blocks(
      "silu", x,
      [](const auto* xp, auto* yp, int64_t n) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(yp)>>;
        auto v = detail::VArr<T>(xp, n);
        detail::VArrMut<T>(yp, n) = v * (T(0.5) + T(0.5) * (v * T(0.5)).tanh());
      },
      [](const auto* gp, const auto* xp, auto* dp, int64_t n) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(dp)>>;
        auto v = detail::VArr<T>(xp, n);
        auto sg = (T(0.5) + T(0.5) * (v * T(0.5)).tanh()).eval();
        detail::VArrMut<T>(dp, n) = detail::VArr<T>(gp, n) * sg * (T(1) + v * (T(1) - sg));
      });
}

inline Tensor gelu(const Tensor& x, GeluApprox approx) {
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda())
    return detail::cuda_unary(approx == GeluApprox::Tanh ? "gelu_tanh" : "gelu",
                              approx == GeluApprox::Tanh ? cuda::UnaryOp::GeluTanh : cuda::UnaryOp::Gelu, x,
                              0.0);
#endif
  if (approx == GeluApprox::Tanh) {
    // 0.5 x (1 + tanh(u)), u = k (x + 0.044715 x^3), k = sqrt(2/pi);
    // d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2).
    return detail::unary_blocks(
        "gelu_tanh", x,
        [](const auto* xp, auto* yp, int64_t n) {
          using T = std::remove_cv_t<std::remove_pointer_t<decltype(yp)>>;
          const T k = T(0.7978845608028654), c = T(0.044715);
          auto v = detail::VArr<T>(xp, n);
          detail::VArrMut<T>(yp, n) = T(0.5) * v * (T(1) + (k * (v + c * v * v * v)).tanh());
        },
        [](const auto* gp, const auto* xp, auto* dp, int64_t n) {
          using T = std::remove_cv_t<std::remove_pointer_t<decltype(dp)>>;
          const T k = T(0.7978845608028654), c = T(0.044715);
          auto v = detail::VArr<T>(xp, n);
          auto t = (k * (v + c * v * v * v)).tanh().eval();
          detail::VArrMut<T>(dp, n) =
              detail::VArr<T>(gp, n) *
              (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3) * c * v * v));
        });
  }
  // x Phi(x) with Phi the normal CDF.
  return detail::un(
      "gelu", cuda::UnaryOp::Gelu, 0, x,
      [](auto v) {
        using T = decltype(v);
        return T(0.5) * v * (T(1) + std::erf(v * T(0.7071067811865476)));
      },
      [](auto v, auto) {
        using T = decltype(v);
        T cdf = T(0.5) * (T(1) + std::erf(v * T(0.7071067811865476)));
        T pdf = T(0.3989422804014327) * std::exp(T(-0.5) * v * v);
        return cdf + v * pdf;
      });
}

}  // namespace nq
