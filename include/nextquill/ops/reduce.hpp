#pragma once
// Reductions: sum/mean over any set of dims (keepdim), max/argmax over one.
#include <limits>

#include "view.hpp"

namespace nq {

namespace detail {
// Dims to reduce as a mask (empty list = all dims).
inline std::vector<bool> reduce_mask(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> m(x.dim(), dims.empty());
  for (auto d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    NQ_CHECK(!m[w] || dims.empty(), op, "dim ", d, " repeated");
    m[w] = true;
  }
  return m;
}

#if NEXTQUILL_WITH_CUDA
// Sum on CUDA to the keepdim shape `kshape`. Reduced dims that are the
// innermost of a contiguous tensor: row reduction; the outermost: column
// reduction; anything else: kept dims moved first (one copy), then rows.
inline Tensor cuda_sum(const Tensor& x, const std::vector<bool>& mask, const Shape& kshape) {
  NoGradGuard ng;
  if (x.numel() == 0) return zeros(kshape, x.options());
  Tensor xc = x.detach().contiguous();
  // Non-1 dims in order, with their reduce flag (size-1 dims change nothing).
  std::vector<int64_t> kept, red;
  std::vector<bool> flags;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (x.shape()[i] == 1) continue;
    flags.push_back(mask[i]);
    (mask[i] ? red : kept).push_back(i);
  }
  int64_t nk = 1, nr = 1;
  for (auto d : kept) nk *= x.shape()[d];
  for (auto d : red) nr *= x.shape()[d];
  if (red.empty()) return xc.clone().reshape(kshape);  // only size-1 dims reduced: a copy
  bool suffix = true, prefix = true;                   // reduced dims are the last / the first non-1 dims
  for (size_t i = 0; i < flags.size(); ++i) {
    if (i < kept.size()) suffix = suffix && !flags[i];
    if (i < red.size()) prefix = prefix && flags[i];
  }
  if (suffix) return cuda::sum_rows(xc, nk, nr, kshape);
  if (prefix) return cuda::sum_cols(xc, nr, nk, kshape);
  std::vector<int64_t> perm = kept;
  perm.insert(perm.end(), red.begin(), red.end());
  for (int64_t i = 0; i < x.dim(); ++i)
    if (x.shape()[i] == 1) perm.push_back(i);
  return cuda::sum_rows(xc.permute(perm).contiguous(), nk, nr, kshape);
}
#endif
}  // namespace detail

inline Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const auto mask = detail::reduce_mask(x, dims, "sum");
  Shape kshape = x.shape(), oshape;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (mask[i])
      kshape[i] = 1;
    else
      oshape.push_back(x.shape()[i]);
  }
  Tensor out;
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) out = detail::cuda_sum(x, mask, kshape);
#endif
  if (!out.defined()) {
    out = zeros(kshape, x.dtype());
    visit_float(x.dtype(), "sum", [&](auto tag) {
      using T = typename decltype(tag)::type;
      // Walk the input; the output is read with stride 0 along reduced dims.
      cpu::StridedLoop<2> loop(x.shape(), {broadcast_strides(kshape, out.strides(), x.shape()), x.strides()});
      T* o = out.data_ptr<T>();
      const T* in = x.data_ptr<T>();
      loop.run({0, 0}, [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> s) {
        if (s[0] == 0) {
          T acc = 0;
          for (int64_t i = 0; i < n; ++i) acc += in[off[1] + i * s[1]];
          o[off[0]] += acc;
        } else {
          for (int64_t i = 0; i < n; ++i) o[off[0] + i * s[0]] += in[off[1] + i * s[1]];
        }
      });
    });
  }
  if (!keepdim) out = out.view(oshape);
  Shape in_shape = x.shape();
  return record("sum", out, {x}, [in_shape, kshape](const Tensor& g, const Node&) -> std::vector<Tensor> {
    return {g.reshape(kshape).expand(in_shape)};
  });
}

