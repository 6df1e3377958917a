#pragma once
// scaled_dot_product_attention: softmax(scale * Q K^T + mask) V, fused.
//
// Work is split over the B*H (batch, head) pairs; each pair holds one (T,S)
// score tile at a time (a per-thread buffer, reused across calls), never a
// (B,H,T,S) tensor. The backward closure recomputes the tile from the saved
// per-row log-sum-exp L, so besides the inputs (kept as views, or as
// contiguous copies when BLAS cannot read their layout) the graph saves only
// O(B*H*T) values plus a (B,S) mask. Queries with no visible key output 0,
// have L = -inf and get/give zero gradient.
//
// Inside the parallel region each GEMM runs on one thread (OpenBLAS is the
// OpenMP build and does not nest), which is the intent: the pairs are the
// parallel work.
//
// CUDA tensors go to kernels/attention.cu (flash-style tiled kernels, fp32
// math, tensor cores for bf16); that graph saves q, k, v, the output and an
// fp32 (B,H,T) log-sum-exp.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <vector>

#include "../cpu/gemm.hpp"
#include "../cpu/parallel.hpp"
#include "../cuda/attention.hpp"
#include "matmul.hpp"
#include "softmax.hpp"

namespace nq {

namespace detail {

// Per-thread scratch tiles (slot 0: scores/probabilities, slot 1: dP/dS).
// Grown on demand and kept for the thread's lifetime. 64-byte aligned: Eigen's
// vectorised row ops (exp, sums) peel unaligned heads with scalar code, so a
// buffer whose alignment differed between threads would make results depend
// on which thread ran a (batch, head) pair. Allocation may throw, so callers
// catch inside the parallel region.
template <typename T>
T* attention_scratch(int slot, size_t n) {
  struct Buf {
    T* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf[2];
  Buf& b = buf[slot];
  if (b.n < n) {
    std::free(b.p);
    b.p = nullptr, b.n = 0;
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    b.p = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!b.p) throw std::bad_alloc();
    b.n = n;
  }
  return b.p;
}

// A (B,H,R,C) operand read per (b,h) as a row-major (R,C) matrix with leading
// dimension ld; the batch and head dims may have any stride (expand, or the
// (B,T,H,D)->(B,H,T,D) transpose of a fused qkv projection).
inline Tensor attention_operand(const Tensor& t) {
  Tensor d = t.detach();
  const bool unit_cols = d.stride(3) == 1 || d.size(3) == 1;
  const bool rows_ok = d.size(2) <= 1 || d.stride(2) >= d.size(3);
  const bool nonneg = d.stride(0) >= 0 && d.stride(1) >= 0;
  return unit_cols && rows_ok && nonneg ? d : d.contiguous();
}

template <typename T>
struct AttnMat {
  const T* base;
  int64_t sb, sh, ld;
  explicit AttnMat(const Tensor& t)
      : base(t.data_ptr<T>()), sb(t.stride(0)), sh(t.stride(1)), ld(t.stride(2)) {}
  cpu::MatRef<T> at(int64_t b, int64_t h, bool trans = false) const {
    return {base + b * sb + h * sh, ld, trans};
  }
};

// Shapes and options shared by forward and backward.
struct AttnGeom {
  int64_t B, H, T, S, D, Dv;
  double scale;
  bool causal;
  std::shared_ptr<const std::vector<unsigned char>> keep;  // (B,S) or null = all keys real
  // Keys j < visible_end(i) are causally visible to query i.
  int64_t visible_end(int64_t i) const {
    if (!causal) return S;
    return std::clamp<int64_t>(i + S - T + 1, 0, S);
  }
  // Causal attention works in blocks of query rows: block [i0, i1) needs only
  // keys [0, visible_end(i1 - 1)), so the masked upper triangle is never
  // multiplied (about half the FLOPs at T = S). Without causality one block.
  int64_t row_block() const { return causal ? std::min<int64_t>(T, 64) : std::max<int64_t>(T, 1); }
};

// Prepares one score row for the vectorised exp (row_exp, softmax.hpp): keys
// hidden by the padding mask within [0, end) become -inf (exp gives exactly 0)
// and the causally hidden tail [end, S) becomes 0, so the exp runs branch-free
// over the dense prefix [0, end). Returns whether any key in [0, end) is kept.
template <typename T>
bool attention_mask_row(T* row, int64_t end, int64_t S, const unsigned char* keep) {
  std::fill(row + end, row + S, T(0));
  if (!keep) return end > 0;
  bool any = false;
  for (int64_t j = 0; j < end; ++j) {
    any |= keep[j] != 0;
    row[j] = keep[j] ? row[j] : -std::numeric_limits<T>::infinity();
  }
  return any;
}

// Rows [i0, i0+rows) of a row-major operand.
template <typename T>
cpu::MatRef<T> rows_from(cpu::MatRef<T> m, int64_t i0) {
  return {m.data + i0 * m.ld, m.ld, m.trans};
}

// Fills P[i0:i0+rows, 0:kend] (row stride S) with scale * Q K^T for pair (b,h).
template <typename T>
void attention_scores(const AttnGeom& g, const AttnMat<T>& q, const AttnMat<T>& k, int64_t b, int64_t h,
                      int64_t i0, int64_t rows, int64_t kend, T* P) {
  if (kend == 0) return;
  cpu::gemm<T>(rows, kend, g.D, static_cast<T>(g.scale), rows_from(q.at(b, h), i0), k.at(b, h, true), T(0),
               P + i0 * g.S, g.S);
}

// Gradients of q, k, v (undefined where not needed) for upstream `grad`.
inline std::vector<Tensor> attention_backward(const AttnGeom& g, const Tensor& qs, const Tensor& ks,
                                              const Tensor& vs, const Tensor& lse, const Tensor& grad,
                                              bool need_q, bool need_k, bool need_v) {
  const DType dt = qs.dtype();
  Tensor dO = attention_operand(grad);
  Tensor dq, dk, dv;
  if (need_q) dq = zeros({g.B, g.H, g.T, g.D}, dt);
  if (need_k) dk = zeros({g.B, g.H, g.S, g.D}, dt);
  if (need_v) dv = zeros({g.B, g.H, g.S, g.Dv}, dt);
  std::atomic<bool> failed{false};
  visit_float(dt, "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const AttnMat<T> Q(qs), K(ks), V(vs), GO(dO);
    const T* L = lse.data_ptr<T>();
    T* dQ = need_q ? dq.data_ptr<T>() : nullptr;
    T* dK = need_k ? dk.data_ptr<T>() : nullptr;
    T* dV = need_v ? dv.data_ptr<T>() : nullptr;
    const T sc = static_cast<T>(g.scale);
    (void)gemm_backend();  // resolve NQ_GEMM here: nothing may throw inside the parallel loop
    cpu::parallel_items(g.B * g.H, [&](int64_t bh) {
      try {
        const int64_t b = bh / g.H, h = bh % g.H;
        const size_t tile = static_cast<size_t>(g.T * g.S);
        T* P = attention_scratch<T>(0, tile);
        T* dS = attention_scratch<T>(1, tile);
        const unsigned char* keep = g.keep ? g.keep->data() + b * g.S : nullptr;
        const T* Lr = L + bh * g.T;
        const int64_t QB = g.row_block();
        for (int64_t i0 = 0; i0 < g.T; i0 += QB) {
          const int64_t rows = std::min(QB, g.T - i0), kend = g.visible_end(i0 + rows - 1);
          if (kend == 0) continue;  // no query of the block sees a key: no gradient
          attention_scores(g, Q, K, b, h, i0, rows, kend, P);
          // P = exp(S - L) on visible keys; 0 on masked keys and empty rows (L = -inf).
          // Vectorised: masked keys are set to -inf first, so one row_exp covers the
          // visible prefix (masked entries come out exactly 0).
          for (int64_t i = i0; i < i0 + rows; ++i) {
            T* row = P + i * g.S;
            const int64_t end = std::isinf(Lr[i]) && Lr[i] < 0 ? 0 : g.visible_end(i);
            attention_mask_row(row, end, kend, keep);
            row_exp(row, Lr[i], row, end);
          }
          const cpu::MatRef<T> Pt{P + i0 * g.S, g.S, true};
          const T beta = i0 == 0 ? T(0) : T(1);  // key-side gradients accumulate over blocks
          if (need_v)                            // dV[0:kend] += P_blk^T dO_blk
            cpu::gemm<T>(kend, g.Dv, rows, T(1), Pt, rows_from(GO.at(b, h), i0), beta, dV + bh * g.S * g.Dv,
                         g.Dv);
          if (!need_q && !need_k) continue;
          // dP = dO V^T, then dS = P * (dP - rowsum(P * dP)) in place; rowsum(P * dP)
          // equals rowsum(dO * O), so the output need not be saved.
          T* dSb = dS + i0 * g.S;
          cpu::gemm<T>(rows, kend, g.Dv, T(1), rows_from(GO.at(b, h), i0), V.at(b, h, true), T(0), dSb, g.S);
          for (int64_t i = 0; i < rows; ++i) {
            const T* p = P + (i0 + i) * g.S;
            T* d = dSb + i * g.S;
            const double delta = lane_sum(kend, [&](int64_t j) { return static_cast<double>(p[j]) * d[j]; });
            const T dl = static_cast<T>(delta);
            for (int64_t j = 0; j < kend; ++j) d[j] = p[j] * (d[j] - dl);
          }
          if (need_q)  // dQ_blk = scale * dS_blk K[0:kend]
            cpu::gemm<T>(rows, g.D, kend, sc, cpu::MatRef<T>{dSb, g.S, false}, K.at(b, h), T(0),
                         dQ + (bh * g.T + i0) * g.D, g.D);
          if (need_k)  // dK[0:kend] += scale * dS_blk^T Q_blk
            cpu::gemm<T>(kend, g.D, rows, sc, cpu::MatRef<T>{dSb, g.S, true}, rows_from(Q.at(b, h), i0), beta,
                         dK + bh * g.S * g.D, g.D);
        }
      } catch (...) {
        failed = true;
      }
    });
  });
  NQ_CHECK(!failed, "scaled_dot_product_attention", "could not allocate a (T,S) = [", g.T, ",", g.S,
           "] score tile in backward");
  return {dq, dk, dv};
}

}  // namespace detail

