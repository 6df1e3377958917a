// embedding: row gather from weight (V, C) at int64 ids (N), and the backward
// scatter-add of gradient rows into a zero (V, C).
//
// Out-of-range ids: the ids live on the device, so they are checked there. The
// gather kernel never reads out of bounds (a bad id's row is written as 0) and
// records the smallest bad position with atomicMin; the launcher then reads
// that one 8-byte flag back (this waits for the stream: the one synchronising
// point of the op) and throws nq::Error naming the id, its position and V,
// like the CPU path.
//
// Backward: fp32 atomicAdd (fp64 for float64) into a zeroed accumulator, so
// repeated ids sum correctly; a bf16 weight gets its gradient cast from that
// fp32 accumulator afterwards (no bf16 atomics). Atomic order is not fixed, so
// repeated ids may differ from the CPU in the last bits.
#include <climits>
#include <nextquill/cuda/nn.hpp>
#include <string>

#include "common.cuh"

namespace nq::cuda {

namespace {

using detail::acc_t;
using detail::load;
using detail::store;

template <typename T>
__global__ void embedding_fwd_kernel(const T* __restrict__ w, const int64_t* __restrict__ ids,
                                     T* __restrict__ out, int64_t N, int64_t V, int64_t C,
                                     unsigned long long* __restrict__ bad) {
  const int64_t total = N * C;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k / C, c = k - i * C;
    const int64_t id = ids[i];
    if (id < 0 || id >= V) {
      atomicMin(bad, static_cast<unsigned long long>(i));
      store(out + k, acc_t<T>(0));
    } else {
      out[k] = w[id * C + c];
    }
  }
}

// acc[id[i], c] += g[i, c]; out-of-range ids (impossible after the forward
// check) are skipped rather than written out of bounds.
template <typename T>
__global__ void embedding_bwd_kernel(const T* __restrict__ g, const int64_t* __restrict__ ids,
                                     acc_t<T>* __restrict__ acc, int64_t N, int64_t V, int64_t C) {
  const int64_t total = N * C;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k / C, c = k - i * C;
    const int64_t id = ids[i];
    if (id >= 0 && id < V) atomicAdd(acc + id * C + c, load(g + k));
  }
}

template <typename A, typename T>
__global__ void cast_kernel(const A* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store(dst + k, src[k]);
}

// "[i,j,...]": the multi-index of flat position `flat` in `shape`.
std::string index_str(int64_t flat, const Shape& shape) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return shape_str(idx);
}

}  // namespace

