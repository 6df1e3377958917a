// Strided copy with broadcasting and dtype conversion, its accumulating twin
// (dst += src), and fill (include/nextquill/cuda/core.hpp). Tensor::copy_,
// add_ and fill_ dispatch here.
#include <nextquill/cuda/core.hpp>

#include "strided.cuh"

namespace nq::cuda {

namespace detail {

// Every dtype a CUDA tensor stores.
template <typename F>
decltype(auto) visit_all(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::Float32:
      return f(tag<float>{});
    case DType::BFloat16:
      return f(tag<__nv_bfloat16>{});
    case DType::Float64:
      return f(tag<double>{});
    case DType::Int64:
      return f(tag<int64_t>{});
    default:
      break;
  }
  fail(op, "dtype ", dtype_name(d), " is not supported on CUDA (float32, bfloat16, float64, int64)");
}

template <typename D, typename S>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<D, S>)
    return v;
  else if constexpr (std::is_same_v<S, __nv_bfloat16>)
    return convert<D>(__bfloat162float(v));
  else if constexpr (std::is_same_v<D, __nv_bfloat16>)
    return __float2bfloat16(static_cast<float>(v));
  else
    return static_cast<D>(v);
}

// dst = src, or dst += src when Acc (the sum in float for bf16, so a bf16
// .grad loses no more than one rounding per accumulation).
template <bool Acc, typename D, typename S>
__device__ __forceinline__ void store(D& d, S v) {
  if constexpr (!Acc) {
    d = convert<D>(v);
  } else if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    d = __float2bfloat16(__bfloat162float(d) + convert<float>(v));
  } else {
    d = d + convert<D>(v);
  }
}

template <bool Acc, typename D, typename S>
__global__ void copy_flat_kernel(D* __restrict__ dst, const S* __restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store<Acc>(dst[i], src[i]);
}

template <bool Acc, typename D, typename S>
__global__ void copy_strided_kernel(D* dst, const S* src, int64_t n, Geom<2> g) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    g.offsets(i, off);
    store<Acc>(dst[off[0]], src[off[1]]);
  }
}

template <typename D>
__global__ void fill_kernel(D* dst, int64_t n, Geom<1> g, double v) {
  const D val = convert<D>(v);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    g.offsets(i, off);
    dst[off[0]] = val;
  }
}

}  // namespace detail

namespace {

// One launch for dst (=|+=) convert(src) over dst's shape; src_strides are
// src's strides broadcast to it. Same-dtype contiguous copies are a memcpy.
template <bool Acc>
void copy_or_accumulate(const Tensor& dst, const Tensor& src, const Strides& src_strides, const char* op) {
  NQ_CHECK(dst.device().is_cuda() && src.device() == dst.device(), op, "between ", src.device().str(),
           " and ", dst.device().str(), " must go through Tensor::", op);
  NQ_CHECK(src_strides.size() == dst.shape().size(), op, "source strides do not match destination ",
           dst.brief());
  const int64_t n = dst.numel();
  if (n == 0) return;
  auto g = detail::make_geom<2>(dst.shape(), {dst.strides(), src_strides}, op);
  const bool flat = g.nd == 0 || (g.nd == 1 && g.stride[0][0] == 1 && g.stride[1][0] == 1);
  cudaStream_t st = detail::stream_of(dst);
  if (!Acc && flat && dst.dtype() == src.dtype()) {
    NQ_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data_ptr(), src.raw_data_ptr(), n * element_size(dst.dtype()),
                                  cudaMemcpyDeviceToDevice, st),
                  op);
    return;
  }
  detail::visit_all(dst.dtype(), op, [&](auto dt) {
    using D = typename decltype(dt)::type;
    detail::visit_all(src.dtype(), op, [&](auto stag) {
      using S = typename decltype(stag)::type;
      D* d = static_cast<D*>(dst.raw_data_ptr());
      const S* s = static_cast<const S*>(src.raw_data_ptr());
      if (flat)
        detail::copy_flat_kernel<Acc, D, S><<<detail::blocks_for(n), 256, 0, st>>>(d, s, n);
      else
        detail::copy_strided_kernel<Acc, D, S><<<detail::blocks_for(n), 256, 0, st>>>(d, s, n, g);
      detail::check_launch(op);
    });
  });
}

}  // namespace

void copy_strided(const Tensor& dst, const Tensor& src, const Strides& src_strides) {
  copy_or_accumulate<false>(dst, src, src_strides, "copy_");
}

void accumulate_strided(const Tensor& dst, const Tensor& src, const Strides& src_strides) {
  copy_or_accumulate<true>(dst, src, src_strides, "add_");
}

void fill(const Tensor& dst, double v) {
  const char* op = "fill_";
  NQ_CHECK(dst.device().is_cuda(), op, "expected a CUDA tensor, got one on ", dst.device().str());
  const int64_t n = dst.numel();
  if (n == 0) return;
  cudaStream_t st = detail::stream_of(dst);
  if (v == 0.0 && dst.is_contiguous()) {  // all-zero bits for every dtype we store
    NQ_CUDA_CHECK(cudaMemsetAsync(dst.raw_data_ptr(), 0, n * element_size(dst.dtype()), st), op);
    return;
  }
  auto g = detail::make_geom<1>(dst.shape(), {dst.strides()}, op);
  detail::visit_all(dst.dtype(), op, [&](auto dt) {
    using D = typename decltype(dt)::type;
    detail::fill_kernel<D>
        <<<detail::blocks_for(n), 256, 0, st>>>(static_cast<D*>(dst.raw_data_ptr()), n, g, v);
    detail::check_launch(op);
  });
}

}  // namespace nq::cuda