inline Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const AttentionOptions& opts) {
  constexpr const char* op = "scaled_dot_product_attention";
  NQ_CHECK(q.defined() && k.defined() && v.defined(), op, "q, k and v must be defined");
  NQ_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op,
           "expected q (B,H,T,D), k (B,H,S,D), v (B,H,S,Dv), got q ", shape_str(q.shape()), ", k ",
           shape_str(k.shape()), ", v ", shape_str(v.shape()));
  NQ_CHECK(q.size(0) == k.size(0) && q.size(0) == v.size(0) && q.size(1) == k.size(1) &&
               q.size(1) == v.size(1) && k.size(2) == v.size(2) && q.size(3) == k.size(3),
           op, "shapes do not match: q ", shape_str(q.shape()), " (B,H,T,D), k ", shape_str(k.shape()),
           " (B,H,S,D), v ", shape_str(v.shape()), " (B,H,S,Dv)");
  NQ_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, "dtype mismatch: q ", q.brief(), ", k ",
           k.brief(), ", v ", v.brief());

#if NEXTQUILL_WITH_CUDA
  // CUDA: fused flash-style kernels (kernels/attention.cu); the graph saves q, k, v,
  // the output and the fp32 per-row log-sum-exp, never a (T,S) matrix.
  if (q.device().is_cuda() || k.device().is_cuda() || v.device().is_cuda()) {
    NQ_CHECK(q.device() == k.device() && q.device() == v.device(), op,
             "q, k, v must be on one device, got q on ", q.device().str(), ", k on ", k.device().str(),
             ", v on ", v.device().str());
    Tensor mask;
    if (opts.key_padding_mask.defined()) {
      NQ_CHECK(opts.key_padding_mask.device() == q.device(), op, "key_padding_mask is on ",
               opts.key_padding_mask.device().str(), " but q, k, v are on ", q.device().str());
      mask = opts.key_padding_mask.detach().contiguous();
    }
    const double scale =
        opts.scale ? *opts.scale : (q.size(3) > 0 ? 1.0 / std::sqrt(static_cast<double>(q.size(3))) : 1.0);
    const bool causal = opts.causal;
    Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
    std::vector<Tensor> r = cuda::attention_forward(qc, kc, vc, mask, scale, causal);
    Tensor out = r[0], lse = r[1];    // (B,H,T,Dv), (B,H,T) float32
    Tensor saved_out = out.detach();  // a separate handle: the closure must not own `out`'s autograd node
    return record(op, out, {q, k, v},
                  [qc, kc, vc, saved_out, lse, mask, scale, causal](const Tensor& grad,
                                                                    const Node& n) -> std::vector<Tensor> {
                    return cuda::attention_backward(qc, kc, vc, saved_out, lse, grad.contiguous(), mask,
                                                    scale, causal, n.needs(0), n.needs(1), n.needs(2));
                  });
  }