Tensor embedding_forward(const Tensor& weight, const Tensor& ids) {
  const char* op = "embedding";
  detail::check_cuda_tensor(weight, op, "weight");
  detail::check_cuda_tensor(ids, op, "ids");
  NQ_CHECK(weight.dim() == 2, op, "weight must be (V, C), got ", shape_str(weight.shape()));
  NQ_CHECK(ids.dtype() == DType::Int64, op, "ids must be int64, got ", dtype_name(ids.dtype()));
  NQ_CHECK(weight.device() == ids.device(), op, "weight is on ", weight.device().str(), " but ids are on ",
           ids.device().str());
  const int64_t V = weight.size(0), C = weight.size(1), N = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, weight.options());
  if (N == 0) return out;
  const int dev = weight.device().index;
  auto st = detail::stream_of(weight);
  Tensor flag = Tensor::empty({1}, TensorOptions(DType::Int64).with_device(weight.device()));
  auto* bad = static_cast<unsigned long long*>(flag.raw_data_ptr());
  NQ_CUDA_CHECK(cudaMemsetAsync(bad, 0xFF, sizeof(unsigned long long), st), op);  // ULLONG_MAX: no bad id
  const int64_t* idp = static_cast<const int64_t*>(ids.raw_data_ptr());
  if (C > 0) {
    detail::visit_float(weight.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      embedding_fwd_kernel<T>
          <<<detail::blocks_for(N * C), 256, 0, st>>>(static_cast<const T*>(weight.raw_data_ptr()), idp,
                                                      static_cast<T*>(out.raw_data_ptr()), N, V, C, bad);
      detail::check_launch(op);
    });
  } else {
    // No columns to gather: check the ids alone with the same kernel shape (C = 1 into a scratch row).
    Tensor scratch = Tensor::empty({N, 1}, weight.options());
    Tensor w1 = Tensor::empty({std::max<int64_t>(V, 1), 1}, weight.options());
    detail::visit_float(weight.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      NQ_CUDA_CHECK(cudaMemsetAsync(w1.raw_data_ptr(), 0, w1.numel() * sizeof(T), st), op);
      embedding_fwd_kernel<T>
          <<<detail::blocks_for(N), 256, 0, st>>>(static_cast<const T*>(w1.raw_data_ptr()), idp,
                                                  static_cast<T*>(scratch.raw_data_ptr()), N, V, 1, bad);
      detail::check_launch(op);
    });
  }
  unsigned long long first_bad = 0;
  copy_d2h(&first_bad, bad, sizeof(first_bad), dev);  // waits for the kernel
  if (first_bad != ULLONG_MAX) {
    const int64_t pos = static_cast<int64_t>(first_bad);
    int64_t id = 0;
    copy_d2h(&id, idp + pos, sizeof(id), dev);
    fail(op, "id ", id, " at position ", index_str(pos, ids.shape()), " of ids ", shape_str(ids.shape()),
         " is out of range [0, ", V, ")");
  }
  return out;
}

Tensor embedding_backward(const Tensor& g, const Tensor& ids, int64_t V, DType dtype) {
  const char* op = "embedding backward";
  detail::check_cuda_tensor(g, op, "grad");
  detail::check_cuda_tensor(ids, op, "ids");
  NQ_CHECK(ids.dtype() == DType::Int64, op, "ids must be int64, got ", dtype_name(ids.dtype()));
  NQ_CHECK(g.device() == ids.device(), op, "grad is on ", g.device().str(), " but ids are on ",
           ids.device().str());
  const int64_t N = ids.numel();
  NQ_CHECK(g.dim() >= 1 && g.numel() == N * g.size(-1), op, "grad ", g.brief(), " does not match ids ",
           ids.brief());
  const int64_t C = g.size(-1);
  NQ_CHECK(g.dtype() == dtype, op, "grad dtype ", dtype_name(g.dtype()), " differs from weight dtype ",
           dtype_name(dtype));
  auto st = detail::stream_of(g);
  Tensor result;
  detail::visit_float(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr DType acc_dtype = std::is_same_v<A, double> ? DType::Float64 : DType::Float32;
    Tensor acc = Tensor::empty({V, C}, TensorOptions(acc_dtype).with_device(g.device()));
    if (acc.numel() > 0)
      NQ_CUDA_CHECK(cudaMemsetAsync(acc.raw_data_ptr(), 0, acc.numel() * sizeof(A), st), op);
    if (N * C > 0) {
      embedding_bwd_kernel<T><<<detail::blocks_for(N * C), 256, 0, st>>>(
          static_cast<const T*>(g.raw_data_ptr()), static_cast<const int64_t*>(ids.raw_data_ptr()),
          static_cast<A*>(acc.raw_data_ptr()), N, V, C);
      detail::check_launch(op);
    }
    if (acc_dtype == dtype) {
      result = acc;
      return;
    }
    result = Tensor::empty({V, C}, TensorOptions(dtype).with_device(g.device()));
    if (acc.numel() > 0) {
      cast_kernel<A, T><<<detail::blocks_for(acc.numel()), 256, 0, st>>>(
          static_cast<const A*>(acc.raw_data_ptr()), static_cast<T*>(result.raw_data_ptr()), acc.numel());
      detail::check_launch(op);
    }
  });
  return result;
}

}  // namespace nq::cuda
