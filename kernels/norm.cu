// layer_norm and rms_norm over the last dim, forward and backward.
//
// Forward: one thread block per row (grid-stride over rows); two passes for
// the statistics (mean, then mean of squared deviations: no cancellation),
// then y = xhat * w + b. Statistics in fp32 (fp64 for a float64 x), saved per
// row. x may be bf16 while weight/bias are fp32 (mixed precision).
//
// Backward, with xhat = (x - mean) * rstd (mean = 0 for rms_norm), gy = g * w:
//   dx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat))   (rms: no mean(gy))
//   dw = sum_rows(g * xhat),  db = sum_rows(g)
// dx: one block per row. dw/db: a (column tile, row chunk) grid where each
// thread owns one column of one chunk and writes a partial sum (no atomics),
// then one thread per column adds the chunk partials in order, so the result
// is deterministic.
#include <algorithm>
#include <nextquill/cuda/nn.hpp>

#include "common.cuh"

namespace nq::cuda {

namespace {

using detail::acc_t;
using detail::cptr;
using detail::load;
using detail::mptr;
using detail::store;

template <typename A>
__device__ __forceinline__ A dev_rsqrt_eps(A var, A eps) {
  if constexpr (std::is_same_v<A, double>)
    return 1.0 / ::sqrt(var + eps);
  else
    return 1.0f / ::sqrtf(var + eps);  // not rsqrtf: that one is approximate
}

// Sum over the whole block (blockDim.x a multiple of 32, <= 1024); every thread
// gets the result, folded in a fixed order.
template <typename A>
__device__ A block_sum(A v, A* shm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();  // shm may still be read by a previous reduction
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  A r = shm[0];
  for (int w = 1; w < nw; ++w) r += shm[w];
  return r;
}

// x (R, C) -> y (R, C), mean/rstd (R). w, b may be null.
template <typename T, typename P, bool CENTER>
__global__ void norm_fwd_kernel(const T* __restrict__ x, const P* __restrict__ w, const P* __restrict__ b,
                                T* __restrict__ y, acc_t<T>* __restrict__ mean, acc_t<T>* __restrict__ rstd,
                                int64_t rows, int64_t C, acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  const A invC = A(1) / static_cast<A>(C);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // block-uniform loop
    const T* xr = x + r * C;
    T* yr = y + r * C;
    A mu = 0;
    if constexpr (CENTER) {
      A s = 0;
      for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += load(xr + i);
      mu = block_sum(s, shm) * invC;
    }
    A v = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      const A d = load(xr + i) - mu;
      v += d * d;
    }
    const A rs = dev_rsqrt_eps(block_sum(v, shm) * invC, eps);
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      A o = (load(xr + i) - mu) * rs;
      if (w) o *= load(w + i);
      if (b) o += load(b + i);
      store(yr + i, o);
    }
  }
}

// dx (R, C) from x, g (R, C), w (C) or null, mean/rstd (R).
template <typename T, typename P, bool CENTER>
__global__ void norm_dx_kernel(const T* __restrict__ x, const P* __restrict__ w,
                               const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ rstd,
                               const T* __restrict__ g, T* __restrict__ dx, int64_t rows, int64_t C) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  const A invC = A(1) / static_cast<A>(C);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * C;
    const T* gr = g + r * C;
    T* dr = dx + r * C;
    const A m = CENTER ? mean[r] : A(0), s = rstd[r];
    A sgx = 0, sg = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      const A gy = w ? load(gr + i) * load(w + i) : load(gr + i);
      sgx += gy * ((load(xr + i) - m) * s);
      sg += gy;
    }
    const A a = block_sum(sgx, shm) * invC;                 // mean(gy * xhat)
    const A c = CENTER ? block_sum(sg, shm) * invC : A(0);  // mean(gy); block-uniform branch
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      const A gy = w ? load(gr + i) * load(w + i) : load(gr + i);
      store(dr + i, s * (gy - c - ((load(xr + i) - m) * s) * a));
    }
  }
}