inline Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const auto mask = detail::reduce_mask(x, dims, "mean");
  int64_t count = 1;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (mask[i]) count *= x.shape()[i];
  NQ_CHECK(count > 0, "mean", "mean over an empty set of elements of ", x.brief());
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(count));
}

namespace detail {
// Max over `dim`: returns (values, int64 indices) with keepdim shape.
inline std::pair<Tensor, Tensor> max_with_index(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "max");
  const int64_t n = x.shape()[dim];
  NQ_CHECK(n > 0, "max", "reduction over an empty dim ", dim, " of ", x.brief());
  Tensor xt = x.detach().transpose(dim, -1).contiguous();  // (..., n)
  const int64_t rows = xt.numel() / n;
  // Results are computed row by row in xt's layout (reduced dim last, size 1)
  // and transposed back to the keepdim shape.
  Shape rshape = xt.shape();
  rshape.back() = 1;
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) {
    auto vi = cuda::max_rows(xt, rows, n, rshape);
    return {vi.first.transpose(dim, -1).contiguous(), vi.second.transpose(dim, -1).contiguous()};
  }
#endif
  Tensor vals = Tensor::empty(rshape, x.dtype()), idx = Tensor::empty(rshape, kInt64);
  visit_float(x.dtype(), "max", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = xt.data_ptr<T>();
    T* v = vals.data_ptr<T>();
    int64_t* id = idx.data_ptr<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + r * n;
      int64_t best = 0;
      for (int64_t j = 1; j < n; ++j)
        if (row[j] > row[best] || (std::isnan(row[j]) && !std::isnan(row[best]))) best = j;
      v[r] = row[best];
      id[r] = best;
    }
  });
  return {vals.transpose(dim, -1).contiguous(), idx.transpose(dim, -1).contiguous()};
}
}  // namespace detail

inline Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  dim = wrap_dim(dim, x.dim(), "max");
  auto vi = detail::max_with_index(x, dim);
  Tensor vals = vi.first, idx = vi.second;
  Tensor out = keepdim ? vals : vals.squeeze(dim);
  Shape in_shape = x.shape();
  DType dt = x.dtype();
  return record("max", out, {x}, [=](const Tensor& g, const Node&) -> std::vector<Tensor> {
    // Route each gradient to its arg-max: build it in the transposed layout.
    Shape tshape = in_shape;
    std::swap(tshape[dim], tshape.back());
    const int64_t n = in_shape[dim];
    Shape kshape = in_shape;
    kshape[dim] = 1;
    Tensor gc = g.reshape(kshape).transpose(dim, -1).contiguous();  // rows aligned with gt
    Tensor ic = idx.transpose(dim, -1).contiguous();
#if NEXTQUILL_WITH_CUDA
    if (gc.device().is_cuda()) {
      Tensor gg = gc.dtype() == dt ? gc : gc.to(dt);
      return {cuda::scatter_rows(gg, ic, ic.numel(), n).reshape(tshape).transpose(dim, -1)};
    }
#endif
    Tensor gt = zeros(tshape, dt);
    visit_float(dt, "max", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* d = gt.data_ptr<T>();
      const T* gs = gc.data_ptr<T>();
      const int64_t* id = ic.data_ptr<int64_t>();
      for (int64_t r = 0, rows = ic.numel(); r < rows; ++r) d[r * n + id[r]] = gs[r];
    });
    return {gt.transpose(dim, -1)};
  });
}

inline Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  dim = wrap_dim(dim, x.dim(), "argmax");
  auto idx = detail::max_with_index(x, dim).second;
  return keepdim ? idx : idx.squeeze(dim);
}

inline Tensor max(const Tensor& x) { return max(x.reshape({-1}), 0, false); }

inline Tensor Tensor::sum() const { return nq::sum(*this, {}, false); }
inline Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const {
  return nq::sum(*this, dims, keepdim);
}
inline Tensor Tensor::mean() const { return nq::mean(*this, {}, false); }
inline Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const {
  return nq::mean(*this, dims, keepdim);
}
inline Tensor Tensor::max(int64_t dim, bool keepdim) const { return nq::max(*this, dim, keepdim); }

}  // namespace nq
