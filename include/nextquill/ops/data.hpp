#pragma once
// Raw data movement without autograd: fill_, copy_ (broadcasting, converting
// dtype), item, to_vector. Optimizers and loaders use these under no_grad.
#include <cstring>

#include "../cpu/strided.hpp"
#include "api.hpp"

namespace nq {

namespace detail {
// f(type_tag<T>) for every dtype the CPU stores: float, double, int64.
template <typename F>
decltype(auto) visit_cpu_dtype(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::Float32:
      return f(type_tag<float>{});
    case DType::Float64:
      return f(type_tag<double>{});
    case DType::Int64:
      return f(type_tag<int64_t>{});
    default:
      break;
  }
  fail(op, "dtype ", dtype_name(d), " is not supported on CPU");
}

inline void check_inplace(const Tensor& t, const char* op) {
  NQ_CHECK(!(GradMode::is_enabled() && t.requires_grad()), op,
           "in-place write to a tensor that requires grad (", t.brief(),
           "); wrap it in nq::NoGradGuard or detach() it");
}
}  // namespace detail

inline Tensor& Tensor::fill_(double v) {
  detail::check_inplace(*this, "fill_");
  detail::visit_cpu_dtype(dtype(), "fill_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T val = static_cast<T>(v);
    cpu::StridedLoop<1> loop(shape(), {strides()});
    T* p = data_ptr<T>();
    loop.run({0}, [&](std::array<int64_t, 1> o, int64_t n, std::array<int64_t, 1> s) {
      for (int64_t i = 0; i < n; ++i) p[o[0] + i * s[0]] = val;
    });
  });
  return *this;
}

inline Tensor& Tensor::copy_(const Tensor& src) {
  detail::check_inplace(*this, "copy_");
  Shape bs = broadcast_shapes(src.shape(), shape(), "copy_");
  NQ_CHECK(bs == shape(), "copy_", "source ", shape_str(src.shape()), " does not broadcast to destination ",
           shape_str(shape()));
  detail::visit_cpu_dtype(dtype(), "copy_", [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    detail::visit_cpu_dtype(src.dtype(), "copy_", [&](auto stag) {
      using S = typename decltype(stag)::type;
      cpu::StridedLoop<2> loop(shape(), {strides(), broadcast_strides(src.shape(), src.strides(), shape())});
      D* d = data_ptr<D>();
      const S* s = src.data_ptr<S>();
      loop.run({0, 0}, [&](std::array<int64_t, 2> o, int64_t n, std::array<int64_t, 2> st) {
        if constexpr (std::is_same_v<D, S>) {
          if (st[0] == 1 && st[1] == 1) {
            std::memcpy(d + o[0], s + o[1], sizeof(D) * n);
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i) d[o[0] + i * st[0]] = static_cast<D>(s[o[1] + i * st[1]]);
      });
    });
  });
  return *this;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  std::vector<T> out(numel());
  if (out.empty()) return out;
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(out.data(), out.size() * sizeof(T), Device::cpu(), nullptr);
  impl->shape = shape();
  impl->strides = contiguous_strides(shape());
  impl->dtype = dtype_of<T>();
  NoGradGuard ng;
  Tensor(impl).copy_(*this);
  return out;
}

inline double Tensor::item() const {
  NQ_CHECK(numel() == 1, "item", "tensor of shape ", shape_str(shape()), " has ", numel(),
           " elements, expected exactly 1");
  return to_vector<double>()[0];
}

}  // namespace nq
