#pragma once
// Tensor factories.
#include <cmath>

#include "data.hpp"

namespace nq {

inline Tensor empty(const Shape& shape, TensorOptions opts) { return Tensor::empty(shape, opts); }

inline Tensor full(const Shape& shape, double value, TensorOptions opts) {
  bool rg = opts.requires_grad;
  Tensor t = Tensor::empty(shape, opts.with_requires_grad(false));
  t.fill_(value);
  if (rg) t.set_requires_grad(true);
  return t;
}
inline Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
inline Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
inline Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
inline Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
inline Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype()); }
inline Tensor scalar_tensor(double value, TensorOptions opts) { return full({}, value, opts); }

inline Tensor arange(double start, double end, double step, TensorOptions opts) {
  NQ_CHECK(step != 0.0, "arange", "step must be nonzero");
  double n = std::ceil((end - start) / step);
  int64_t len = n > 0 ? static_cast<int64_t>(n) : 0;
  Tensor t = Tensor::empty({len}, opts.with_requires_grad(false));
  detail::visit_cpu_dtype(opts.dtype, "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < len; ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
  if (opts.requires_grad) t.set_requires_grad(true);
  return t;
}
inline Tensor arange(int64_t n, TensorOptions opts) { return arange(0.0, static_cast<double>(n), 1.0, opts); }

namespace detail {
template <typename G>
Tensor random_fill(const Shape& shape, TensorOptions opts, G&& draw, const char* op) {
  Tensor t = Tensor::empty(shape, opts.with_requires_grad(false));
  visit_float(opts.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data_ptr<T>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<T>(draw());
  });
  if (opts.requires_grad) t.set_requires_grad(true);
  return t;
}
}  // namespace detail

inline Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  return detail::random_fill(
      shape, opts, [&] { return g.normal(); }, "randn");
}
inline Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opts, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  return detail::random_fill(
      shape, opts, [&] { return lo + (hi - lo) * g.uniform(); }, "uniform");
}
inline Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  return uniform(shape, 0.0, 1.0, opts, gen);
}

template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape, TensorOptions opts) {
  NQ_CHECK(static_cast<int64_t>(data.size()) == numel_of(shape), "from_vector", "got ", data.size(),
           " values for shape ", shape_str(shape), " (", numel_of(shape), " elements)");
  Tensor t = Tensor::empty(shape, opts.with_requires_grad(false));
  detail::visit_cpu_dtype(opts.dtype, "from_vector", [&](auto tag) {
    using D = typename decltype(tag)::type;
    D* p = t.data_ptr<D>();
    for (size_t i = 0; i < data.size(); ++i) p[i] = static_cast<D>(data[i]);
  });
  if (opts.requires_grad) t.set_requires_grad(true);
  return t;
}
template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape) {
  return from_vector(data, shape, TensorOptions(dtype_of<T>()));
}

}  // namespace nq
