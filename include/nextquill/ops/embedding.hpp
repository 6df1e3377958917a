#pragma once
// embedding: a row gather from weight (V, C) by int64 ids of any shape, giving
// (..., C). The weight is read through its strides (a transposed, tied weight
// is not copied). Backward scatter-adds gradient rows into a zero (V, C); it
// is split over columns, so repeated ids never race and the sum order is fixed.
//
// A CUDA weight runs kernels/embedding.cu. Its ids may be on the same device
// (checked there: an out-of-range id throws after one 8-byte read-back, which
// waits for the stream) or on the CPU (checked here, then copied over). The
// backward adds with fp32 atomics (repeated ids: sum order not fixed).
#include <algorithm>
#include <cstring>
#include <string>

#include "../cpu/parallel.hpp"
#include "../cuda/nn.hpp"
#include "matmul.hpp"

namespace nq {

namespace detail {

// "[i,j,...]": the multi-index of flat position `flat` in `shape`.
inline std::string index_str(int64_t flat, const Shape& shape) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return shape_str(idx);
}

}  // namespace detail

inline Tensor embedding(const Tensor& weight, const Tensor& ids) {
  NQ_CHECK(weight.dim() == 2, "embedding", "weight must be (V, C), got ", shape_str(weight.shape()));
  NQ_CHECK(ids.dtype() == kInt64, "embedding", "ids must be int64, got ", dtype_name(ids.dtype()));
  const int64_t V = weight.size(0), C = weight.size(1);
  auto check_ids = [&](const int64_t* id, int64_t N) {
    for (int64_t i = 0; i < N; ++i)  // validated up front: parallel loops must not throw
      NQ_CHECK(id[i] >= 0 && id[i] < V, "embedding", "id ", id[i], " at position ",
               detail::index_str(i, ids.shape()), " of ids ", shape_str(ids.shape()), " is out of range [0, ",
               V, ")");
  };
#if NEXTQUILL_WITH_CUDA
  if (weight.device().is_cuda()) {
    Tensor idd;  // (...) on the weight's device, contiguous, checked
    if (ids.device().is_cpu()) {
      Tensor idh = ids.contiguous();
      check_ids(idh.data_ptr<int64_t>(), idh.numel());
      idd = idh.to(weight.device());  // validated on the host: the kernel's own check then never fires
    } else {
      NQ_CHECK(ids.device() == weight.device(), "embedding", "ids are on ", ids.device().str(),
               " but weight is on ", weight.device().str());
      idd = ids.detach().contiguous();
    }
    Tensor out = cuda::embedding_forward(weight.detach().contiguous(), idd);  // (..., C); throws on a bad id
    DType dt = weight.dtype();
    return record("embedding", out, {weight},
                  [idd, V, dt](const Tensor& g, const Node& n) -> std::vector<Tensor> {
                    if (!n.needs(0)) return {Tensor()};
                    return {cuda::embedding_backward(g.contiguous(), idd, V, dt)};
                  });
  }
#endif
  NQ_CHECK(ids.device().is_cpu(), "embedding", "ids are on ", ids.device().str(), " but weight is on ",
           weight.device().str());
  Tensor idc = ids.contiguous();  // (N) in row-major order
  const int64_t N = idc.numel();
  const int64_t* id = idc.data_ptr<int64_t>();
  check_ids(id, N);
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, weight.dtype());  // (N, C)
  visit_float(weight.dtype(), "embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* w = weight.data_ptr<T>();
    const int64_t s0 = weight.stride(0), s1 = weight.stride(1);
    T* o = out.data_ptr<T>();
    cpu::parallel_for(0, N, std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* src = w + id[i] * s0;
        T* dst = o + i * C;
        if (s1 == 1) {
          if (C) std::memcpy(dst, src, sizeof(T) * C);
        } else {
          for (int64_t c = 0; c < C; ++c) dst[c] = src[c * s1];
        }
      }
    });
  });
  Tensor ids_saved = idc.detach();
  DType dt = weight.dtype();
  return record("embedding", out, {weight},
                [ids_saved, V, C, N, dt](const Tensor& g, const Node& n) -> std::vector<Tensor> {
                  if (!n.needs(0)) return {Tensor()};
                  Tensor gw = zeros({V, C}, dt);
                  Tensor gc = g.contiguous();  // (N, C)
                  const int64_t* id = ids_saved.data_ptr<int64_t>();
                  visit_float(dt, "embedding", [&](auto tag) {
                    using T = typename decltype(tag)::type;
                    const T* gp = gc.data_ptr<T>();
                    T* wp = gw.data_ptr<T>();
                    // Each chunk owns columns [c0, c1) of every row: no two threads add into one cell.
                    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(N, 1));
                    cpu::parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
                      for (int64_t i = 0; i < N; ++i) {
                        const T* src = gp + i * C;
                        T* dst = wp + id[i] * C;
                        for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
                      }
                    });
                  });
                  return {gw};
                });
}

}  // namespace nq
