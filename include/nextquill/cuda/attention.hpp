#pragma once
// CUDA launchers for scaled_dot_product_attention (kernels/attention.cu): a
// fused, tiled (flash-attention style) forward that saves the per-row
// log-sum-exp, and a backward that recomputes the scores from it. No (T,S)
// matrix ever reaches global memory. Autograd is recorded by ops/attention.hpp.
#include <vector>

#include "../config.hpp"

#if NEXTQUILL_WITH_CUDA
#include "../core/tensor.hpp"

namespace nq::cuda {

// Largest head dim (D and Dv) the kernels take.
inline constexpr int kAttentionMaxHeadDim = 128;

// q (B,H,T,D), k (B,H,S,D), v (B,H,S,Dv), contiguous, same CUDA device and
// float dtype; key_padding_mask (B,S) int64/float32/float64 (nonzero = real
// key) on that device, or undefined. Returns {out (B,H,T,Dv) in q's dtype,
// lse (B,H,T) float32}; rows with no visible key get out 0 and lse -inf.
std::vector<Tensor> attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Tensor& key_padding_mask, double scale, bool causal);

// Gradients {dq, dk, dv} (undefined where need_* is false) for upstream
// gradient dout (B,H,T,Dv), given the forward's out and lse.
std::vector<Tensor> attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                       const Tensor& lse, const Tensor& dout, const Tensor& key_padding_mask,
                                       double scale, bool causal, bool need_q, bool need_k, bool need_v);

}  // namespace nq::cuda
#endif
