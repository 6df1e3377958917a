#pragma once
// Index geometry for element-wise kernels over strided operands (core kernels:
// copy.cu, elementwise.cu). The host coalesces dims exactly like
// cpu::StridedLoop (drops size-1 dims, merges dims every operand walks as one)
// and the kernel turns a linear index over the (row-major) output into one
// element offset per operand. Operand 0 is the output.
#include <array>

#include "common.cuh"

namespace nq::cuda::detail {

constexpr int kMaxDims = 8;

template <int N>
struct Geom {
  int nd = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[N][kMaxDims] = {};

  // Element offsets (relative to each operand's base pointer) of linear index i.
  __device__ __forceinline__ void offsets(int64_t i, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t idx = i % size[d];
      i /= size[d];
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += idx * stride[k][d];
    }
  }
};

template <int N>
Geom<N> make_geom(const Shape& shape, const std::array<Strides, N>& st, const char* op) {
  Shape s;
  std::array<Strides, N> m;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!s.empty()) {
      bool merge = true;
      for (int k = 0; k < N; ++k) merge = merge && m[k].back() == st[k][d] * shape[d];
      if (merge) {
        s.back() *= shape[d];
        for (int k = 0; k < N; ++k) m[k].back() = st[k][d];
        continue;
      }
    }
    s.push_back(shape[d]);
    for (int k = 0; k < N; ++k) m[k].push_back(st[k][d]);
  }
  NQ_CHECK(static_cast<int>(s.size()) <= kMaxDims, op, "shape ", shape_str(shape), " has ", s.size(),
           " dims after merging; CUDA element-wise kernels take at most ", kMaxDims,
           " (make the operands contiguous first)");
  Geom<N> g;
  g.nd = static_cast<int>(s.size());
  for (int d = 0; d < g.nd; ++d) {
    g.size[d] = s[d];
    for (int k = 0; k < N; ++k) g.stride[k][d] = m[k][d];
  }
  return g;
}

}  // namespace nq::cuda::detail
