#pragma once
// View ops: new shape/strides/offset over the same storage, no copy. Their
// backward maps the gradient back to the input's geometry. contiguous(),
// clone() and to() copy.
#include <algorithm>
#include <numeric>

#include "elementwise.hpp"

namespace nq {

namespace detail {
// Strides for viewing (shape, strides) as `target` without a copy, or none
// when impossible. Walks the source dims from the innermost, splitting them
// into runs that are contiguous within themselves; each run must be covered
// exactly by a group of target dims, which then step through it.
inline std::optional<Strides> view_strides(const Shape& shape, const Strides& strides, const Shape& target) {
  if (numel_of(shape) == 0 || shape.empty()) return contiguous_strides(target);
  Strides out(target.size());
  int64_t vd = static_cast<int64_t>(target.size()) - 1;
  int64_t base = strides.back(), tn = 1, vn = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tn *= shape[d];
    bool run_ends = d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tn * base);
    if (!run_ends) continue;
    while (vd >= 0 && (vn < tn || target[vd] == 1)) {
      out[vd] = vn * base;
      vn *= target[vd];
      --vd;
    }
    if (vn != tn) return std::nullopt;
    if (d > 0) {
      base = strides[d - 1];
      tn = vn = 1;
    }
  }
  if (vd != -1) return std::nullopt;
  return out;
}

inline Shape infer_shape(const Shape& s, int64_t numel, const char* op) {
  Shape out = s;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      NQ_CHECK(infer < 0, op, "only one dimension can be -1 in ", shape_str(s));
      infer = static_cast<int64_t>(i);
    } else {
      NQ_CHECK(s[i] >= 0, op, "invalid size in shape ", shape_str(s));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    NQ_CHECK(known != 0 && numel % known == 0, op, "shape ", shape_str(s), " is invalid for ", numel,
             " elements");
    out[infer] = numel / known;
  }
  NQ_CHECK(numel_of(out) == numel, op, "shape ", shape_str(s), " is invalid for input of ", numel,
           " elements");
  return out;
}

// A view with a backward that reshapes the gradient to the input shape.
inline Tensor view_like(const char* op, const Tensor& x, Shape shape, Strides strides, int64_t offset) {
  Tensor out = Tensor::make_view(x, std::move(shape), std::move(strides), offset);
  Shape in_shape = x.shape();
  return record(op, out, {x}, [in_shape](const Tensor& g, const Node&) -> std::vector<Tensor> {
    return {g.reshape(in_shape)};
  });
}
}  // namespace detail

inline Tensor Tensor::view(const Shape& s) const {
  Shape target = detail::infer_shape(s, numel(), "view");
  auto st = detail::view_strides(shape(), strides(), target);
  NQ_CHECK(st.has_value(), "view", "cannot view ", brief(), " with strides ", shape_str(strides()), " as ",
           shape_str(target), " without a copy; use reshape()");
  return detail::view_like("view", *this, target, *st, offset());
}

inline Tensor Tensor::reshape(const Shape& s) const {
  Shape target = detail::infer_shape(s, numel(), "reshape");
  if (target == shape()) return *this;
  if (auto st = detail::view_strides(shape(), strides(), target))
    return detail::view_like("reshape", *this, target, *st, offset());
  return contiguous().view(target);
}

inline Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  const int64_t n = dim();
  NQ_CHECK(static_cast<int64_t>(dims.size()) == n, "permute", "got ", dims.size(), " dims for ", brief());
  Shape s(n);
  Strides st(n);
  std::vector<int64_t> inv(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    int64_t d = wrap_dim(dims[i], n, "permute");
    NQ_CHECK(inv[d] < 0, "permute", "dim ", d, " repeated");
    inv[d] = i;
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = Tensor::make_view(*this, s, st, offset());
  return record("permute", out, {*this},
                [inv](const Tensor& g, const Node&) -> std::vector<Tensor> { return {g.permute(inv)}; });
}

