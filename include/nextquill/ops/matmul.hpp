#pragma once
// matmul: batched, broadcasting, transposes passed to BLAS as flags.
// On CUDA (see docs/cuda.md and core/autocast.hpp): cuBLAS GEMM / strided-
// batched GEMM; linear goes through cuBLASLt with the bias epilogue. dtypes:
// float32 (FP32, or TF32 per cuda::set_matmul_precision), bfloat16 (fp32
// accumulate), float64. Under AutocastGuard(kBFloat16) float32 operands are
// cast to bf16 (differentiably) and the result is bf16. Mixed bf16/float32
// operands outside autocast are promoted to float32 (the bf16 one is cast up,
// differentiably); other dtype mixes are an error, as on the CPU.
#include "../core/autocast.hpp"
#include "../cpu/gemm.hpp"
#include "reduce.hpp"
#if NEXTQUILL_WITH_CUDA
#include "../cuda/blas.hpp"
#endif

namespace nq {

namespace detail {

#if NEXTQUILL_WITH_CUDA
// Whether cuBLAS can read the last two dims of t as they are (row-major or a
// transposed view, the same rule as as_matref); otherwise copy first.
inline bool cuda_gemm_layout_ok(const Tensor& t) {
  const int64_t r = t.size(-2), c = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
  return ((sc == 1 || c == 1) && (r == 1 || sr >= c)) || ((sr == 1 || r == 1) && (c == 1 || sc >= r));
}

inline bool is_f32_or_bf16(DType d) { return d == DType::Float32 || d == DType::BFloat16; }

inline void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  NQ_CHECK(a.device() == b.device(), op, "operands are on different devices: ", a.brief(), " on ",
           a.device().str(), " and ", b.brief(), " on ", b.device().str());
}

// The dtype a CUDA matmul/linear runs in for operands of dtypes ds: bf16
// under autocast when every operand is float32/bf16; float32 when bf16 and
// float32 mix outside autocast (promotion); else the common dtype (a mismatch
// is left for the kernel's error).
inline DType cuda_matmul_dtype(std::initializer_list<DType> ds) {
  bool all_low = true, any_bf16 = false, any_f32 = false;
  for (DType d : ds) {
    any_bf16 = any_bf16 || d == DType::BFloat16;
    any_f32 = any_f32 || d == DType::Float32;
    all_low = all_low && (d == DType::BFloat16 || d == DType::Float32);
  }
  if (all_low && autocast_dtype() == DType::BFloat16) return DType::BFloat16;
  if (all_low && any_bf16 && any_f32) return DType::Float32;
  return *ds.begin();
}

// Forward kernel on CUDA for a, b of rank >= 2 (batch dims broadcast). No
// autograd: the temporaries (casts, copies, views) are not recorded.
inline Tensor cuda_matmul_kernel(Tensor a, Tensor b) {
  NoGradGuard no_grad;
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  NQ_CHECK(b.size(-2) == K, "matmul", "inner dimensions differ: ", shape_str(a.shape()), " @ ",
           shape_str(b.shape()));
  check_same_device(a, b, "matmul");
  if (a.dtype() != b.dtype()) {  // e.g. an fp32 gradient meeting a bf16 operand: promote
    NQ_CHECK(is_f32_or_bf16(a.dtype()) && is_f32_or_bf16(b.dtype()), "matmul", "dtype mismatch: ", a.brief(),
             " @ ", b.brief());
    const DType d = cuda_matmul_dtype({a.dtype(), b.dtype()});
    a = a.to(d);
    b = b.to(d);
  }
  NQ_CHECK(a.dtype() == b.dtype(), "matmul", "dtype mismatch: ", a.brief(), " @ ", b.brief());
  const MatmulPrecision prec = cuda::matmul_precision();
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  if (!cuda_gemm_layout_ok(b)) b = b.contiguous();
  // (..., M, K) @ (K, N) with a foldable batch: one GEMM of (batch*M, K).
  if (b.dim() == 2 && a.dim() > 2) {
    if (auto st = view_strides(a.shape(), a.strides(), {numel_of(ba) * M, K})) {
      Tensor a2 = Tensor::make_view(a, {numel_of(ba) * M, K}, *st, a.offset());
      if (cuda_gemm_layout_ok(a2)) return cuda::gemm(a2, b, prec, a.dtype()).view(out_shape);
    }
  }
  if (!cuda_gemm_layout_ok(a)) a = a.contiguous();
  if (batch.empty()) return cuda::gemm(a, b, prec, a.dtype());  // both 2-d
  // Batched: each operand as (nb, r, c) with one batch stride (0 where it is
  // broadcast); when its batch dims cannot be merged into one stride,
  // materialise the broadcast copy.
  const int64_t nb = numel_of(batch);
  auto flat = [&](const Tensor& t, int64_t r, int64_t c) {
    Shape full = batch;
    full.push_back(r);
    full.push_back(c);
    Strides st = broadcast_strides(t.shape(), t.strides(), full);
    if (auto fs = view_strides(full, st, {nb, r, c}))
      return Tensor::make_view(t, {nb, r, c}, *fs, t.offset());
    return Tensor::make_view(t, full, st, t.offset()).contiguous().view({nb, r, c});
  };
  return cuda::gemm(flat(a, M, K), flat(b, K, N), prec, a.dtype()).view(out_shape);
}
#endif

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
#if NEXTQUILL_WITH_CUDA
  if (a.device().is_cuda() || b.device().is_cuda()) return cuda_matmul_kernel(a, b);
#endif
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
#if NEXTQUILL_WITH_CUDA
  if (a.device().is_cuda() || b.device().is_cuda()) {
    detail::check_same_device(a, b, "matmul");
    // Autocast / promotion: cast through the differentiable to(), then run
    // the matmul on the cast operands (their gradients flow back through the
    // casts in the operands' own dtypes).
    const DType d = detail::cuda_matmul_dtype({a.dtype(), b.dtype()});
    if (a.dtype() != d || b.dtype() != d) {
      NQ_CHECK(detail::is_f32_or_bf16(a.dtype()) && detail::is_f32_or_bf16(b.dtype()), "matmul",
               "dtype mismatch: ", a.brief(), " @ ", b.brief());
      return matmul(a.to(d), b.to(d));
    }
  }
#endif
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

#if NEXTQUILL_WITH_CUDA
namespace detail {
// linear on CUDA: one cuBLASLt call with the bias epilogue, recorded as one
// "linear" node. x (...,K), w (N,K), b (N) or undefined; all on one device.
// Operands of another dtype than the one the product runs in (autocast: fp32
// master weights and activations into a bf16 GEMM) are cast here, outside the
// graph, and the backward returns each gradient in its input's dtype straight
// from cuBLAS (bf16 operands, fp32 output and accumulation): no cast nodes,
// no cast kernels and no bf16 rounding of an fp32 weight's gradient.
inline Tensor cuda_linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
  check_same_device(x_in, w_in, "linear");
  if (b_in.defined()) check_same_device(x_in, b_in, "linear");
  const DType d = b_in.defined() ? cuda_matmul_dtype({x_in.dtype(), w_in.dtype(), b_in.dtype()})
                                 : cuda_matmul_dtype({x_in.dtype(), w_in.dtype()});
  if (x_in.dtype() != d || w_in.dtype() != d || (b_in.defined() && b_in.dtype() != d))
    NQ_CHECK(is_f32_or_bf16(x_in.dtype()) && is_f32_or_bf16(w_in.dtype()) &&
                 (!b_in.defined() || is_f32_or_bf16(b_in.dtype())),
             "linear", "dtype mismatch: input ", x_in.brief(), ", weight ", w_in.brief(),
             b_in.defined() ? ", bias " + b_in.brief() : std::string());
  // A gradient's dtype: its input's when cuBLAS can write that directly (fp32
  // from a bf16 product), else the product's (the engine casts the rest).
  auto grad_dtype = [d](DType input) { return d == DType::BFloat16 && input == DType::Float32 ? input : d; };
  const DType gx_dt = grad_dtype(x_in.dtype()), gw_dt = grad_dtype(w_in.dtype()),
              gb_dt = b_in.defined() ? grad_dtype(b_in.dtype()) : d;
  const int64_t K = w_in.size(1), N = w_in.size(0);
  const int64_t R = x_in.numel() / (K > 0 ? K : 1);
  Shape out_shape = x_in.shape();
  out_shape.back() = N;
  Tensor x2, w2, b2;
  Tensor y;
  {
    NoGradGuard no_grad;
    x2 = x_in.detach().reshape({R, K}).to(d);  // (R,K): a view unless x's strides or dtype forbid it
    w2 = w_in.detach().to(d);
    if (b_in.defined()) b2 = b_in.detach().to(d).contiguous();
    if (!cuda_gemm_layout_ok(x2)) x2 = x2.contiguous();
    if (!cuda_gemm_layout_ok(w2)) w2 = w2.contiguous();
    y = cuda::linear(x2, w2, b2, cuda::matmul_precision()).view(out_shape);  // (...,N)
  }
  const bool has_bias = b_in.defined();
  const Shape x_shape = x_in.shape();
  return record("linear", y, {x_in, w_in, b_in},
                [x2, w2, has_bias, x_shape, R, N, gx_dt, gw_dt, gb_dt](const Tensor& g,
                                                                       const Node& n) -> std::vector<Tensor> {
                  Tensor g2 = g.reshape({R, N});  // (R,N)
                  if (g2.dtype() != w2.dtype())
                    g2 = g2.to(w2.dtype());  // a root's upstream gradient may differ
                  if (!cuda_gemm_layout_ok(g2)) g2 = g2.contiguous();
                  const MatmulPrecision prec = cuda::matmul_precision();
                  Tensor gx, gw, gb;
                  if (n.needs(0)) gx = cuda::gemm(g2, w2, prec, gx_dt).view(x_shape);       // (R,N)@(N,K)
                  if (n.needs(1)) gw = cuda::gemm(g2.t(), x2, prec, gw_dt);                 // (N,R)@(R,K)
                  if (has_bias && n.needs(2)) gb = cuda::sum_rows(g2.contiguous(), gb_dt);  // (N)
                  return {gx, gw, gb};
                });
}
}  // namespace detail
#endif

inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  NQ_CHECK(w.dim() == 2 && x.size(-1) == w.size(1), "linear", "input ", shape_str(x.shape()),
           " does not match weight ", shape_str(w.shape()), " (out_features, in_features)");
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda() || w.device().is_cuda() || (b.defined() && b.device().is_cuda())) {
    NQ_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "linear", "bias ",
             shape_str(b.shape()), " does not match weight ", shape_str(w.shape()));
    return detail::cuda_linear(x, w, b);
  }
#endif
  Tensor y = matmul(x, w.t());
  if (!b.defined()) return y;
  NQ_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear", "bias ", shape_str(b.shape()),
           " does not match weight ", shape_str(w.shape()));
  return add(y, b);
}

}  // namespace nq
