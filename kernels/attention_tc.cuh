#pragma once
// Tensor-core attention for bfloat16 (included by attention.cu only, inside
// its anonymous namespace context). WMMA 16x16x16 bf16 products with fp32
// accumulation: Q K^T and P V in the forward; K Q^T, V dO^T, P^T dO, dS^T Q
// (dK/dV kernel) and Q K^T, dO V^T, dS K (dQ kernel) in the backward. The
// softmax, masks and exp run in fp32 on score tiles staged in shared memory
// (one warp owns 16 rows of every tile, so only K/V (Q/dO) tile loads need a
// block barrier). P and dS are rounded to bf16 for the products, like
// FlashAttention. Head dims are zero-padded to DM in {32, 64, 128}; tiles are
// 64 x 64; shared memory is dynamic (up to ~120 KB, opted in per kernel).
// NQ_ATTN_SIMPLE=1 falls back to the simple kernels.
#include <mma.h>

namespace nq::cuda {
namespace {
namespace tc {

using bf16 = __nv_bfloat16;
namespace wm = nvcuda::wmma;
constexpr int BT = 64;         // query rows per block, keys per tile (and vice versa in dK/dV)
constexpr int kThreads = 128;  // 4 warps x 16 rows

template <int DM>
struct Lay {
  static constexpr int LDH = DM + 8;  // bf16 (BT, DM) tiles
  static constexpr int LDS = BT + 4;  // fp32 (BT, BT) score tiles
  static constexpr int LDP = BT + 8;  // bf16 (BT, BT) P / dS tiles
  static constexpr int LDO = DM + 4;  // fp32 (BT, DM) output accumulator
  static constexpr size_t H = size_t(BT) * LDH * sizeof(bf16);
  static constexpr size_t S = size_t(BT) * LDS * sizeof(float);
  static constexpr size_t P = size_t(BT) * LDP * sizeof(bf16);
  static constexpr size_t O = size_t(BT) * LDO * sizeof(float);
  static constexpr size_t fwd_bytes = 3 * H + S + P + O;
  static constexpr size_t dkdv_bytes = 4 * H + 2 * S + 2 * P + 2 * BT * sizeof(float);
  static constexpr size_t dq_bytes = 4 * H + 2 * S + P;
};

using FragA = wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major>;
using FragBr = wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major>;
using FragBc = wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major>;
using FragC = wm::fragment<wm::accumulator, 16, 16, 16, float>;

// Rows [r0, r0+BT) of a (n_rows, ncols) bf16 matrix into dst (BT, LD), zero
// padded. vec: ncols % 8 == 0 and src 16-byte aligned (16-byte loads).
template <int DM, int LD>
__device__ __forceinline__ void load_rows(bf16* dst, const bf16* src, int r0, int n_rows, int ncols,
                                          bool vec) {
  if (vec) {
    constexpr int CH = DM / 8;
    for (int e = threadIdx.x; e < BT * CH; e += blockDim.x) {
      const int r = e / CH, c = (e % CH) * 8, row = r0 + r;
      uint4 val = make_uint4(0u, 0u, 0u, 0u);
      if (row < n_rows && c < ncols)
        val = *reinterpret_cast<const uint4*>(src + static_cast<int64_t>(row) * ncols + c);
      *reinterpret_cast<uint4*>(dst + r * LD + c) = val;
    }
  } else {
    for (int e = threadIdx.x; e < BT * DM; e += blockDim.x) {
      const int r = e / DM, c = e % DM, row = r0 + r;
      dst[r * LD + c] =
          (row < n_rows && c < ncols) ? src[static_cast<int64_t>(row) * ncols + c] : __float2bfloat16(0.f);
    }
  }
}

__device__ __forceinline__ bool key_real(const Geom& g, int b, int j) {
  return j < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + j] != 0.f);
}

// Writes a warp's 16 x DM fragments (scaled by mul) to rows [row0, row0+16)
// of out (n_rows, ncols), staging each 16x16 block in stage (ld LDS).
template <int DM, int LDS>
__device__ __forceinline__ void write_frags(FragC (&acc)[DM / 16], float* stage, bf16* out, int row0,
                                            int n_rows, int ncols, float mul) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < DM / 16; ++n) {
    wm::store_matrix_sync(stage, acc[n], LDS, wm::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) {
      const int r = e / 16, c = e % 16, row = row0 + r, d = n * 16 + c;
      if (row < n_rows && d < ncols)
        out[static_cast<int64_t>(row) * ncols + d] = __float2bfloat16(stage[r * LDS + c] * mul);
    }
    __syncwarp();
  }
}