#endif

  detail::AttnGeom g;
  g.B = q.size(0), g.H = q.size(1), g.T = q.size(2), g.S = k.size(2), g.D = q.size(3), g.Dv = v.size(3);
  g.scale = opts.scale ? *opts.scale : (g.D > 0 ? 1.0 / std::sqrt(static_cast<double>(g.D)) : 1.0);
  g.causal = opts.causal;
  if (opts.key_padding_mask.defined()) {
    const Tensor& m = opts.key_padding_mask;
    NQ_CHECK(m.dim() == 2 && m.size(0) == g.B && m.size(1) == g.S, op, "key_padding_mask ",
             shape_str(m.shape()), " must be (B,S) = [", g.B, ",", g.S, "] for q ", shape_str(q.shape()),
             ", k ", shape_str(k.shape()));
    NQ_CHECK(m.dtype() == kInt64 || m.dtype() == kFloat32 || m.dtype() == kFloat64, op,
             "key_padding_mask must be int64 or float, got ", m.brief());
    std::vector<double> mv = m.to_vector<double>();
    auto keep = std::make_shared<std::vector<unsigned char>>(mv.size());
    for (size_t i = 0; i < mv.size(); ++i) (*keep)[i] = mv[i] != 0.0;
    g.keep = std::move(keep);
  }

  Tensor qs = detail::attention_operand(q), ks = detail::attention_operand(k),
         vs = detail::attention_operand(v);
  const DType dt = q.dtype();
  Tensor out = zeros({g.B, g.H, g.T, g.Dv}, dt);
  Tensor lse = Tensor::empty({g.B, g.H, g.T}, dt);  // saved: O(B*H*T)
  std::atomic<bool> failed{false};

  visit_float(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const detail::AttnMat<T> Q(qs), K(ks), V(vs);
    T* O = out.data_ptr<T>();
    T* L = lse.data_ptr<T>();
    (void)gemm_backend();  // resolve NQ_GEMM here: nothing may throw inside the parallel loop
    cpu::parallel_items(g.B * g.H, [&](int64_t bh) {
      try {
        const int64_t b = bh / g.H, h = bh % g.H;
        T* P = detail::attention_scratch<T>(0, static_cast<size_t>(g.T * g.S));
        const unsigned char* keep = g.keep ? g.keep->data() + b * g.S : nullptr;
        T* Lr = L + bh * g.T;
        const int64_t QB = g.row_block();
        for (int64_t i0 = 0; i0 < g.T; i0 += QB) {
          const int64_t rows = std::min(QB, g.T - i0), kend = g.visible_end(i0 + rows - 1);
          detail::attention_scores(g, Q, K, b, h, i0, rows, kend, P);
          // Row softmax with the vectorised helpers of softmax.hpp (scalar std::exp
          // per score dominated the forward): masked keys become -inf, then max,
          // exp and the double sum run over the dense visible prefix [0, end).
          // lane_sum's order depends only on end, so results do not depend on the
          // thread count.
          for (int64_t i = i0; i < i0 + rows; ++i) {
            T* row = P + i * g.S;
            const int64_t end = g.visible_end(i);
            if (!detail::attention_mask_row(row, end, kend, keep)) {  // no visible key: output row stays 0
              std::fill(row, row + end, T(0));
              Lr[i] = -std::numeric_limits<T>::infinity();
              continue;
            }
            const T mx = detail::row_max(row, end);
            detail::row_exp(row, mx, row, end);
            const double sum = detail::lane_sum(end, [&](int64_t j) { return static_cast<double>(row[j]); });
            detail::RowArrayMut<T>(row, end) *= static_cast<T>(1.0 / sum);
            Lr[i] = mx + static_cast<T>(std::log(sum));
          }
          if (kend > 0)
            cpu::gemm<T>(rows, g.Dv, kend, T(1), cpu::MatRef<T>{P + i0 * g.S, g.S, false}, V.at(b, h), T(0),
                         O + (bh * g.T + i0) * g.Dv, g.Dv);
        }
      } catch (...) {
        failed = true;
      }
    });
  });
  NQ_CHECK(!failed, op, "could not allocate a (T,S) = [", g.T, ",", g.S, "] score tile");

  return record(
      op, out, {q, k, v}, [g, qs, ks, vs, lse](const Tensor& grad, const Node& n) -> std::vector<Tensor> {
        return detail::attention_backward(g, qs, ks, vs, lse, grad, n.needs(0), n.needs(1), n.needs(2));
      });
}

}  // namespace nq
