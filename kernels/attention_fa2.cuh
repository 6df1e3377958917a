#pragma once
// FlashAttention-2-style forward for bfloat16 (included by attention.cu, after
// the simple kernels; uses their Geom and kOp). Scope: bf16, D == Dv in
// {64, 128}, contiguous (B,H,T,D) with 16-byte aligned bases; any T, S, causal
// or not, key padding mask, custom scale. Everything else (and the backward,
// for now) uses the WMMA path in attention_tc.cuh or the simple kernels.
//
// Why this structure: the WMMA path stages every 64x64 score tile in shared
// memory (store, softmax, reload as P), which costs more shared-memory traffic
// than the products. Here scores never leave registers:
//   * CTA = 4 warps = one (b,h) and 64 query rows; warp w owns rows 16w..16w+15.
//   * Q (16 x D per warp) is loaded once into registers as mma A fragments
//     (ldmatrix.x4).
//   * Loop over 64-key tiles of K and V, double-buffered in shared memory with
//     cp.async (tile t+1 is in flight while tile t is used). Rows past S are
//     zero-filled by cp.async (src-size 0), so padding rows are 0, not garbage.
//   * S = Q K^T with mma.sync m16n8k16 (bf16 in, fp32 accumulate) in registers;
//     masks (key padding, causal, j >= S) applied per element in registers;
//     online softmax with row max/sum reduced over the 4 lanes of a quad;
//     P rounded to bf16 and reused directly as the A fragment of O += P V
//     (the C layout of two adjacent n8 tiles is the A layout of one k16 chunk),
//     V read with ldmatrix.trans.
//   * Key tiles above the causal diagonal are skipped (same bound as the other
//     kernels), and the per-element mask is only evaluated on tiles that need
//     it (edge of S, padding mask, diagonal).
// Semantics match attention_tc.cuh fwd_kernel: scores scaled by g.scale,
// exp via exp2 of log2e-prescaled scores (same values up to rounding), the row
// sum l uses the bf16-rounded P that the P V product sees, lse = m + log(l)
// (natural log units), rows with no visible key give O = 0 and lse = -inf.
//
// Budget (per CTA of 128 threads): shared memory = Q tile + 2 x (K,V) tiles,
// each 64 x (D+8) bf16 (the +8 pad makes row stride 16 B off a 128 B multiple,
// so ldmatrix's 8 row addresses hit 8 distinct 16 B bank groups):
// D=64: 5 x 9216 = 46080 B; D=128: 5 x 17408 = 87040 B (dynamic, opted in).
// Registers per thread: Q frags D/4, S acc 32 fp32, O acc D/2 fp32, plus
// row stats: ~100 (D=64) / ~170 (D=128) live values; check -Xptxas=-v for
// no spills.
//
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 fragments (PTX ISA,
// "Matrix Fragments for mma.m16n8k16 with floating point type"); lane l,
// g = l / 4 (groupID), t = l % 4 (thread in group):
//   A (16x16, row-major), 4 x b32 regs each holding 2 bf16 (low half = lower col):
//     a0: (row g,   cols 2t, 2t+1)     a1: (row g+8, cols 2t, 2t+1)
//     a2: (row g,   cols 2t+8, 2t+9)   a3: (row g+8, cols 2t+8, 2t+9)
//   B (16x8, "col" = stored n-major, i.e. B^T row-major), 2 x b32 regs:
//     b0: (k 2t, 2t+1; n g)            b1: (k 2t+8, 2t+9; n g)
//   C/D (16x8 fp32), 4 regs:
//     c0, c1: (row g, cols 2t, 2t+1)   c2, c3: (row g+8, cols 2t, 2t+1)
// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lanes 8i..8i+7 give the 8 row
// addresses (16 B each) of matrix i; destination reg i of lane l holds matrix
// i's (row l/4, cols 2(l%4), 2(l%4)+1). With .trans it holds (rows 2(l%4),
// 2(l%4)+1; col l/4) instead, i.e. the fragment of the transposed matrix.
#include <cuda_bf16.h>

namespace nq::cuda {
namespace {
namespace fa2 {

using bf16 = __nv_bfloat16;
constexpr int BM = 64;         // query rows per CTA
constexpr int BN = 64;         // keys per tile
constexpr int kThreads = 128;  // 4 warps x 16 query rows
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
struct Lay {
  static constexpr int LD = D + 8;                                // bf16 elements per smem row
  static constexpr size_t tile = size_t(BN) * LD * sizeof(bf16);  // one 64-row tile
  static constexpr size_t bytes = 5 * tile;                       // Q, K[2], V[2]
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte cp.async global -> shared; src_bytes = 0 zero-fills the 16 bytes.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(addr)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(addr)));
}

// d += a * b, m16n8k16, bf16 inputs, fp32 accumulate (layouts in the header comment).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Copies rows [r0, r0+64) of a (n_rows, D) bf16 matrix into dst (64, LD) with
// cp.async, zero-filling rows >= n_rows. 128 threads, 16 B (8 bf16) each.
template <int D>
__device__ __forceinline__ void load_tile_async(bf16* dst, const bf16* src, int r0, int n_rows) {
  constexpr int CH = D / 8;  // 16-byte chunks per row
#pragma unroll
  for (int e = threadIdx.x; e < BN * CH; e += kThreads) {
    const int r = e / CH, c = (e % CH) * 8, row = r0 + r;
    const bool ok = row < n_rows;
    // A valid (in-bounds) address even when zero-filling.
    const bf16* s = src + (ok ? static_cast<int64_t>(row) * D + c : 0);
    cp_async16(dst + r * Lay<D>::LD + c, s, ok ? 16 : 0);
  }
}

// ------------------------------------------------------------------ forward
template <int D>
__global__ void __launch_bounds__(kThreads)
    fwd_kernel(Geom g, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
               bf16* __restrict__ o, float* __restrict__ lse) {
  using L = Lay<D>;
  constexpr int LD = L::LD;
  constexpr int KC = D / 16;  // k16 chunks of the head dim (S = Q K^T)
  constexpr int NS = BN / 8;  // n8 tiles of scores per warp row block (8)
  constexpr int NO = D / 8;   // n8 tiles of the output
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  // K buffer i at smem + (1 + i) tiles, V buffer i at smem + (3 + i) tiles
  // (pointer arithmetic, not a pointer array: a runtime-indexed array would
  // live in local memory).
  const auto sK = [&](int i) { return reinterpret_cast<bf16*>(smem + (1 + i) * L::tile); };
  const auto sV = [&](int i) { return reinterpret_cast<bf16*>(smem + (3 + i) * L::tile); };

  // Query tiles in reverse order: under a causal mask the last tiles do the
  // most work, so they start first (better tail balance). Same coverage.
  const int bh = blockIdx.y, b = bh / g.H, i0 = (gridDim.x - 1 - blockIdx.x) * BM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gq = lane / 4, tq = lane % 4;  // groupID, thread in group
  const bf16* qb = q + static_cast<int64_t>(bh) * g.T * D;
  const bf16* kb = k + static_cast<int64_t>(bh) * g.S * D;
  const bf16* vb = v + static_cast<int64_t>(bh) * g.S * D;
  // This thread's two query rows (fragment rows g and g+8 of the warp's 16).
  const int qi0 = i0 + warp * 16 + gq, qi1 = qi0 + 8;

  const int kend = g.key_end(min(i0 + BM, g.T) - 1);  // keys [0, kend) may be visible to this CTA
  const int ntiles = (kend + BN - 1) / BN;
  const float sl2 = g.scale * kLog2e;  // scores in log2 units: s2 = (q.k) * scale * log2(e)

  load_tile_async<D>(sQ, qb, i0, g.T);
  cp_async_commit();
  if (ntiles > 0) {
    load_tile_async<D>(sK(0), kb, 0, g.S);
    load_tile_async<D>(sV(0), vb, 0, g.S);
  }
  cp_async_commit();

  uint32_t qa[KC][4];  // Q A fragments, chunk kc = head-dim cols 16kc..16kc+15
  float oacc[NO][4];   // O accumulator, n8 tile n = head-dim cols 8n..8n+7 (C layout)
#pragma unroll
  for (int n = 0; n < NO; ++n) oacc[n][0] = oacc[n][1] = oacc[n][2] = oacc[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running max (log2 units) of rows qi0, qi1
  float l0 = 0.f, l1 = 0.f;              // this thread's partial row sums (its 2 cols per n8 tile)

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t & 1, j0 = t * BN;
    if (t + 1 < ntiles) {  // prefetch tile t+1 into the other buffer (freed by the barrier ending t-1)
      load_tile_async<D>(sK(buf ^ 1), kb, j0 + BN, g.S);
      load_tile_async<D>(sV(buf ^ 1), vb, j0 + BN, g.S);
    }
    cp_async_commit();   // (possibly empty group: keeps the wait count uniform)
    cp_async_wait<1>();  // all groups but the newest done: Q and tile t have landed
    __syncthreads();
    if (t == 0) {
      // Q A fragment via ldmatrix.x4: matrices 0..3 = (rows 0-7, cols 0-7),
      // (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15)
      // of the warp's 16 x 16 chunk = a0, a1, a2, a3. Lane l addresses row
      // (l % 8) + 8 * ((l / 8) % 2), col 8 * (l / 16).
      const int r = warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2), c = 8 * (lane / 16);
#pragma unroll
      for (int kc = 0; kc < KC; ++kc) ldmatrix_x4(qa[kc], sQ + r * LD + kc * 16 + c);
    }

    // ---- S (16 x 64 per warp) = Q K^T. B[k=d][n=key] = K[key][d]: K stored
    // row-major (key, d) is exactly the "col" B layout, so plain ldmatrix:
    // matrices 0..3 = K rows n0..n0+7 cols 16kc+0..7 (b0 of tile n0),
    // rows n0..n0+7 cols 16kc+8..15 (b1 of tile n0), rows n0+8..15 cols +0..7
    // (b0 of tile n0+8), rows n0+8..15 cols +8..15 (b1 of tile n0+8).
    // Lane l addresses row n0 + (l % 8) + 8 * (l / 16), col 16kc + 8 * ((l / 8) % 2).
    float s[NS][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
    const bf16* kt = sK(buf);
#pragma unroll
    for (int np = 0; np < NS / 2; ++np) {  // pairs of n8 tiles: keys 16np..16np+15
      const int r = np * 16 + (lane % 8) + 8 * (lane / 16), c = 8 * ((lane / 8) % 2);
#pragma unroll
      for (int kc = 0; kc < KC; ++kc) {
        uint32_t kf[4];
        ldmatrix_x4(kf, kt + r * LD + kc * 16 + c);
        mma_bf16(s[2 * np], qa[kc], kf[0], kf[1]);
        mma_bf16(s[2 * np + 1], qa[kc], kf[2], kf[3]);
      }
    }

    // ---- scale to log2 units and mask. Element s[n][e]: row qi0 (e < 2) or
    // qi1 (e >= 2), key j = j0 + 8n + 2tq + (e & 1).
    // A tile needs the per-element mask when it has keys past S, a padding
    // mask is given, or (causal) some key of it is past the first query's bound.
    const bool need_mask =
        j0 + BN > g.S || g.keep != nullptr ||
        (g.causal && static_cast<int64_t>(j0) + BN - 1 > static_cast<int64_t>(i0) + g.S - g.T);
    if (need_mask) {
#pragma unroll
      for (int n = 0; n < NS; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = j0 + 8 * n + 2 * tq + (e & 1);
          const int i = e < 2 ? qi0 : qi1;
          const bool vis =
              j < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + j] != 0.f) && g.causal_ok(i, j);
          s[n][e] = vis ? s[n][e] * sl2 : -INFINITY;
        }
      }
    } else {
#pragma unroll
      for (int n = 0; n < NS; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] *= sl2;
      }
    }

    // ---- online softmax. Row qi0 lives in lanes 4gq..4gq+3 (elements 0,1 of
    // every n8 tile): reduce over the quad with xor 1, 2.
    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // No visible key so far: use 0 as the reference so exp2(-inf - 0) = 0
    // (never -inf - -inf = NaN). alpha = exp2(m_old - m_new) is 0 when m_old = -inf.
    const float ref0 = mx0 == -INFINITY ? 0.f : mx0, ref1 = mx1 == -INFINITY ? 0.f : mx1;
    const float alpha0 = exp2f(m0 - ref0), alpha1 = exp2f(m1 - ref1);
    m0 = mx0, m1 = mx1;
    l0 *= alpha0, l1 *= alpha1;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      oacc[n][0] *= alpha0, oacc[n][1] *= alpha0;
      oacc[n][2] *= alpha1, oacc[n][3] *= alpha1;
    }
    // P = exp2(s - m) rounded to bf16, packed directly as A fragments of P V:
    // k16 chunk kc (keys 16kc..16kc+15) = n8 tiles 2kc (a0: row g, a1: row g+8)
    // and 2kc+1 (a2: row g, a3: row g+8), cols 2tq, 2tq+1 in each: exactly the
    // C layout of those two tiles.
    uint32_t pa[NS / 2][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      const __nv_bfloat162 h01 = __floats2bfloat162_rn(exp2f(s[n][0] - ref0), exp2f(s[n][1] - ref0));
      const __nv_bfloat162 h23 = __floats2bfloat162_rn(exp2f(s[n][2] - ref1), exp2f(s[n][3] - ref1));
      const float2 f01 = __bfloat1622float2(h01), f23 = __bfloat1622float2(h23);
      l0 += f01.x + f01.y;  // the sum uses the rounded P the product sees
      l1 += f23.x + f23.y;
      pa[n / 2][(n % 2) * 2 + 0] = *reinterpret_cast<const uint32_t*>(&h01);
      pa[n / 2][(n % 2) * 2 + 1] = *reinterpret_cast<const uint32_t*>(&h23);
    }

    // ---- O (16 x D per warp) += P V. B[k=key][n=d] = V[key][d]: V stored
    // row-major (key, d) is B row-major, so ldmatrix.trans gives the "col"
    // fragment: of the 8x8 block V[k0..k0+7][d0..d0+7] lane l receives
    // V[k0+2(l%4)+{0,1}][d0+l/4] = b0 (k 2t,2t+1; n g). Matrices 0..3 =
    // V rows 16kc+0..7 cols d0..+7 (b0 of tile d0), rows 16kc+8..15 cols
    // d0..+7 (b1 of tile d0), rows +0..7 cols d0+8..15 (b0 of tile d0+8),
    // rows +8..15 cols d0+8..15 (b1 of tile d0+8).
    // Lane l addresses row 16kc + (l % 8) + 8 * ((l / 8) % 2), col d0 + 8 * (l / 16).
    const bf16* vt = sV(buf);