// ------------------------------------------------------------------ forward
template <int DM>
__global__ void __launch_bounds__(kThreads)
    fwd_kernel(Geom g, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
               bf16* __restrict__ o, float* __restrict__ lse, bool vec) {
  using L = Lay<DM>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sK = reinterpret_cast<bf16*>(smem + L::H);
  bf16* sV = reinterpret_cast<bf16*>(smem + 2 * L::H);
  float* sS = reinterpret_cast<float*>(smem + 3 * L::H);
  bf16* sP = reinterpret_cast<bf16*>(smem + 3 * L::H + L::S);
  float* sO = reinterpret_cast<float*>(smem + 3 * L::H + L::S + L::P);
  const int bh = blockIdx.y, b = bh / g.H, i0 = blockIdx.x * BT;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * 16;
  const bf16* kb = k + static_cast<int64_t>(bh) * g.S * g.D;
  const bf16* vb = v + static_cast<int64_t>(bh) * g.S * g.Dv;
  load_rows<DM, L::LDH>(sQ, q + static_cast<int64_t>(bh) * g.T * g.D, i0, g.T, g.D, vec);
  for (int e = threadIdx.x; e < BT * L::LDO; e += blockDim.x) sO[e] = 0.f;
  float m[16], l[16];  // per row of this warp (replicated in every lane)
#pragma unroll
  for (int rr = 0; rr < 16; ++rr) m[rr] = -INFINITY, l[rr] = 0.f;
  FragA qa[DM / 16];
  const int kend = g.key_end(min(i0 + BT, g.T) - 1);
  for (int j0 = 0; j0 < kend; j0 += BT) {
    __syncthreads();  // previous K/V tile consumed; sQ and sO ready (first time)
    load_rows<DM, L::LDH>(sK, kb, j0, g.S, g.D, vec);
    load_rows<DM, L::LDH>(sV, vb, j0, g.S, g.Dv, vec);
    __syncthreads();
    if (j0 == 0) {
#pragma unroll
      for (int kk = 0; kk < DM / 16; ++kk) wm::load_matrix_sync(qa[kk], sQ + r0 * L::LDH + kk * 16, L::LDH);
    }
    // S_w (16 x 64) = Q_w K^T
#pragma unroll
    for (int n = 0; n < BT / 16; ++n) {
      FragC acc;
      wm::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < DM / 16; ++kk) {
        FragBc kf;
        wm::load_matrix_sync(kf, sK + n * 16 * L::LDH + kk * 16, L::LDH);
        wm::mma_sync(acc, qa[kk], kf, acc);
      }
      wm::store_matrix_sync(sS + r0 * L::LDS + n * 16, acc, L::LDS, wm::mem_row_major);
    }
    __syncwarp();
    const int ja = j0 + lane, jb = j0 + lane + 32;
    const bool ka = key_real(g, b, ja), kbk = key_real(g, b, jb);
#pragma unroll
    for (int rr = 0; rr < 16; ++rr) {
      const int row = r0 + rr, i = i0 + row;
      const bool va = ka && g.causal_ok(i, ja), vb2 = kbk && g.causal_ok(i, jb);
      const float s0 = va ? sS[row * L::LDS + lane] * g.scale : -INFINITY;
      const float s1 = vb2 ? sS[row * L::LDS + lane + 32] * g.scale : -INFINITY;
      const float mnew = fmaxf(m[rr], warp_max(fmaxf(s0, s1)));
      float alpha = 1.f, p0 = 0.f, p1 = 0.f;
      if (mnew != -INFINITY) {  // warp-uniform
        alpha = expf(m[rr] - mnew);
        p0 = va ? expf(s0 - mnew) : 0.f;
        p1 = vb2 ? expf(s1 - mnew) : 0.f;
      }
      const bf16 h0 = __float2bfloat16(p0), h1 = __float2bfloat16(p1);
      sP[row * L::LDP + lane] = h0;
      sP[row * L::LDP + lane + 32] = h1;
      // The row sum uses the rounded P that the P V product sees.
      l[rr] = l[rr] * alpha + warp_sum(__bfloat162float(h0) + __bfloat162float(h1));
      m[rr] = mnew;
      if (alpha != 1.f)
        for (int c = lane; c < DM; c += 32) sO[row * L::LDO + c] *= alpha;
    }
    __syncwarp();
    // O_w (16 x DM) += P_w V
#pragma unroll
    for (int n = 0; n < DM / 16; ++n) {
      FragC acc;
      wm::load_matrix_sync(acc, sO + r0 * L::LDO + n * 16, L::LDO, wm::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < BT / 16; ++kk) {
        FragA pa;
        FragBr vf;
        wm::load_matrix_sync(pa, sP + r0 * L::LDP + kk * 16, L::LDP);
        wm::load_matrix_sync(vf, sV + kk * 16 * L::LDH + n * 16, L::LDH);
        wm::mma_sync(acc, pa, vf, acc);
      }
      wm::store_matrix_sync(sO + r0 * L::LDO + n * 16, acc, L::LDO, wm::mem_row_major);
    }
  }
  __syncthreads();  // sO zeroed by all threads even when no key tile ran
