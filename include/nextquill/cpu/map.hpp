#pragma once
// map_n: out = f(in_0, ..., in_{N-1}) element-wise with numpy broadcasting,
// for any strides. Fully contiguous work is one flat loop, split across
// threads when it is big enough to pay for it.
#include <array>
#include <utility>

#include "../core/tensor.hpp"
#include "parallel.hpp"
#include "strided.hpp"

namespace nq::cpu {

// Every CPU kernel entry calls this first: a CUDA tensor that reaches a
// CPU-only kernel gets a clear error instead of a dereferenced device pointer.
inline void require_cpu(const Tensor& t, const char* op) {
  if (t.defined() && !t.device().is_cpu())
    fail(op, "no CUDA implementation for ", op, " (tensor on ", t.device().str(), ")");
}

template <typename T, size_t N, typename F>
Tensor map_n(const std::array<Tensor, N>& in, const char* op, F&& f) {
  Shape shape = in[0].shape();
  for (size_t k = 0; k < N; ++k) require_cpu(in[k], op);
  for (size_t k = 0; k < N; ++k) {
    NQ_CHECK(in[k].dtype() == in[0].dtype(), op, "dtype mismatch: ", in[0].brief(), " vs ", in[k].brief());
    NQ_CHECK(in[k].device() == in[0].device(), op, "device mismatch: ", in[0].device().str(), " vs ",
             in[k].device().str());
    if (k) shape = broadcast_shapes(shape, in[k].shape(), op);
  }
  Tensor out = Tensor::empty(shape, dtype_of<T>());
  std::array<Strides, N + 1> st;
  st[0] = out.strides();
  std::array<const T*, N> src;
  for (size_t k = 0; k < N; ++k) {
    st[k + 1] = broadcast_strides(in[k].shape(), in[k].strides(), shape);
    src[k] = in[k].template data_ptr<T>();
  }
  T* dst = out.data_ptr<T>();
  StridedLoop<N + 1> loop(shape, st);
  auto body = [&](std::array<int64_t, N + 1> o, int64_t n, std::array<int64_t, N + 1> s) {
    [&]<size_t... K>(std::index_sequence<K...>) {
      bool unit = ((s[K + 1] == 1) && ...);
      if (unit && s[0] == 1) {
        T* d = dst + o[0];
        for (int64_t i = 0; i < n; ++i) d[i] = f(src[K][o[K + 1] + i]...);
      } else {
        for (int64_t i = 0; i < n; ++i) dst[o[0] + i * s[0]] = f(src[K][o[K + 1] + i * s[K + 1]]...);
      }
    }
    (std::make_index_sequence<N>{});
  };
  if (loop.shape.size() == 1) {
    // One run: split it in chunks across threads.
    const int64_t n = loop.shape[0];
    std::array<int64_t, N + 1> s;
    for (size_t k = 0; k <= N; ++k) s[k] = loop.strides[k][0];
    parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t e) {
      std::array<int64_t, N + 1> o;
      for (size_t k = 0; k <= N; ++k) o[k] = b * s[k];
      body(o, e - b, s);
    });
  } else {
    loop.run({}, body);
  }
  return out;
}

}  // namespace nq::cpu
