#pragma once
// Mixed precision switches for matrix products.
//
// Autocast (per thread, RAII):
//   { nq::AutocastGuard g(nq::kBFloat16);  // CUDA matmul/linear run in bf16
//     y = model.forward(x); }               // previous setting restored here
// Under bf16 autocast, nq::matmul and nq::linear on CUDA cast float32 operands
// to bfloat16, multiply with fp32 accumulation and return bfloat16; the
// gradient of an fp32 operand (a master weight) comes back as fp32. matmul
// casts with the differentiable Tensor::to(kBFloat16) (graph nodes); linear
// casts inside its own node and has cuBLAS write the fp32 gradients directly.
// Operands that are already bf16 always run the bf16 GEMM (fp32 accumulate),
// autocast or not.
// On the CPU autocast is a no-op (the CPU backend has no bf16 kernels): CPU
// ops see their operands unchanged. AutocastGuard(kFloat32) turns autocast off
// inside a region (e.g. for fp32 loss math).
//
// Matmul precision (process-wide, CUDA only):
//   nq::cuda::set_matmul_precision(nq::MatmulPrecision::TF32);
// FP32 (the default: "a switch to stay in fp32") runs float32 GEMMs in full
// fp32; TF32 lets cuBLAS use TF32 tensor cores for float32 GEMMs (10-bit
// mantissa products, fp32 accumulate; ~1e-3 relative error). It does not
// affect bf16 or float64 GEMMs, nor the CPU.
#include <atomic>

#include "dtype.hpp"
#include "error.hpp"

namespace nq {

namespace detail {
inline DType& autocast_slot() {
  static thread_local DType d = DType::Float32;
  return d;
}
}  // namespace detail

// The dtype CUDA matmul/linear cast float32 operands to: kFloat32 when
// autocast is off (no cast), kBFloat16 inside an AutocastGuard(kBFloat16).
inline DType autocast_dtype() { return detail::autocast_slot(); }
inline bool autocast_enabled() { return autocast_dtype() != DType::Float32; }

class AutocastGuard {
 public:
  explicit AutocastGuard(DType d) : prev_(detail::autocast_slot()) {
    NQ_CHECK(d == DType::Float32 || d == DType::BFloat16, "AutocastGuard",
             "autocast dtype must be bfloat16 (on) or float32 (off), got ", dtype_name(d));
    detail::autocast_slot() = d;
  }
  ~AutocastGuard() { detail::autocast_slot() = prev_; }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_;
};

enum class MatmulPrecision : int { FP32 = 0, TF32 = 1 };

namespace cuda {
using nq::MatmulPrecision;
namespace detail {
inline std::atomic<int>& matmul_precision_slot() {
  static std::atomic<int> p{static_cast<int>(MatmulPrecision::FP32)};
  return p;
}
}  // namespace detail
// Process-wide; takes effect for GEMMs launched afterwards.
inline void set_matmul_precision(MatmulPrecision p) {
  detail::matmul_precision_slot().store(static_cast<int>(p), std::memory_order_relaxed);
}
inline MatmulPrecision matmul_precision() {
  return static_cast<MatmulPrecision>(detail::matmul_precision_slot().load(std::memory_order_relaxed));
}
}  // namespace cuda

}  // namespace nq