#pragma unroll
  for (int rr = 0; rr < 16; ++rr) {
    const int row = r0 + rr, i = i0 + row;
    if (i >= g.T) continue;
    const int64_t orow = static_cast<int64_t>(bh) * g.T + i;
    const float inv = l[rr] > 0.f ? 1.f / l[rr] : 0.f;  // no visible key: output 0
    for (int c = lane; c < g.Dv; c += 32) o[orow * g.Dv + c] = __float2bfloat16(sO[row * L::LDO + c] * inv);
    if (lane == 0) lse[orow] = l[rr] > 0.f ? m[rr] + logf(l[rr]) : -INFINITY;
  }
}

// ------------------------------------------------------------ backward dK dV
// Block = 64 keys of one (b,h) (warp w: keys 16w..16w+15); loops over query
// tiles from the causal diagonal. Works on transposed tiles: S^T = K Q^T,
// dP^T = V dO^T; dV += P^T dO, dK += dS^T Q.
template <int DM>
__global__ void __launch_bounds__(kThreads)
    dkdv_kernel(Geom g, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                const bf16* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ delta,
                bf16* __restrict__ dk, bf16* __restrict__ dv, bool vec) {
  using L = Lay<DM>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::H);
  bf16* sQ = reinterpret_cast<bf16*>(smem + 2 * L::H);
  bf16* sdO = reinterpret_cast<bf16*>(smem + 3 * L::H);
  float* sST = reinterpret_cast<float*>(smem + 4 * L::H);
  float* sdPT = reinterpret_cast<float*>(smem + 4 * L::H + L::S);
  bf16* sPT = reinterpret_cast<bf16*>(smem + 4 * L::H + 2 * L::S);
  bf16* sdST = reinterpret_cast<bf16*>(smem + 4 * L::H + 2 * L::S + L::P);
  float* sL = reinterpret_cast<float*>(smem + 4 * L::H + 2 * L::S + 2 * L::P);
  float* sD = sL + BT;
  const int bh = blockIdx.y, b = bh / g.H, j0 = blockIdx.x * BT;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * 16;
  const bf16* qb = q + static_cast<int64_t>(bh) * g.T * g.D;
  const bf16* dob = dout + static_cast<int64_t>(bh) * g.T * g.Dv;
  load_rows<DM, L::LDH>(sK, k + static_cast<int64_t>(bh) * g.S * g.D, j0, g.S, g.D, vec);
  load_rows<DM, L::LDH>(sV, v + static_cast<int64_t>(bh) * g.S * g.Dv, j0, g.S, g.Dv, vec);
  FragC accK[DM / 16], accV[DM / 16];
