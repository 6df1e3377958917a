// softmax / log_softmax / logsumexp over the last dim of a contiguous tensor,
// forward and backward. One thread block per row (grid-stride over rows), so a
// row of any length (1 .. vocab 50257 and beyond) is handled by the same code:
// pass 1 takes the row max, pass 2 sums exp(x - max), pass 3 writes. Math in
// fp32 (fp64 for float64), storage in the tensor's dtype.
//
// Conventions copied from the CPU path (ops/softmax.hpp): a fully masked row
// (all -inf) gives softmax 0, log_softmax -inf, logsumexp -inf and a zero
// gradient; NaN anywhere in a row makes the row NaN; +inf gives NaN.
#include <algorithm>
#include <nextquill/cuda/nn.hpp>

#include "common.cuh"

namespace nq::cuda {

namespace {

using detail::acc_t;
using detail::dev_exp;
using detail::dev_log;
using detail::load;
using detail::neg_inf;
using detail::store;

// max that lets NaN win (as the CPU row_max does).
struct MaxOp {
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return (a > b || a != a) ? a : b;
  }
};
struct SumOp {
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return a + b;
  }
};

// Reduction over the whole block (blockDim.x a multiple of 32, <= 1024); every
// thread gets the result. Warps reduce by shuffles, then each thread folds the
// warp results in the same order, so the result is deterministic.
template <typename A, typename Op>
__device__ A block_reduce(A v, Op op, A* shm) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();  // shm may still be read by a previous reduction
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  A r = shm[0];
  for (int w = 1; w < nw; ++w) r = op(r, shm[w]);
  return r;
}

template <typename T, bool LOG>
__global__ void softmax_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // block-uniform loop
    const T* xr = x + r * n;
    T* yr = y + r * n;
    A m = neg_inf<A>();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = MaxOp{}(m, load(xr + i));
    m = block_reduce(m, MaxOp{}, shm);
    if (m == neg_inf<A>()) {  // fully masked row (or n == 0): 0 / -inf, not NaN
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) store(yr + i, LOG ? neg_inf<A>() : A(0));
      continue;
    }
    A s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += dev_exp(load(xr + i) - m);
    s = block_reduce(s, SumOp{}, shm);
    if constexpr (LOG) {
      const A ls = dev_log(s);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) store(yr + i, (load(xr + i) - m) - ls);
    } else {
      const A inv = A(1) / s;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) store(yr + i, dev_exp(load(xr + i) - m) * inv);
    }
  }
}

// softmax:     dx = y * (g - sum(g * y))
// log_softmax: dx = g - exp(y) * sum(g); 0 for a row whose y is all -inf
template <typename T, bool LOG>
__global__ void softmax_bwd_kernel(const T* __restrict__ y, const T* __restrict__ g, T* __restrict__ dx,
                                   int64_t rows, int64_t n) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* dr = dx + r * n;
    A s = 0;
    if constexpr (LOG) {
      A live = 0;  // 1 when some y != -inf
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        s += load(gr + i);
        if (load(yr + i) != neg_inf<A>()) live = A(1);
      }
      s = block_reduce(s, SumOp{}, shm);
      live = block_reduce(live, MaxOp{}, shm);
      if (live == A(0)) {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) store(dr + i, A(0));
        continue;
      }
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        store(dr + i, load(gr + i) - dev_exp(load(yr + i)) * s);
    } else {
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += load(gr + i) * load(yr + i);
      s = block_reduce(s, SumOp{}, shm);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) store(dr + i, load(yr + i) * (load(gr + i) - s));
    }
  }
}

// out[r] = log(sum(exp(x_r))): -inf for an all -inf row, +inf if some x = +inf.
template <typename T>
__global__ void logsumexp_fwd_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows, int64_t n) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    A m = neg_inf<A>();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = MaxOp{}(m, load(xr + i));
    m = block_reduce(m, MaxOp{}, shm);
    if (isinf(m)) {
      if (threadIdx.x == 0) store(out + r, m);
      continue;
    }
    A s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += dev_exp(load(xr + i) - m);
    s = block_reduce(s, SumOp{}, shm);
    if (threadIdx.x == 0) store(out + r, m + dev_log(s));
  }
}

// dx[r, i] = g[r] * exp(x[r, i] - lse[r]); 0 where lse = -inf. Element-wise.
template <typename T>
__global__ void logsumexp_bwd_kernel(const T* __restrict__ x, const T* __restrict__ lse,
                                     const T* __restrict__ g, T* __restrict__ dx, int64_t total, int64_t n) {
  using A = acc_t<T>;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = k / n;
    const A l = load(lse + r);
    store(dx + k, l == neg_inf<A>() ? A(0) : dev_exp(load(x + k) - l) * load(g + r));
  }
}

