#pragma once
// Core CUDA launchers (kernels/copy.cu, elementwise.cu, reduce.cu): strided
// copy and fill, element-wise ops by op code (forward and the backward pieces),
// reductions, the dropout mask. Plain declarations: the ops headers dispatch
// here for CUDA tensors and record autograd themselves.
#include "../core/tensor.hpp"

namespace nq::cuda {

// Op codes (named in every build, so the ops headers need no #if for them).
// Unary forward y = f(x; s) and its backward dx = g * f'(x or y; s). `s` is the
// scalar of the *_scalar ops (ignored by the others).
enum class UnaryOp : int {
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Abs,
  Square,
  Tanh,
  Sigmoid,
  Relu,
  Gelu,
  GeluTanh,
  Silu,
  AddScalar,
  MulScalar,
  RsubScalar,
  RdivScalar,
  PowScalar
};
// Binary ops with numpy broadcasting, any strides; a and b of one dtype.
enum class BinaryOp : int {
  Add,
  Sub,
  Mul,
  Div,
  Pow,
  Maximum,
  Minimum,
  WhereGradA,  // (g, c): c != 0 ? g : 0
  WhereGradB,  // (g, c): c != 0 ? 0 : g
};
// Three-operand ops with broadcasting: where and the backward pieces.
enum class TernaryOp : int {
  Where,     // (c, a, b): c != 0 ? a : b
  DivGradB,  // (g, a, b): -g a / b^2
  PowGradA,  // (g, a, b): g b a^(b-1)
  PowGradB,  // (g, a, out): a == 0 ? 0 : g out log a
  MaxGradA,  // (g, a, b): a >= b ? g : 0
  MaxGradB,  // (g, a, b): a >= b ? 0 : g
  MinGradA,  // (g, a, b): a <= b ? g : 0
  MinGradB,  // (g, a, b): a <= b ? 0 : g
};
}  // namespace nq::cuda

#if NEXTQUILL_WITH_CUDA
namespace nq::cuda {

// ---- copy.cu -------------------------------------------------------------------
// dst[i] = convert(src[i]) for any strides/offsets; `src_strides` are src's
// strides broadcast to dst's shape (0 on broadcast dims). Both on the same CUDA
// device; dtypes float32, bfloat16, float64, int64 in any combination.
void copy_strided(const Tensor& dst, const Tensor& src, const Strides& src_strides);
// The same with dst[i] += convert(src[i]) (in float for bf16): Tensor::add_,
// which the autograd engine uses to accumulate a leaf's gradient in one launch.
void accumulate_strided(const Tensor& dst, const Tensor& src, const Strides& src_strides);
// Every element of dst (any strides) = v.
void fill(const Tensor& dst, double v);

// ---- elementwise.cu ------------------------------------------------------------
// True when the backward needs the forward output y (else it needs the input x).
bool unary_backward_uses_output(UnaryOp op);
Tensor unary(UnaryOp op, const Tensor& x, double s = 0.0);
// g: upstream gradient; saved: x or y (unary_backward_uses_output). Same shape.
Tensor unary_backward(UnaryOp op, const Tensor& g, const Tensor& saved, double s = 0.0);

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

Tensor ternary(TernaryOp op, const Tensor& a, const Tensor& b, const Tensor& c);

// Dropout mask of x's shape and dtype: 0 with probability p, else 1/(1-p).
// Element i's draw is a hash of (key, i): counter-based, order-free.
Tensor dropout_mask(const Shape& shape, TensorOptions opts, double p, uint64_t key);

// ---- reduce.cu -------------------------------------------------------------------
// x contiguous, viewed as (rows, cols): out[r] = sum_c x[r, cols]. `out_shape`
// has rows elements. Accumulates in fp32 (fp64 for float64).
Tensor sum_rows(const Tensor& x, int64_t rows, int64_t cols, const Shape& out_shape);
// x contiguous, viewed as (rows, cols): out[c] = sum_r x[r, c].
Tensor sum_cols(const Tensor& x, int64_t rows, int64_t cols, const Shape& out_shape);
// x contiguous (rows, n): values and int64 indices of each row's max (first on
// ties; NaN wins), shaped `out_shape` (rows elements).
std::pair<Tensor, Tensor> max_rows(const Tensor& x, int64_t rows, int64_t n, const Shape& out_shape);
// (rows, n) zeros with out[r, idx[r]] = g[r]: max's backward. g, idx contiguous.
Tensor scatter_rows(const Tensor& g, const Tensor& idx, int64_t rows, int64_t n);

}  // namespace nq::cuda
#endif
