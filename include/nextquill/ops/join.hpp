#pragma once
// concat / stack / split / chunk. concat copies each input into a narrow view
// of the output; its backward hands each input the matching narrow view of
// the gradient. split returns views (no copy).
#include "view.hpp"

namespace nq {

inline Tensor concat(const std::vector<Tensor>& ts, int64_t dim) {
  NQ_CHECK(!ts.empty(), "concat", "needs at least one tensor");
  const Tensor& t0 = ts[0];
  dim = wrap_dim(dim, t0.dim(), "concat");
  Shape out_shape = t0.shape();
  out_shape[dim] = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    NQ_CHECK(t.device() == t0.device(), "concat", "tensor ", i, " is on ", t.device().str(), ", tensor 0 on ",
             t0.device().str());
    bool ok = t.dim() == t0.dim() && t.dtype() == t0.dtype();
    for (int64_t d = 0; ok && d < t0.dim(); ++d) ok = d == dim || t.shape()[d] == t0.shape()[d];
    NQ_CHECK(ok, "concat", "tensor ", i, " (", t.brief(), ") does not match tensor 0 (", t0.brief(),
             ") outside dim ", dim);
    sizes.push_back(t.shape()[dim]);
    out_shape[dim] += t.shape()[dim];
  }
  Tensor out = Tensor::empty(out_shape, t0.options());
  {
    NoGradGuard ng;
    int64_t at = 0;
    for (const auto& t : ts) {
      out.narrow(dim, at, t.shape()[dim]).copy_(t);
      at += t.shape()[dim];
    }
  }
  return record("concat", out, ts, [dim, sizes](const Tensor& g, const Node& n) -> std::vector<Tensor> {
    std::vector<Tensor> gs(sizes.size());
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (n.needs(i)) gs[i] = g.narrow(dim, at, sizes[i]);
      at += sizes[i];
    }
    return gs;
  });
}

inline Tensor stack(const std::vector<Tensor>& ts, int64_t dim) {
  NQ_CHECK(!ts.empty(), "stack", "needs at least one tensor");
  dim = wrap_dim(dim, ts[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  for (size_t i = 0; i < ts.size(); ++i) {
    NQ_CHECK(ts[i].shape() == ts[0].shape(), "stack", "tensor ", i, " has shape ", shape_str(ts[i].shape()),
             ", tensor 0 has ", shape_str(ts[0].shape()));
    us.push_back(ts[i].unsqueeze(dim));
  }
  return concat(us, dim);
}

inline std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (auto s : sizes) {
    NQ_CHECK(s >= 0, "split", "negative size ", s);
    total += s;
  }
  NQ_CHECK(total == x.shape()[dim], "split", "sizes sum to ", total, " but dim ", dim, " of ", x.brief(),
           " has ", x.shape()[dim]);
  std::vector<Tensor> out;
  int64_t at = 0;
  for (auto s : sizes) {
    out.push_back(x.narrow(dim, at, s));
    at += s;
  }
  return out;
}

inline std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  NQ_CHECK(split_size > 0, "split", "split_size must be positive, got ", split_size);
  const int64_t n = x.size(dim);
  std::vector<int64_t> sizes;
  for (int64_t at = 0; at < n; at += split_size) sizes.push_back(std::min(split_size, n - at));
  return split(x, sizes, dim);
}

inline std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  NQ_CHECK(chunks > 0, "chunk", "chunks must be positive, got ", chunks);
  const int64_t n = x.size(dim);
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}

}  // namespace nq