#pragma unroll
    for (int kc = 0; kc < NS / 2; ++kc) {
      const int r = kc * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
#pragma unroll
      for (int dp = 0; dp < NO / 2; ++dp) {  // pairs of n8 output tiles: cols 16dp..16dp+15
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, vt + r * LD + dp * 16 + 8 * (lane / 16));
        mma_bf16(oacc[2 * dp], pa[kc], vf[0], vf[1]);
        mma_bf16(oacc[2 * dp + 1], pa[kc], vf[2], vf[3]);
      }
    }
    __syncthreads();  // everyone is done with buffer buf before it is refilled (iteration t+1 prefetch)
  }
  cp_async_wait<0>();  // nothing may be in flight at exit (e.g. no key tile at all)

  // ---- finish: full row sums over the quad, O / l, lse = (m + log2 l) * ln 2.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;  // no visible key: O = 0
  if (qi0 < g.T) {
    bf16* orow = o + (static_cast<int64_t>(bh) * g.T + qi0) * D;
#pragma unroll
    for (int n = 0; n < NO; ++n)
      *reinterpret_cast<__nv_bfloat162*>(orow + 8 * n + 2 * tq) =
          __floats2bfloat162_rn(oacc[n][0] * inv0, oacc[n][1] * inv0);
    if (tq == 0) lse[static_cast<int64_t>(bh) * g.T + qi0] = l0 > 0.f ? (m0 + log2f(l0)) * kLn2 : -INFINITY;
  }
  if (qi1 < g.T) {
    bf16* orow = o + (static_cast<int64_t>(bh) * g.T + qi1) * D;
#pragma unroll
    for (int n = 0; n < NO; ++n)
      *reinterpret_cast<__nv_bfloat162*>(orow + 8 * n + 2 * tq) =
          __floats2bfloat162_rn(oacc[n][2] * inv1, oacc[n][3] * inv1);
    if (tq == 0) lse[static_cast<int64_t>(bh) * g.T + qi1] = l1 > 0.f ? (m1 + log2f(l1)) * kLn2 : -INFINITY;
  }
}

// ------------------------------------------------------------------ host side
inline bool forward_supported(const Geom& g, const void* q, const void* k, const void* v, const void* o) {
  const auto al = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (g.D == 64 || g.D == 128) && g.Dv == g.D && al(q) && al(k) && al(v) && al(o);
}

inline void forward(const Geom& g, cudaStream_t st, const bf16* q, const bf16* k, const bf16* v, bf16* o,
                    float* lse) {
  const auto launch = [&](auto Dc) {
    constexpr int D = decltype(Dc)::value;
    constexpr size_t bytes = Lay<D>::bytes;
    NQ_CUDA_CHECK(cudaFuncSetAttribute(fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)),
                  kOp);
    dim3 grid((g.T + BM - 1) / BM, g.B * g.H);
    fwd_kernel<D><<<grid, kThreads, bytes, st>>>(g, q, k, v, o, lse);
    detail::check_launch(kOp);
  };
  if (g.D == 64)
    launch(std::integral_constant<int, 64>{});
  else
    launch(std::integral_constant<int, 128>{});
}

}  // namespace fa2
}  // namespace
}  // namespace nq::cuda
