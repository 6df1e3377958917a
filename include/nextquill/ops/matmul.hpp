#pragma once
// matmul: batched, broadcasting, transposes passed to BLAS as flags.
#include "../cpu/gemm.hpp"
#include "reduce.hpp"

namespace nq {

namespace detail {

// How BLAS can read the last two dims of t: row-major (unit column stride)
// or transposed (unit row stride). nullopt means a copy is needed.
template <typename T>
std::optional<cpu::MatRef<T>> as_matref(const Tensor& t, int64_t offset_elems) {
  const int64_t r = t.size(-2), c = t.size(-1);
  const int64_t sr = t.stride(-2), sc = t.stride(-1);
  const T* base = t.data_ptr<T>() + offset_elems;
  // BLAS needs a leading dimension of at least the stored row length, so
  // broadcast (stride-0) rows cannot be passed as they are.
  if ((sc == 1 || c == 1) && (r == 1 || sr >= c)) return cpu::MatRef<T>{base, r == 1 ? c : sr, false};
  if ((sr == 1 || r == 1) && (c == 1 || sc >= r)) return cpu::MatRef<T>{base, c == 1 ? r : sc, true};
  return std::nullopt;
}

// Forward kernel for a, b of rank >= 2 (batch dims broadcast). No autograd.
inline Tensor matmul_kernel(Tensor a, Tensor b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  NQ_CHECK(b.size(-2) == K, "matmul", "inner dimensions differ: ", shape_str(a.shape()), " @ ",
           shape_str(b.shape()));
  NQ_CHECK(a.dtype() == b.dtype(), "matmul", "dtype mismatch: ", a.brief(), " @ ", b.brief());
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  // (..., M, K) @ (K, N) with a foldable batch: one GEMM of (batch*M, K).
  if (b.dim() == 2 && a.dim() > 2) {
    if (auto st = view_strides(a.shape(), a.strides(), {numel_of(ba) * M, K})) {
      Shape os = a.shape();
      os.back() = N;
      return matmul_kernel(Tensor::make_view(a, {numel_of(ba) * M, K}, *st, a.offset()), b).view(os);
    }
  }
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a.dtype());
  visit_float(a.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!as_matref<T>(a, 0)) a = a.contiguous();
    if (!as_matref<T>(b, 0)) b = b.contiguous();
    Shape bshape = batch;
    Strides sa = broadcast_strides(ba, Strides(a.strides().begin(), a.strides().end() - 2), batch);
    Strides sb = broadcast_strides(bb, Strides(b.strides().begin(), b.strides().end() - 2), batch);
    const int64_t nb = numel_of(batch);
    T* o = out.data_ptr<T>();
    std::vector<int64_t> idx(batch.size(), 0);
    for (int64_t i = 0; i < nb; ++i) {
      int64_t oa = 0, ob = 0;
      for (size_t d = 0; d < batch.size(); ++d) {
        oa += idx[d] * sa[d];
        ob += idx[d] * sb[d];
      }
      cpu::gemm<T>(M, N, K, T(1), *as_matref<T>(a, oa), *as_matref<T>(b, ob), T(0), o + i * M * N, N);
      for (size_t d = batch.size(); d-- > 0;) {
        if (++idx[d] < batch[d]) break;
        idx[d] = 0;
      }
    }
  });
  return out;
}

}  // namespace detail

inline Tensor matmul(const Tensor& a, const Tensor& b) {
  NQ_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul", "both operands need at least 1 dim, got ",
           shape_str(a.shape()), " @ ", shape_str(b.shape()));
  // numpy's rules for vectors: promote, multiply, drop the added dim.
  if (a.dim() == 1 && b.dim() == 1) return matmul(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  Tensor out = detail::matmul_kernel(a, b);
  Tensor as = a.detach(), bs = b.detach();
  return record("matmul", out, {a, b}, [as, bs](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    Tensor ga, gb;
    if (n.needs(0)) ga = sum_to(detail::matmul_kernel(g, bs.t()), as.shape());
    if (n.needs(1)) {
      if (bs.dim() == 2 && as.dim() > 2)  // shared weight: one (K, B*M) @ (B*M, N) GEMM
        gb = detail::matmul_kernel(as.reshape({-1, as.size(-1)}).t(), g.reshape({-1, g.size(-1)}));
      else
        gb = sum_to(detail::matmul_kernel(as.t(), g), bs.shape());
    }
    return {ga, gb};
  });
}

inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  NQ_CHECK(w.dim() == 2 && x.size(-1) == w.size(1), "linear", "input ", shape_str(x.shape()),
           " does not match weight ", shape_str(w.shape()), " (out_features, in_features)");
  Tensor y = matmul(x, w.t());
  if (!b.defined()) return y;
  NQ_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear", "bias ", shape_str(b.shape()),
           " does not match weight ", shape_str(w.shape()));
  return add(y, b);
}

}  // namespace nq