inline Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> p(dim());
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[wrap_dim(d0, dim(), "transpose")], p[wrap_dim(d1, dim(), "transpose")]);
  return permute(p);
}

inline Tensor Tensor::t() const {
  NQ_CHECK(dim() >= 2, "t", "needs at least 2 dims, got ", brief());
  return transpose(-2, -1);
}

inline Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  const int64_t n = shape()[d];
  NQ_CHECK(step > 0, "slice", "step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape();
  Strides st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = Tensor::make_view(*this, s, st, offset() + start * strides()[d]);
  // The gradient is the slice's own; the engine places it (GradSlice).
  out =
      record("slice", out, {*this}, [](const Tensor& g, const Node&) -> std::vector<Tensor> { return {g}; });
  if (const auto& fn = out.grad_fn()) fn->next[0].slice = GradSlice{d, start, end, step};  // a fresh node
  return out;
}

inline Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  NQ_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow", "range [", start, ", ", start + length,
           ") out of bounds for dim ", d, " of ", brief());
  return slice(d, start, start + length, 1);
}

inline Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[d];
  if (index < 0) index += n;
  NQ_CHECK(index >= 0 && index < n, "select", "index ", index, " out of range for dim ", d, " of ", brief());
  return narrow(d, index, 1).squeeze(d);
}

inline Tensor Tensor::expand(const Shape& target) const {
  NQ_CHECK(target.size() >= shape().size(), "expand", "cannot expand ", brief(), " to ", shape_str(target));
  Shape s = target;
  const size_t lead = target.size() - shape().size();
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t have = i < lead ? 1 : shape()[i - lead];
    if (s[i] == -1) s[i] = have;
    NQ_CHECK(have == s[i] || have == 1, "expand", "cannot expand ", brief(), " to ", shape_str(target));
  }
  Strides st = broadcast_strides(shape(), strides(), s);
  Tensor out = Tensor::make_view(*this, s, st, offset());
  Shape in_shape = shape();
  return record("expand", out, {*this}, [in_shape](const Tensor& g, const Node&) -> std::vector<Tensor> {
    return {sum_to(g, in_shape)};
  });
}

inline Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape s = shape();
  Strides st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return detail::view_like("squeeze", *this, s, st, offset());
}

inline Tensor Tensor::squeeze() const {
  Shape s;
  Strides st;
  for (int64_t i = 0; i < dim(); ++i)
    if (shape()[i] != 1) {
      s.push_back(shape()[i]);
      st.push_back(strides()[i]);
    }
  return detail::view_like("squeeze", *this, s, st, offset());
}

inline Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  Strides st = strides();
  int64_t inner = d < dim() ? strides()[d] * shape()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, inner);
  return detail::view_like("unsqueeze", *this, s, st, offset());
}

inline Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, dim(), "flatten");
  end = wrap_dim(end, dim(), "flatten");
  NQ_CHECK(start <= end, "flatten", "start dim ", start, " after end dim ", end);
  Shape s(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= shape()[i];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

inline Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), options());
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  return record("clone", out, {*this},
                [](const Tensor& g, const Node&) -> std::vector<Tensor> { return {g}; });
}

inline Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

inline Tensor Tensor::to(DType d) const {
  if (d == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), options().with_dtype(d));
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  if (!is_floating(d)) return out;
  DType src = dtype();
  return record("to", out, {*this},
                [src](const Tensor& g, const Node&) -> std::vector<Tensor> { return {g.to(src)}; });
}

inline Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor out = Tensor::empty(shape(), TensorOptions(dtype()).with_device(d));
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  if (!is_floating(dtype())) return out;
  Device src = device();  // the gradient goes back where the input lives
  return record("to_device", out, {*this},
                [src](const Tensor& g, const Node&) -> std::vector<Tensor> { return {g.to(src)}; });
}

inline Tensor Tensor::cpu() const { return to(Device::cpu()); }
inline Tensor Tensor::cuda(int index) const { return to(Device::cuda(index)); }

}  // namespace nq
