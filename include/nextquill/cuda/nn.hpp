#pragma once
// CUDA launchers of the "nn" ops: softmax / log_softmax / logsumexp over the
// last dim, layer_norm / rms_norm, embedding gather / scatter-add, RoPE.
// Defined in kernels/{softmax,norm,embedding,rope}.cu. They take contiguous
// CUDA tensors (RoPE's x and g may be strided), allocate outputs on the input's
// device, run on its stream, never synchronise (except embedding's id check,
// see below) and record no autograd: ops/*.hpp do that.
#include "../config.hpp"

#if NEXTQUILL_WITH_CUDA
#include <cstdint>
#include <utility>

#include "../core/tensor.hpp"

namespace nq::cuda {

// ---- softmax.cu: rows are the last dim of a contiguous x (..., n) ----------
// y = softmax(x) or log_softmax(x) per row; all -inf rows give 0 / -inf.
Tensor softmax_forward(const Tensor& x, bool log);
// dx from the saved output y and upstream g (same shape, contiguous).
Tensor softmax_backward(const Tensor& y, const Tensor& g, bool log);
// (..., n) -> (..., 1); -inf for an all -inf row.
Tensor logsumexp_forward(const Tensor& x);
// dx = g * exp(x - lse), 0 where lse = -inf; lse and g are (..., 1).
Tensor logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& g);

// ---- norm.cu: x (R, C) rows, weight/bias (C) or undefined --------------------
// weight/bias may be float32 while x is bfloat16 (mixed precision). y has x's
// dtype; mean/rstd (R) are float32 (float64 for a float64 x). center = layer
// norm (mean subtracted); rms_norm writes mean = 0.
struct NormOut {
  Tensor y, mean, rstd;
};
NormOut norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool center);
struct NormGrads {
  Tensor dx, dweight, dbias;  // undefined where not asked for
};
// dweight/dbias come out in param_dtype (that of weight/bias in the forward).
NormGrads norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                        const Tensor& g, bool need_dx, bool need_dweight, bool need_dbias, bool center,
                        DType param_dtype);

// ---- embedding.cu ---------------------------------------------------------------
// weight (V, C), ids int64 (...) on the same device -> (..., C). Ids are checked
// on the device: the kernel never reads out of bounds, records the first bad
// position, and the launcher reads that flag back (one 8-byte copy, which
// waits for the stream) and throws naming the id and its position.
Tensor embedding_forward(const Tensor& weight, const Tensor& ids);
// g (..., C) contiguous, ids (...) already validated -> gradient (V, C) in
// `dtype`, summed with fp32 (fp64 for float64) atomics, then cast.
Tensor embedding_backward(const Tensor& g, const Tensor& ids, int64_t V, DType dtype);

// ---- rope.cu ----------------------------------------------------------------------
// cos, sin (B, T, head_dim/2) in dtype for int64 positions (B, T) on the device,
// bit-for-bit the CPU rope_tables recipe (fp32 inverse frequencies and angle).
std::pair<Tensor, Tensor> rope_tables(const Tensor& positions, int64_t head_dim, double theta, DType dtype);
// x (B,H,T,D), any strides; cos/sin contiguous (B,T,D/2) or (T,D/2) (shared by
// the batch), float32 or x's dtype -> contiguous (B,H,T,D). inverse = true
// rotates by the opposite angle (the backward).
Tensor rope_apply(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse);

}  // namespace nq::cuda
#endif