// Threads per row block: enough to cover short rows without idle warps, many
// for vocabulary-sized rows.
int row_threads(int64_t n) {
  if (n <= 64) return 32;
  if (n <= 512) return 128;
  if (n <= 4096) return 256;
  if (n <= 16384) return 512;
  return 1024;
}
unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), int64_t(1) << 20));
}

int64_t last_dim(const Tensor& x, const char* op) {
  NQ_CHECK(x.dim() >= 1, op, "input ", x.brief(), " needs at least one dim");
  return x.size(-1);
}

void check_same(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  detail::check_cuda_tensor(a, op, an);
  detail::check_cuda_tensor(b, op, bn);
  NQ_CHECK(a.device() == b.device(), op, an, " is on ", a.device().str(), " but ", bn, " is on ",
           b.device().str());
  NQ_CHECK(a.dtype() == b.dtype(), op, an, " dtype ", dtype_name(a.dtype()), " differs from ", bn, " dtype ",
           dtype_name(b.dtype()));
}

}  // namespace

Tensor softmax_forward(const Tensor& x, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  detail::check_cuda_tensor(x, op, "input");
  const int64_t n = last_dim(x, op);
  const int64_t rows = n ? x.numel() / n : 0;
  Tensor y = Tensor::empty(x.shape(), x.options());
  if (rows == 0 || n == 0) return y;
  detail::visit_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x.raw_data_ptr());
    T* yp = static_cast<T*>(y.raw_data_ptr());
    auto st = detail::stream_of(x);
    if (log)
      softmax_fwd_kernel<T, true><<<row_blocks(rows), row_threads(n), 0, st>>>(xp, yp, rows, n);
    else
      softmax_fwd_kernel<T, false><<<row_blocks(rows), row_threads(n), 0, st>>>(xp, yp, rows, n);
    detail::check_launch(op);
  });
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& g, bool log) {
  const char* op = log ? "log_softmax backward" : "softmax backward";
  check_same(y, g, op, "output", "grad");
  NQ_CHECK(y.shape() == g.shape(), op, "grad ", g.brief(), " does not match output ", y.brief());
  const int64_t n = last_dim(y, op);
  const int64_t rows = n ? y.numel() / n : 0;
  Tensor dx = Tensor::empty(y.shape(), y.options());
  if (rows == 0 || n == 0) return dx;
  detail::visit_float(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* yp = static_cast<const T*>(y.raw_data_ptr());
    const T* gp = static_cast<const T*>(g.raw_data_ptr());
    T* dp = static_cast<T*>(dx.raw_data_ptr());
    auto st = detail::stream_of(y);
    if (log)
      softmax_bwd_kernel<T, true><<<row_blocks(rows), row_threads(n), 0, st>>>(yp, gp, dp, rows, n);
    else
      softmax_bwd_kernel<T, false><<<row_blocks(rows), row_threads(n), 0, st>>>(yp, gp, dp, rows, n);
    detail::check_launch(op);
  });
  return dx;
}

Tensor logsumexp_forward(const Tensor& x) {
  const char* op = "logsumexp";
  detail::check_cuda_tensor(x, op, "input");
  const int64_t n = last_dim(x, op);
  Shape oshape = x.shape();
  oshape.back() = 1;
  const int64_t rows = numel_of(oshape);
  Tensor out = Tensor::empty(oshape, x.options());
  if (rows == 0) return out;
  detail::visit_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // n == 0: every thread skips its loops, max stays -inf, out = -inf (log of an empty sum).
    logsumexp_fwd_kernel<T><<<row_blocks(rows), row_threads(n), 0, detail::stream_of(x)>>>(
        static_cast<const T*>(x.raw_data_ptr()), static_cast<T*>(out.raw_data_ptr()), rows, n);
    detail::check_launch(op);
  });
  return out;
}

Tensor logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& g) {
  const char* op = "logsumexp backward";
  check_same(x, lse, op, "input", "logsumexp");
  check_same(x, g, op, "input", "grad");
  const int64_t n = last_dim(x, op);
  const int64_t rows = n ? x.numel() / n : 0;
  NQ_CHECK(lse.numel() == rows && g.numel() == rows, op, "logsumexp ", lse.brief(), " and grad ", g.brief(),
           " must have one value per row of ", x.brief());
  Tensor dx = Tensor::empty(x.shape(), x.options());
  const int64_t total = x.numel();
  if (total == 0) return dx;
  detail::visit_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    logsumexp_bwd_kernel<T><<<detail::blocks_for(total), 256, 0, detail::stream_of(x)>>>(
        static_cast<const T*>(x.raw_data_ptr()), static_cast<const T*>(lse.raw_data_ptr()),
        static_cast<const T*>(g.raw_data_ptr()), static_cast<T*>(dx.raw_data_ptr()), total, n);
    detail::check_launch(op);
  });
  return dx;
}

}  // namespace nq::cuda