#pragma unroll
  for (int n = 0; n < DM / 16; ++n) wm::fill_fragment(accK[n], 0.f), wm::fill_fragment(accV[n], 0.f);
  int qstart = 0;
  if (g.causal) {
    const int64_t first = static_cast<int64_t>(j0) - (g.S - g.T);
    qstart = first <= 0 ? 0 : static_cast<int>(first / BT * BT);
  }
  for (int i0 = qstart; i0 < g.T; i0 += BT) {
    __syncthreads();
    load_rows<DM, L::LDH>(sQ, qb, i0, g.T, g.D, vec);
    load_rows<DM, L::LDH>(sdO, dob, i0, g.T, g.Dv, vec);
    for (int e = threadIdx.x; e < BT; e += blockDim.x) {
      const int i = i0 + e;
      sL[e] = i < g.T ? lse[static_cast<int64_t>(bh) * g.T + i] : -INFINITY;
      sD[e] = i < g.T ? delta[static_cast<int64_t>(bh) * g.T + i] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int n = 0; n < BT / 16; ++n) {
      FragC s, dp;
      wm::fill_fragment(s, 0.f);
      wm::fill_fragment(dp, 0.f);
#pragma unroll
      for (int kk = 0; kk < DM / 16; ++kk) {
        FragA a;
        FragBc bq;
        wm::load_matrix_sync(a, sK + r0 * L::LDH + kk * 16, L::LDH);
        wm::load_matrix_sync(bq, sQ + n * 16 * L::LDH + kk * 16, L::LDH);
        wm::mma_sync(s, a, bq, s);
        wm::load_matrix_sync(a, sV + r0 * L::LDH + kk * 16, L::LDH);
        wm::load_matrix_sync(bq, sdO + n * 16 * L::LDH + kk * 16, L::LDH);
        wm::mma_sync(dp, a, bq, dp);
      }
      wm::store_matrix_sync(sST + r0 * L::LDS + n * 16, s, L::LDS, wm::mem_row_major);
      wm::store_matrix_sync(sdPT + r0 * L::LDS + n * 16, dp, L::LDS, wm::mem_row_major);
    }
    __syncwarp();
#pragma unroll 4
    for (int rr = 0; rr < 16; ++rr) {
      const int kr = r0 + rr, j = j0 + kr;
      const bool kok = key_real(g, b, j);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int ic = lane + 32 * h, i = i0 + ic;
        const float Li = sL[ic];
        const bool vis = kok && Li != -INFINITY && g.causal_ok(i, j);  // Li = -inf also for i >= T
        const float p = vis ? expf(sST[kr * L::LDS + ic] * g.scale - Li) : 0.f;
        sPT[kr * L::LDP + ic] = __float2bfloat16(p);
        sdST[kr * L::LDP + ic] = __float2bfloat16(p * (sdPT[kr * L::LDS + ic] - sD[ic]));
      }
    }
    __syncwarp();
#pragma unroll
    for (int n = 0; n < DM / 16; ++n) {
#pragma unroll
      for (int kk = 0; kk < BT / 16; ++kk) {
        FragA a;
        FragBr bb;
        wm::load_matrix_sync(a, sPT + r0 * L::LDP + kk * 16, L::LDP);
        wm::load_matrix_sync(bb, sdO + kk * 16 * L::LDH + n * 16, L::LDH);
        wm::mma_sync(accV[n], a, bb, accV[n]);
        wm::load_matrix_sync(a, sdST + r0 * L::LDP + kk * 16, L::LDP);
        wm::load_matrix_sync(bb, sQ + kk * 16 * L::LDH + n * 16, L::LDH);
        wm::mma_sync(accK[n], a, bb, accK[n]);
      }
    }
  }
  __syncwarp();
  float* stage = sST + r0 * L::LDS;  // this warp's rows only
  const int64_t base = static_cast<int64_t>(bh) * g.S;
  if (dk) write_frags<DM, L::LDS>(accK, stage, dk + base * g.D, j0 + r0, g.S, g.D, g.scale);
  if (dv) write_frags<DM, L::LDS>(accV, stage, dv + base * g.Dv, j0 + r0, g.S, g.Dv, 1.f);
}

