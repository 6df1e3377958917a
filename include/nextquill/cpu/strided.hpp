#pragma once
// The one loop every element-wise CPU kernel runs on: walk an n-d index
// space where each of N operands has its own strides (0 for a broadcast dim).
// Dims that are contiguous for every operand are merged first, so the common
// case (all contiguous) becomes one flat loop, and the innermost dim is handed
// to the kernel as a (length, strides) run it can vectorise.
#include <array>
#include <cstdint>
#include <vector>

#include "../core/shape.hpp"

namespace nq::cpu {

template <size_t N>
struct StridedLoop {
  Shape shape;                     // coalesced
  std::array<Strides, N> strides;  // coalesced, per operand

  StridedLoop(const Shape& s, const std::array<Strides, N>& st) {
    // Drop size-1 dims, then merge dim i into i+1 when every operand steps
    // through them as one.
    for (size_t d = 0; d < s.size(); ++d) {
      if (s[d] == 1) continue;
      if (!shape.empty()) {
        bool merge = true;
        for (size_t k = 0; k < N; ++k) merge = merge && strides[k].back() == st[k][d] * s[d];
        if (merge) {
          shape.back() *= s[d];
          for (size_t k = 0; k < N; ++k) strides[k].back() = st[k][d];
          continue;
        }
      }
      shape.push_back(s[d]);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(st[k][d]);
    }
    if (shape.empty()) {  // scalar
      shape.push_back(1);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  int64_t numel() const { return numel_of(shape); }

  // f(offsets, n, inner_strides): process a run of n elements starting at
  // `offsets` (element offsets per operand), stepping by inner_strides.
  template <typename F>
  void run(std::array<int64_t, N> base, F&& f) const {
    const size_t nd = shape.size();
    const int64_t inner = shape[nd - 1];
    std::array<int64_t, N> inner_st;
    for (size_t k = 0; k < N; ++k) inner_st[k] = strides[k][nd - 1];
    if (numel() == 0) return;
    int64_t outer = numel() / inner;
    std::vector<int64_t> idx(nd, 0);
    std::array<int64_t, N> off = base;
    for (int64_t o = 0; o < outer; ++o) {
      f(off, inner, inner_st);
      // Increment the multi-index over dims [0, nd-1).
      for (size_t d = nd - 1; d-- > 0;) {
        ++idx[d];
        for (size_t k = 0; k < N; ++k) off[k] += strides[k][d];
        if (idx[d] < shape[d]) break;
        for (size_t k = 0; k < N; ++k) off[k] -= strides[k][d] * shape[d];
        idx[d] = 0;
      }
    }
  }
};

}  // namespace nq::cpu