// Partial dw/db: block (cx, k) covers columns [cx*blockDim, ...) of row chunk k.
// pw/pb (nchunks, C) or null.
template <typename T, bool CENTER>
__global__ void norm_dwdb_partial_kernel(const T* __restrict__ x, const acc_t<T>* __restrict__ mean,
                                         const acc_t<T>* __restrict__ rstd, const T* __restrict__ g,
                                         acc_t<T>* __restrict__ pw, acc_t<T>* __restrict__ pb, int64_t rows,
                                         int64_t C, int64_t nchunks) {
  using A = acc_t<T>;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t k = blockIdx.y;
  if (c >= C) return;  // no block-wide sync in this kernel
  const int64_t r0 = rows * k / nchunks, r1 = rows * (k + 1) / nchunks;
  A aw = 0, ab = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const A gv = load(g + r * C + c);
    if (pw) aw += gv * ((load(x + r * C + c) - (CENTER ? mean[r] : A(0))) * rstd[r]);
    ab += gv;
  }
  if (pw) pw[k * C + c] = aw;
  if (pb) pb[k * C + c] = ab;
}

// out[c] = sum_k partial[k, c], in chunk order.
template <typename A, typename P>
__global__ void sum_chunks_kernel(const A* __restrict__ partial, P* __restrict__ out, int64_t nchunks,
                                  int64_t C) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A acc = 0;
    for (int64_t k = 0; k < nchunks; ++k) acc += partial[k * C + c];
    store(out + c, acc);
  }
}

int norm_threads(int64_t C) {
  if (C <= 64) return 32;
  if (C <= 512) return 128;
  if (C <= 2048) return 256;
  if (C <= 8192) return 512;
  return 1024;
}
unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), int64_t(1) << 20));
}

// The dtype of weight/bias (they must agree); x's dtype when both are absent.
DType param_dtype(const char* op, const Tensor& x, const Tensor& w, const Tensor& b) {
  if (w.defined() && b.defined())
    NQ_CHECK(w.dtype() == b.dtype(), op, "weight dtype ", dtype_name(w.dtype()), " differs from bias dtype ",
             dtype_name(b.dtype()));
  return w.defined() ? w.dtype() : b.defined() ? b.dtype() : x.dtype();
}

void check_param(const char* op, const char* name, const Tensor& p, const Tensor& x, int64_t C) {
  if (!p.defined()) return;
  detail::check_cuda_tensor(p, op, name);
  NQ_CHECK(p.device() == x.device(), op, name, " is on ", p.device().str(), " but input is on ",
           x.device().str());
  NQ_CHECK(p.numel() == C, op, name, " ", p.brief(), " must have ", C, " elements (last dim of ", x.brief(),
           ")");
}

DType stat_dtype(DType x) { return x == DType::Float64 ? DType::Float64 : DType::Float32; }

}  // namespace

NormOut norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool center) {
  const char* op = center ? "layer_norm" : "rms_norm";
  detail::check_cuda_tensor(x, op, "input");
  NQ_CHECK(x.dim() >= 1 && x.size(-1) > 0, op, "input ", x.brief(), " needs a non-empty last dim");
  const int64_t C = x.size(-1), rows = x.numel() / C;
  check_param(op, "weight", weight, x, C);
  check_param(op, "bias", bias, x, C);
  const DType pd = param_dtype(op, x, weight, bias);
  const TensorOptions so = TensorOptions(stat_dtype(x.dtype())).with_device(x.device());
  NormOut out{Tensor::empty(x.shape(), x.options()), Tensor::empty({rows}, so), Tensor::empty({rows}, so)};
  if (rows == 0) return out;
  detail::visit_float(x.dtype(), op, [&](auto xt) {
    using T = typename decltype(xt)::type;
    using A = acc_t<T>;
    detail::visit_float(pd, op, [&](auto pt) {
      using P = typename decltype(pt)::type;
      auto kernel = center ? norm_fwd_kernel<T, P, true> : norm_fwd_kernel<T, P, false>;
      kernel<<<row_blocks(rows), norm_threads(C), 0, detail::stream_of(x)>>>(
          cptr<T>(x), cptr<P>(weight), cptr<P>(bias), mptr<T>(out.y), mptr<A>(out.mean), mptr<A>(out.rstd),
          rows, C, static_cast<A>(eps));
      detail::check_launch(op);
    });
  });
  return out;
}