// ---------------------------------------------------------------- backward dQ
template <int DM>
__global__ void __launch_bounds__(kThreads)
    dq_kernel(Geom g, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
              const bf16* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ delta,
              bf16* __restrict__ dq, bool vec) {
  using L = Lay<DM>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sdO = reinterpret_cast<bf16*>(smem + L::H);
  bf16* sK = reinterpret_cast<bf16*>(smem + 2 * L::H);
  bf16* sV = reinterpret_cast<bf16*>(smem + 3 * L::H);
  float* sS = reinterpret_cast<float*>(smem + 4 * L::H);
  float* sdP = reinterpret_cast<float*>(smem + 4 * L::H + L::S);
  bf16* sdS = reinterpret_cast<bf16*>(smem + 4 * L::H + 2 * L::S);
  const int bh = blockIdx.y, b = bh / g.H, i0 = blockIdx.x * BT;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * 16;
  const bf16* kb = k + static_cast<int64_t>(bh) * g.S * g.D;
  const bf16* vb = v + static_cast<int64_t>(bh) * g.S * g.Dv;
  load_rows<DM, L::LDH>(sQ, q + static_cast<int64_t>(bh) * g.T * g.D, i0, g.T, g.D, vec);
  load_rows<DM, L::LDH>(sdO, dout + static_cast<int64_t>(bh) * g.T * g.Dv, i0, g.T, g.Dv, vec);
  float Lr[16], Dr[16];
#pragma unroll
  for (int rr = 0; rr < 16; ++rr) {
    const int i = i0 + r0 + rr;
    Lr[rr] = i < g.T ? lse[static_cast<int64_t>(bh) * g.T + i] : -INFINITY;
    Dr[rr] = i < g.T ? delta[static_cast<int64_t>(bh) * g.T + i] : 0.f;
  }
  FragC acc[DM / 16];
#pragma unroll
  for (int n = 0; n < DM / 16; ++n) wm::fill_fragment(acc[n], 0.f);
  const int kend = g.key_end(min(i0 + BT, g.T) - 1);
  for (int j0 = 0; j0 < kend; j0 += BT) {
    __syncthreads();
    load_rows<DM, L::LDH>(sK, kb, j0, g.S, g.D, vec);
    load_rows<DM, L::LDH>(sV, vb, j0, g.S, g.Dv, vec);
    __syncthreads();
#pragma unroll
    for (int n = 0; n < BT / 16; ++n) {
      FragC s, dp;
      wm::fill_fragment(s, 0.f);
      wm::fill_fragment(dp, 0.f);
#pragma unroll
      for (int kk = 0; kk < DM / 16; ++kk) {
        FragA a;
        FragBc bk;
        wm::load_matrix_sync(a, sQ + r0 * L::LDH + kk * 16, L::LDH);
        wm::load_matrix_sync(bk, sK + n * 16 * L::LDH + kk * 16, L::LDH);
        wm::mma_sync(s, a, bk, s);
        wm::load_matrix_sync(a, sdO + r0 * L::LDH + kk * 16, L::LDH);
        wm::load_matrix_sync(bk, sV + n * 16 * L::LDH + kk * 16, L::LDH);
        wm::mma_sync(dp, a, bk, dp);
      }
      wm::store_matrix_sync(sS + r0 * L::LDS + n * 16, s, L::LDS, wm::mem_row_major);
      wm::store_matrix_sync(sdP + r0 * L::LDS + n * 16, dp, L::LDS, wm::mem_row_major);
    }
    __syncwarp();
    const int ja = j0 + lane, jb = j0 + lane + 32;
    const bool ka = key_real(g, b, ja), kbk = key_real(g, b, jb);
#pragma unroll
    for (int rr = 0; rr < 16; ++rr) {
      const int row = r0 + rr, i = i0 + row;
      const bool live = Lr[rr] != -INFINITY;
      const bool va = live && ka && g.causal_ok(i, ja), vb2 = live && kbk && g.causal_ok(i, jb);
      const float p0 = va ? expf(sS[row * L::LDS + lane] * g.scale - Lr[rr]) : 0.f;
      const float p1 = vb2 ? expf(sS[row * L::LDS + lane + 32] * g.scale - Lr[rr]) : 0.f;
      sdS[row * L::LDP + lane] = __float2bfloat16(p0 * (sdP[row * L::LDS + lane] - Dr[rr]));
      sdS[row * L::LDP + lane + 32] = __float2bfloat16(p1 * (sdP[row * L::LDS + lane + 32] - Dr[rr]));
    }
    __syncwarp();
#pragma unroll
    for (int n = 0; n < DM / 16; ++n) {
#pragma unroll
      for (int kk = 0; kk < BT / 16; ++kk) {
        FragA a;
        FragBr bb;
        wm::load_matrix_sync(a, sdS + r0 * L::LDP + kk * 16, L::LDP);
        wm::load_matrix_sync(bb, sK + kk * 16 * L::LDH + n * 16, L::LDH);
        wm::mma_sync(acc[n], a, bb, acc[n]);
      }
    }
  }
  __syncwarp();
  write_frags<DM, L::LDS>(acc, sS + r0 * L::LDS, dq + static_cast<int64_t>(bh) * g.T * g.D, i0 + r0, g.T, g.D,
                          g.scale);
}

