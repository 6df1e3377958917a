#pragma once
// Shared by every kernels/*.cu: error checks that become nq::Error naming the
// op, the stream, element-type helpers (bf16 stored, fp32 math), launch sizes.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <nextquill/core/tensor.hpp>
#include <nextquill/cuda/runtime.hpp>

namespace nq::cuda::detail {

// Throws nq::Error("nq::<op>: CUDA error <name>: <text> (<where>)").
[[noreturn]] inline void throw_cuda(cudaError_t e, const char* op, const char* where) {
  fail(op, "CUDA error ", cudaGetErrorName(e), ": ", cudaGetErrorString(e), " (", where, ")");
}
inline void check(cudaError_t e, const char* op, const char* where) {
  if (e != cudaSuccess) throw_cuda(e, op, where);
}
// After a <<<...>>> launch: catches bad configurations at once. Faults inside
// the kernel surface at the next synchronising call (copy_d2h, synchronize).
inline void check_launch(const char* op) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda(e, op, "kernel launch");
}

#define NQ_CUDA_CHECK(call, op) ::nq::cuda::detail::check((call), (op), #call)

inline cudaStream_t stream_of(const Tensor& t) {
  return static_cast<cudaStream_t>(::nq::cuda::stream(t.device().index));
}
inline cudaStream_t stream_of(int device) { return static_cast<cudaStream_t>(::nq::cuda::stream(device)); }

// Storage types: float, double, __nv_bfloat16, int64_t. Math in float (double for double).
template <typename T>
struct acc_type {
  using type = float;
};
template <>
struct acc_type<double> {
  using type = double;
};
template <typename T>
using acc_t = typename acc_type<T>::type;

template <typename T>
__device__ __forceinline__ acc_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(*p);
  else
    return static_cast<acc_t<T>>(*p);
}
template <typename T, typename A>
__device__ __forceinline__ void store(T* p, A v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *p = __float2bfloat16(static_cast<float>(v));
  else
    *p = static_cast<T>(v);
}

// Grid for a grid-stride loop over n elements.
inline unsigned blocks_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return static_cast<unsigned>(b);
}

// Calls f(tag) for the float storage types a CUDA kernel supports:
// float32, bfloat16, float64 (float64 for checks; not fast on GPUs).
template <typename T>
struct tag {
  using type = T;
};
template <typename F>
decltype(auto) visit_float(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::Float32:
      return f(tag<float>{});
    case DType::BFloat16:
      return f(tag<__nv_bfloat16>{});
    case DType::Float64:
      return f(tag<double>{});
    default:
      break;
  }
  fail(op, "dtype ", dtype_name(d), " is not supported on CUDA (float32, bfloat16, float64)");
}

inline void check_cuda_tensor(const Tensor& t, const char* op, const char* name) {
  NQ_CHECK(t.device().is_cuda(), op, name, " is on ", t.device().str(), ", expected a CUDA tensor");
  NQ_CHECK(t.is_contiguous(), op, name, " ", t.brief(), " must be contiguous (call .contiguous() first)");
}

// Typed data pointers of a (possibly undefined) tensor: nullptr when undefined.
template <typename T>
const T* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data_ptr()) : nullptr;
}
template <typename T>
T* mptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data_ptr()) : nullptr;
}

// Math in the accumulator type A (float, or double for float64 tensors).
template <typename A>
__device__ __forceinline__ A dev_exp(A v) {
  if constexpr (std::is_same_v<A, double>)
    return ::exp(v);
  else
    return ::expf(v);
}
template <typename A>
__device__ __forceinline__ A dev_log(A v) {
  if constexpr (std::is_same_v<A, double>)
    return ::log(v);
  else
    return ::logf(v);
}
template <typename A>
__device__ __forceinline__ A dev_sqrt(A v) {
  if constexpr (std::is_same_v<A, double>)
    return ::sqrt(v);
  else
    return ::sqrtf(v);
}
template <typename A>
__device__ __forceinline__ A pos_inf() {
  return static_cast<A>(INFINITY);
}
template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -static_cast<A>(INFINITY);
}

// Sum over the block in a fixed order (deterministic); the result is valid in
// thread 0. blockDim.x must be a multiple of 32; every thread must call it.
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double sh[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nwarps ? sh[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  __syncthreads();
  return v;
}

}  // namespace nq::cuda::detail
