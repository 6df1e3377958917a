#pragma once
// Tensor factories.
#include <cmath>

#include "data.hpp"

namespace nq {

namespace detail {
// Factories that compute values on the host build a CUDA tensor on the CPU
// (same values, same generator draws) and copy it over: `make(cpu_opts)`
// builds it; the copy converts to opts.dtype on the device (bf16 included).
template <typename Make>
Tensor build_on_host(TensorOptions opts, Make&& make) {
  DType host_dtype = opts.dtype == kBFloat16 ? kFloat32 : opts.dtype;
  Tensor h = make(TensorOptions(host_dtype));
  Tensor t = Tensor::empty(h.shape(), opts.with_requires_grad(false));
  {
    NoGradGuard ng;
    t.copy_(h);
  }
  if (opts.requires_grad) t.set_requires_grad(true);
  return t;
}
}  // namespace detail

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
// *_like keep t's dtype and device.
inline Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
inline Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.options()); }
inline Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.options()); }
inline Tensor scalar_tensor(double value, TensorOptions opts) { return full({}, value, opts); }

inline Tensor arange(double start, double end, double step, TensorOptions opts) {
  NQ_CHECK(step != 0.0, "arange", "step must be nonzero");
  if (opts.device.is_cuda())
    return detail::build_on_host(opts, [&](TensorOptions h) { return arange(start, end, step, h); });
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
  // CUDA: drawn on the host in the same order, so CPU and CUDA get the same numbers.
  if (opts.device.is_cuda())
    return build_on_host(opts, [&](TensorOptions h) { return random_fill(shape, h, draw, op); });
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
  if (opts.device.is_cuda())
    return detail::build_on_host(opts, [&](TensorOptions h) { return from_vector(data, shape, h); });
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