// ------------------------------------------------------------------ host side
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Raises the kernel's dynamic shared memory limit once (per instantiation).
template <typename K>
void set_smem(K kernel, size_t bytes) {
  NQ_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
      kOp);
}

inline bool forward_supported(int D, int Dv) { return D <= 128 && Dv <= 128; }
inline bool backward_supported(int D, int Dv) { return D <= 128 && Dv <= 128; }

template <typename F>
void visit_tc_dm(int d, F&& f) {
  if (d <= 32)
    f(std::integral_constant<int, 32>{});
  else if (d <= 64)
    f(std::integral_constant<int, 64>{});
  else
    f(std::integral_constant<int, 128>{});
}

inline void forward(const Geom& g, cudaStream_t st, const bf16* q, const bf16* k, const bf16* v, bf16* o,
                    float* lse) {
  const bool vec = g.D % 8 == 0 && g.Dv % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v);
  visit_tc_dm(std::max(g.D, g.Dv), [&](auto DMc) {
    constexpr int DM = decltype(DMc)::value;
    const size_t bytes = Lay<DM>::fwd_bytes;
    set_smem(fwd_kernel<DM>, bytes);
    dim3 grid((g.T + BT - 1) / BT, g.B * g.H);
    fwd_kernel<DM><<<grid, kThreads, bytes, st>>>(g, q, k, v, o, lse, vec);
    detail::check_launch(kOp);
  });
}

inline void backward(const Geom& g, cudaStream_t st, const bf16* q, const bf16* k, const bf16* v,
                     const bf16* dout, const float* lse, const float* delta, bf16* dq, bf16* dk, bf16* dv) {
  const bool vec =
      g.D % 8 == 0 && g.Dv % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout);
  visit_tc_dm(std::max(g.D, g.Dv), [&](auto DMc) {
    constexpr int DM = decltype(DMc)::value;
    if (dk || dv) {
      const size_t bytes = Lay<DM>::dkdv_bytes;
      set_smem(dkdv_kernel<DM>, bytes);
      dim3 grid((g.S + BT - 1) / BT, g.B * g.H);
      dkdv_kernel<DM><<<grid, kThreads, bytes, st>>>(g, q, k, v, dout, lse, delta, dk, dv, vec);
      detail::check_launch(kOp);
    }
    if (dq) {
      const size_t bytes = Lay<DM>::dq_bytes;
      set_smem(dq_kernel<DM>, bytes);
      dim3 grid((g.T + BT - 1) / BT, g.B * g.H);
      dq_kernel<DM><<<grid, kThreads, bytes, st>>>(g, q, k, v, dout, lse, delta, dq, vec);
      detail::check_launch(kOp);
    }
  });
}

}  // namespace tc
}  // namespace
}  // namespace nq::cuda
