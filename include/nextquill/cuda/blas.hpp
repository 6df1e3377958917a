#pragma once
// cuBLAS / cuBLASLt launchers (kernels/gemm.cu). Row-major semantics mapped
// onto column-major cuBLAS as C^T = B^T A^T. No autograd (ops/matmul.hpp
// records it). Everything runs on nq::cuda::stream(device) and never
// synchronises.
//
// Operand layouts: the last two dims of a GEMM operand may be row-major
// (unit column stride, row stride >= columns) or a transposed view (unit row
// stride, column stride >= rows); the launcher passes a transposed view to
// cuBLAS as an op flag, never copying it. Anything else throws (the ops layer
// calls .contiguous() first). Batch (dim 0 of 3-d operands) may have any
// stride, 0 included (a broadcast operand).
//
// Handles: one cuBLAS handle and one cuBLASLt handle (+ a 32 MiB workspace)
// per device, created on first use under a mutex, bound to stream(device),
// kept until process exit.
#include "../config.hpp"
#include "../core/autocast.hpp"
#include "../core/tensor.hpp"

#if NEXTQUILL_WITH_CUDA
namespace nq::cuda {

// out = a @ b. a: (M,K) or (B,M,K); b: (K,N) or (B,K,N), same rank, same
// batch B. Returns a new contiguous (M,N) / (B,M,N) tensor of dtype
// `out_dtype` (undefined DType not allowed: pass a.dtype() for the usual).
// dtypes: float32 (FP32 or TF32 math per `prec`), bfloat16 (fp32 accumulate;
// out bfloat16 or float32), float64. a and b must share dtype and device.
Tensor gemm(const Tensor& a, const Tensor& b, MatmulPrecision prec, DType out_dtype);

// y = x @ w^T (+ bias) through cuBLASLt with CUBLASLT_EPILOGUE_BIAS.
// x: (R,K), w: (N,K) (each row-major or a transposed view), bias: (N)
// contiguous or undefined; all one dtype. Returns (R,N) contiguous. Falls back
// to gemm + a bias kernel when cuBLASLt offers no algorithm for the layout.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, MatmulPrecision prec);

// y = gelu_tanh(x @ w^T + bias) in one cuBLASLt call (CUBLASLT_EPILOGUE_GELU_BIAS:
// GELU with the tanh approximation, GPT-2's "gelu_new"). Forward only: it
// keeps no pre-activation, so a training model must recompute it (or use
// linear + gelu) for the backward pass. Same operand rules as linear; bias
// required. Fallback: gemm + a bias+GELU kernel.
Tensor linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, MatmulPrecision prec);

// Column sums of a contiguous (R,N) matrix: (N), fp32 accumulation in a fixed
// order (deterministic), returned as `out_dtype`. The bias gradient of linear.
Tensor sum_rows(const Tensor& g, DType out_dtype);

// The per-device handles (cublasHandle_t / cublasLtHandle_t as void*), for
// code that wants to call cuBLAS directly on stream(device).
void* cublas_handle(int device);
void* cublaslt_handle(int device);

}  // namespace nq::cuda
#endif
