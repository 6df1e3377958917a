// Reductions on CUDA (include/nextquill/cuda/core.hpp). Two shapes cover
// every sum: over the innermost contiguous elements of each row (a warp per
// short row, a block per long row, shuffle reductions) and over the outer
// dim of a (rows, cols) matrix (threads own columns, so loads coalesce; long
// columns are split into chunks whose fp32 partials a second pass adds).
// ops/reduce.hpp permutes anything else into the first shape.
#include <nextquill/cuda/core.hpp>

#include "common.cuh"

namespace nq::cuda {

namespace detail {

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;  // lane 0 holds the sum
}

// One warp per row (cols small): 8 rows per 256-thread block, grid-stride.
template <typename T>
__global__ void sum_rows_warp_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows,
                                     int64_t cols) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wpb = blockDim.x >> 5;
  for (int64_t r = blockIdx.x * int64_t(wpb) + warp; r < rows; r += int64_t(gridDim.x) * wpb) {
    const T* row = x + r * cols;
    A acc = 0;
    for (int64_t c = lane; c < cols; c += 32) acc += load(row + c);
    acc = warp_sum(acc);
    if (lane == 0) store(out + r, acc);
  }
}

// One block per row (cols large), grid-stride over rows.
template <typename T>
__global__ void sum_rows_block_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows,
                                      int64_t cols) {
  using A = acc_t<T>;
  __shared__ A partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    A acc = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc += load(row + c);
    acc = warp_sum(acc);
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      A v = lane < nw ? partial[lane] : A(0);
      v = warp_sum(v);
      if (lane == 0) store(out + r, v);
    }
    __syncthreads();  // partial[] is reused by the next row
  }
}

// Column sums over rows [chunk * rows_per_chunk, ...) of a (rows, cols)
// matrix: block (32, 16), threadIdx.x picks the column (coalesced loads),
// threadIdx.y strides the rows. out is (chunks, cols).
constexpr int kColX = 32, kColY = 16;
template <typename Tin, typename Tout>
__global__ void sum_cols_kernel(const Tin* __restrict__ x, Tout* __restrict__ out, int64_t rows, int64_t cols,
                                int64_t rows_per_chunk) {
  using A = acc_t<Tin>;
  __shared__ A sm[kColY][kColX + 1];
  const int64_t c = blockIdx.x * int64_t(kColX) + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  A acc = 0;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColY) acc += load(x + r * cols + c);
  sm[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    A s = 0;
#pragma unroll
    for (int k = 0; k < kColY; ++k) s += sm[k][threadIdx.x];
    store(out + blockIdx.y * cols + c, s);
  }
}

// Max of each row, a warp per row. Preference: NaN over non-NaN, then the
// larger value, then the smaller index (so the first arg-max wins).
template <typename A>
__device__ __forceinline__ bool better(A av, int64_t ai, A bv, int64_t bi) {
  const bool an = av != av, bn = bv != bv;
  if (an != bn) return an;
  if (!an && av != bv) return av > bv;
  return ai < bi;
}

template <typename T>
__global__ void max_rows_kernel(const T* __restrict__ x, T* __restrict__ vals, int64_t* __restrict__ idx,
                                int64_t rows, int64_t n) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wpb = blockDim.x >> 5;
  for (int64_t r = blockIdx.x * int64_t(wpb) + warp; r < rows; r += int64_t(gridDim.x) * wpb) {
    const T* row = x + r * n;
    A bv = -INFINITY;
    int64_t bi = INT64_MAX;  // "no element yet": loses every comparison below
    for (int64_t j = lane; j < n; j += 32) {
      const A v = load(row + j);
      if (better(v, j, bv, bi)) bv = v, bi = j;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const A ov = __shfl_down_sync(0xffffffffu, bv, o);
      const int64_t oi = __shfl_down_sync(0xffffffffu, bi, o);
      if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (lane == 0) {
      vals[r] = row[bi];
      idx[r] = bi;
    }
  }
}

template <typename T>
__global__ void scatter_rows_kernel(const T* __restrict__ g, const int64_t* __restrict__ idx,
                                    T* __restrict__ out, int64_t rows, int64_t n) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = idx[r];
    if (j >= 0 && j < n) out[r * n + j] = g[r];
  }
}

inline DType acc_dtype(DType d) { return d == DType::Float64 ? DType::Float64 : DType::Float32; }

}  // namespace detail

Tensor sum_rows(const Tensor& x, int64_t rows, int64_t cols, const Shape& out_shape) {
  const char* op = "sum";
  detail::check_cuda_tensor(x, op, "x");
  NQ_CHECK(rows * cols == x.numel() && numel_of(out_shape) == rows, op, "bad geometry ", rows, "x", cols,
           " for ", x.brief());
  Tensor out = Tensor::empty(out_shape, x.options());
  if (rows == 0) return out;
  if (cols == 0) {
    fill(out, 0.0);
    return out;
  }
  cudaStream_t st = detail::stream_of(x);
  detail::visit_float(x.dtype(), op, [&](auto tg) {
    using T = typename decltype(tg)::type;
    const T* xp = static_cast<const T*>(x.raw_data_ptr());
    T* op_ = static_cast<T*>(out.raw_data_ptr());
    if (cols <= 1024) {
      const unsigned blocks = detail::blocks_for(rows, 8);  // 8 warps = 8 rows per block
      detail::sum_rows_warp_kernel<T><<<blocks, 256, 0, st>>>(xp, op_, rows, cols);
    } else {
      const unsigned blocks = static_cast<unsigned>(rows < 65535 * 32 ? rows : 65535 * 32);
      detail::sum_rows_block_kernel<T><<<blocks, 512, 0, st>>>(xp, op_, rows, cols);
    }
    detail::check_launch(op);
  });
  return out;
}