NormGrads norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                        const Tensor& g, bool need_dx, bool need_dweight, bool need_dbias, bool center,
                        DType param_dtype) {
  const char* op = center ? "layer_norm backward" : "rms_norm backward";
  detail::check_cuda_tensor(x, op, "input");
  detail::check_cuda_tensor(g, op, "grad");
  detail::check_cuda_tensor(mean, op, "mean");
  detail::check_cuda_tensor(rstd, op, "rstd");
  NQ_CHECK(g.shape() == x.shape() && g.dtype() == x.dtype() && g.device() == x.device(), op, "grad ",
           g.brief(), " on ", g.device().str(), " must match input ", x.brief(), " on ", x.device().str());
  const int64_t C = x.size(-1), rows = x.numel() / C;
  check_param(op, "weight", weight, x, C);
  const DType sd = stat_dtype(x.dtype());
  NQ_CHECK(mean.dtype() == sd && rstd.dtype() == sd && mean.numel() == rows && rstd.numel() == rows, op,
           "saved statistics ", mean.brief(), ", ", rstd.brief(), " do not match input ", x.brief());
  NQ_CHECK(!weight.defined() || weight.dtype() == param_dtype, op, "weight dtype ",
           dtype_name(weight.dtype()), " differs from the parameter dtype ", dtype_name(param_dtype));
  const DType pd = param_dtype;  // of dweight/dbias, and of the weight when there is one
  const TensorOptions po = TensorOptions(pd).with_device(x.device());
  NormGrads out;
  if (need_dx) out.dx = Tensor::empty(x.shape(), x.options());
  if (need_dweight) out.dweight = Tensor::empty({C}, po);
  if (need_dbias) out.dbias = Tensor::empty({C}, po);
  auto st = detail::stream_of(x);
  detail::visit_float(x.dtype(), op, [&](auto xt) {
    using T = typename decltype(xt)::type;
    using A = acc_t<T>;
    detail::visit_float(pd, op, [&](auto pt) {
      using P = typename decltype(pt)::type;
      if (need_dx && rows > 0) {
        auto kernel = center ? norm_dx_kernel<T, P, true> : norm_dx_kernel<T, P, false>;
        kernel<<<row_blocks(rows), norm_threads(C), 0, st>>>(
            cptr<T>(x), cptr<P>(weight), cptr<A>(mean), cptr<A>(rstd), cptr<T>(g), mptr<T>(out.dx), rows, C);
        detail::check_launch(op);
      }
      if (!need_dweight && !need_dbias) return;
      // Row chunks of >= 16 rows each, at most 512: enough blocks to fill the GPU.
      const int64_t nchunks = std::clamp<int64_t>((rows + 15) / 16, 1, 512);
      const TensorOptions so = TensorOptions(sd).with_device(x.device());
      Tensor pw = need_dweight ? Tensor::empty({nchunks, C}, so) : Tensor();
      Tensor pb = need_dbias ? Tensor::empty({nchunks, C}, so) : Tensor();
      const int threads = 256;
      dim3 grid(static_cast<unsigned>((C + threads - 1) / threads), static_cast<unsigned>(nchunks));
      NQ_CHECK(grid.x <= 2147483647u, op, "last dim ", C, " too large");
      auto partial = center ? norm_dwdb_partial_kernel<T, true> : norm_dwdb_partial_kernel<T, false>;
      partial<<<grid, threads, 0, st>>>(cptr<T>(x), cptr<A>(mean), cptr<A>(rstd), cptr<T>(g), mptr<A>(pw),
                                        mptr<A>(pb), rows, C, nchunks);
      detail::check_launch(op);
      if (need_dweight) {
        sum_chunks_kernel<A, P>
            <<<detail::blocks_for(C), 256, 0, st>>>(cptr<A>(pw), mptr<P>(out.dweight), nchunks, C);
        detail::check_launch(op);
      }
      if (need_dbias) {
        sum_chunks_kernel<A, P>
            <<<detail::blocks_for(C), 256, 0, st>>>(cptr<A>(pb), mptr<P>(out.dbias), nchunks, C);
        detail::check_launch(op);
      }
    });
  });
  return out;
}

}  // namespace nq::cuda
