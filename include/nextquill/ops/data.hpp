#pragma once
// Raw data movement without autograd: fill_, copy_ and add_ (broadcasting,
// converting dtype), item, to_vector. Optimizers, loaders and the backward
// pass's gradient accumulation use these under no_grad.
#include <cstring>

#include "../cpu/strided.hpp"
#include "../cuda/core.hpp"
#include "api.hpp"

namespace nq {

namespace detail {
// f(type_tag<T>) for every dtype the CPU stores: float, double, int64, and
// bfloat16 (which the CPU only fills, copies and converts).
template <typename F>
decltype(auto) visit_cpu_dtype(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::Float32:
      return f(type_tag<float>{});
    case DType::Float64:
      return f(type_tag<double>{});
    case DType::Int64:
      return f(type_tag<int64_t>{});
    case DType::BFloat16:
      return f(type_tag<bfloat16>{});
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

#if NEXTQUILL_WITH_CUDA
// copy_ with a CUDA tensor on either side. Same device: one strided kernel
// (broadcast, dtype conversion). Host -> device: upload a contiguous copy of
// src, then convert/scatter on the device. Device -> host: convert/gather on
// the device into dst's dtype and shape, then download. Across two devices:
// stage through the host.
inline void copy_cuda(const Tensor& dst, const Tensor& src) {
  NoGradGuard ng;
  const Device dd = dst.device(), sd = src.device();
  if (dd == sd) {
    cuda::copy_strided(dst, src, broadcast_strides(src.shape(), src.strides(), dst.shape()));
    return;
  }
  if (sd.is_cpu()) {  // host -> device
    Tensor hs = src;
    if (!src.is_contiguous()) {
      hs = Tensor::empty(src.shape(), src.dtype());
      hs.copy_(src);
    }
    const size_t nbytes = static_cast<size_t>(hs.numel()) * element_size(hs.dtype());
    if (dst.is_contiguous() && dst.dtype() == hs.dtype() && dst.shape() == hs.shape()) {
      cuda::copy_h2d(dst.raw_data_ptr(), hs.raw_data_ptr(), nbytes, dd.index);
      return;
    }
    Tensor ds = Tensor::empty(hs.shape(), TensorOptions(hs.dtype()).with_device(dd));
    cuda::copy_h2d(ds.raw_data_ptr(), hs.raw_data_ptr(), nbytes, dd.index);
    cuda::copy_strided(dst, ds, broadcast_strides(ds.shape(), ds.strides(), dst.shape()));
    return;
  }
  if (dd.is_cpu()) {  // device -> host
    Tensor ds = src;
    if (!(src.is_contiguous() && src.dtype() == dst.dtype() && src.shape() == dst.shape())) {
      ds = Tensor::empty(dst.shape(), TensorOptions(dst.dtype()).with_device(sd));
      cuda::copy_strided(ds, src, broadcast_strides(src.shape(), src.strides(), dst.shape()));
    }
    const size_t nbytes = static_cast<size_t>(ds.numel()) * element_size(ds.dtype());
    if (dst.is_contiguous()) {
      cuda::copy_d2h(dst.raw_data_ptr(), ds.raw_data_ptr(), nbytes, sd.index);
      return;
    }
    Tensor h = Tensor::empty(dst.shape(), dst.dtype());
    cuda::copy_d2h(h.raw_data_ptr(), ds.raw_data_ptr(), nbytes, sd.index);
    Tensor(dst.impl_ptr()).copy_(h);
    return;
  }
  // cuda:i -> cuda:j: a contiguous host copy in between.
  Tensor h = Tensor::empty(src.shape(), src.dtype());
  copy_cuda(h, src);
  copy_cuda(dst, h);
}
#endif
}  // namespace detail

inline Tensor& Tensor::fill_(double v) {
  detail::check_inplace(*this, "fill_");
#if NEXTQUILL_WITH_CUDA
  if (device().is_cuda()) {
    cuda::fill(*this, v);
    return *this;
  }
#endif
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

inline Tensor& Tensor::zero_() { return fill_(0.0); }

namespace detail {
// The shared front and loop of copy_ and add_: dst is writable and src
// broadcasts to it; f(D* d, const S* s, offsets, n, strides) then runs over
// dst's shape on the CPU, for every pair of stored dtypes.
inline void check_write_from(const Tensor& dst, const Tensor& src, const char* op) {
  check_inplace(dst, op);
  Shape bs = broadcast_shapes(src.shape(), dst.shape(), op);
  NQ_CHECK(bs == dst.shape(), op, "source ", shape_str(src.shape()), " does not broadcast to destination ",
           shape_str(dst.shape()));
}
template <typename F>
void cpu_write_from(const Tensor& dst, const Tensor& src, const char* op, F f) {
  visit_cpu_dtype(dst.dtype(), op, [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    visit_cpu_dtype(src.dtype(), op, [&](auto stag) {
      using S = typename decltype(stag)::type;
      cpu::StridedLoop<2> loop(dst.shape(),
                               {dst.strides(), broadcast_strides(src.shape(), src.strides(), dst.shape())});
      D* d = dst.data_ptr<D>();
      const S* s = src.data_ptr<S>();
      loop.run({0, 0},
               [&](std::array<int64_t, 2> o, int64_t n, std::array<int64_t, 2> st) { f(d, s, o, n, st); });
    });
  });
}
}  // namespace detail

inline Tensor& Tensor::copy_(const Tensor& src) {
  detail::check_write_from(*this, src, "copy_");
#if NEXTQUILL_WITH_CUDA
  if (device().is_cuda() || src.device().is_cuda()) {
    detail::copy_cuda(*this, src);
    return *this;
  }
#endif
  detail::cpu_write_from(*this, src, "copy_", [](auto* d, const auto* s, auto o, int64_t n, auto st) {
    using D = std::remove_pointer_t<decltype(d)>;
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s)>>;
    if constexpr (std::is_same_v<D, S>) {
      if (st[0] == 1 && st[1] == 1) {
        std::memcpy(d + o[0], s + o[1], sizeof(D) * n);
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) d[o[0] + i * st[0]] = static_cast<D>(s[o[1] + i * st[1]]);
  });
  return *this;
}

// *this += src in place: one pass over *this (one kernel on CUDA) instead of
// add() into a temporary and copy_ back. On the CPU the sum is formed in
// double and rounded once to this tensor's dtype; on CUDA the source is first
// converted to this dtype (to float for bf16), then added.
inline Tensor& Tensor::add_(const Tensor& src) {
  detail::check_write_from(*this, src, "add_");
  if (src.device() != device()) {  // stage the source on this tensor's device
    NoGradGuard ng;
    return add_(src.to(device()));
  }
#if NEXTQUILL_WITH_CUDA
  if (device().is_cuda()) {
    cuda::accumulate_strided(*this, src, broadcast_strides(src.shape(), src.strides(), shape()));
    return *this;
  }
#endif
  detail::cpu_write_from(*this, src, "add_", [](auto* d, const auto* s, auto o, int64_t n, auto st) {
    using D = std::remove_pointer_t<decltype(d)>;
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s)>>;
    if constexpr (std::is_same_v<D, S> && !std::is_same_v<D, bfloat16>) {
      // The native sum is the same correctly rounded value; unit strides vectorise.
      if (st[0] == 1 && st[1] == 1)
        for (int64_t i = 0; i < n; ++i) d[o[0] + i] += s[o[1] + i];
      else
        for (int64_t i = 0; i < n; ++i) d[o[0] + i * st[0]] += s[o[1] + i * st[1]];
      return;
    }
    using A = std::conditional_t<std::is_same_v<D, int64_t> && std::is_same_v<S, int64_t>, int64_t, double>;
    for (int64_t i = 0; i < n; ++i) {
      D& x = d[o[0] + i * st[0]];
      x = static_cast<D>(static_cast<A>(x) + static_cast<A>(s[o[1] + i * st[1]]));
    }
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