Tensor sum_cols(const Tensor& x, int64_t rows, int64_t cols, const Shape& out_shape) {
  const char* op = "sum";
  detail::check_cuda_tensor(x, op, "x");
  NQ_CHECK(rows * cols == x.numel() && numel_of(out_shape) == cols, op, "bad geometry ", rows, "x", cols,
           " for ", x.brief());
  Tensor out = Tensor::empty(out_shape, x.options());
  if (cols == 0) return out;
  if (rows == 0) {
    fill(out, 0.0);
    return out;
  }
  cudaStream_t st = detail::stream_of(x);
  const int64_t gx = (cols + detail::kColX - 1) / detail::kColX;
  NQ_CHECK(gx <= 0x7fffffff, op, "too many columns: ", cols);
  // Enough blocks to fill the GPU, at least 64 rows per chunk.
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>((1024 + gx - 1) / gx, (rows + 63) / 64));
  const int64_t per = (rows + chunks - 1) / chunks;
  chunks = (rows + per - 1) / per;
  const dim3 block(detail::kColX, detail::kColY);
  detail::visit_float(x.dtype(), op, [&](auto tg) {
    using T = typename decltype(tg)::type;
    using A = detail::acc_t<T>;
    const T* xp = static_cast<const T*>(x.raw_data_ptr());
    T* o = static_cast<T*>(out.raw_data_ptr());
    if (chunks == 1) {
      detail::sum_cols_kernel<T, T><<<dim3(unsigned(gx), 1), block, 0, st>>>(xp, o, rows, cols, rows);
      detail::check_launch(op);
      return;
    }
    Tensor part = Tensor::empty({chunks, cols}, x.options().with_dtype(detail::acc_dtype(x.dtype())));
    A* pp = static_cast<A*>(part.raw_data_ptr());
    detail::sum_cols_kernel<T, A>
        <<<dim3(unsigned(gx), unsigned(chunks)), block, 0, st>>>(xp, pp, rows, cols, per);
    detail::check_launch(op);
    detail::sum_cols_kernel<A, T><<<dim3(unsigned(gx), 1), block, 0, st>>>(pp, o, chunks, cols, chunks);
    detail::check_launch(op);
  });  // `part` returns to the cache here; the stream orders its reuse
  return out;
}

std::pair<Tensor, Tensor> max_rows(const Tensor& x, int64_t rows, int64_t n, const Shape& out_shape) {
  const char* op = "max";
  detail::check_cuda_tensor(x, op, "x");
  NQ_CHECK(n > 0 && rows * n == x.numel() && numel_of(out_shape) == rows, op, "bad geometry ", rows, "x", n,
           " for ", x.brief());
  Tensor vals = Tensor::empty(out_shape, x.options());
  Tensor idx = Tensor::empty(out_shape, x.options().with_dtype(kInt64));
  if (rows == 0) return {vals, idx};
  detail::visit_float(x.dtype(), op, [&](auto tg) {
    using T = typename decltype(tg)::type;
    detail::max_rows_kernel<T><<<detail::blocks_for(rows, 8), 256, 0, detail::stream_of(x)>>>(
        static_cast<const T*>(x.raw_data_ptr()), static_cast<T*>(vals.raw_data_ptr()),
        static_cast<int64_t*>(idx.raw_data_ptr()), rows, n);
    detail::check_launch(op);
  });
  return {vals, idx};
}

Tensor scatter_rows(const Tensor& g, const Tensor& idx, int64_t rows, int64_t n) {
  const char* op = "max_backward";
  detail::check_cuda_tensor(g, op, "grad");
  detail::check_cuda_tensor(idx, op, "index");
  NQ_CHECK(idx.dtype() == kInt64 && g.numel() == rows && idx.numel() == rows, op, "bad arguments ", g.brief(),
           ", ", idx.brief(), " for ", rows, " rows");
  Tensor out = Tensor::empty({rows, n}, g.options());
  fill(out, 0.0);
  if (rows == 0 || n == 0) return out;
  detail::visit_float(g.dtype(), op, [&](auto tg) {
    using T = typename decltype(tg)::type;
    detail::scatter_rows_kernel<T><<<detail::blocks_for(rows), 256, 0, detail::stream_of(g)>>>(
        static_cast<const T*>(g.raw_data_ptr()), static_cast<const int64_t*>(idx.raw_data_ptr()),
        static_cast<T*>(out.raw_data_ptr()), rows, n);
    detail::check_launch(op);
  });
  return out;
}

}  // namespace nq::cuda
