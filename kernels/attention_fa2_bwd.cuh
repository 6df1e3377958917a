#pragma once
// FlashAttention-2-style backward for bfloat16 (included by attention.cu after
// attention_fa2.cuh, whose helpers it reuses: Lay, load_tile_async, ldmatrix,
// mma_bf16, cp.async; see the fragment layouts in that file's header comment).
// Scope: bf16, D == Dv == 64, contiguous (B,H,T,D) with 16-byte aligned bases;
// any T, S, causal or not, key padding mask, custom scale. Selected with
// NQ_ATTN_BWD=fa2 (default: wmma, attention_tc.cuh) in attention.cu.
//
// Inputs: q, k, v, dO, lse (natural-log units, -inf for a row with no visible
// key), Di = rowsum(dO * O) (attn_bwd_delta). P = exp(scale * q.k - lse) is
// recomputed as exp2(scale * log2e * q.k - log2e * lse).
//   dV_j = sum_i P_ij dO_i,  dP_ij = dO_i . v_j,  dS_ij = P_ij (dP_ij - Di),
//   dK_j = scale * sum_i dS_ij q_i,  dQ_i = scale * sum_j dS_ij k_j.
// Two kernels, no atomics (deterministic):
//   * dkdv_kernel: CTA = 4 warps = one (b,h) and 64 keys; warp w owns keys
//     16w..16w+15. It works on the TRANSPOSED scores S^T = K Q^T (keys are the
//     mma rows), so P^T and dS^T come out of the mma in the C layout, which is
//     directly the A layout of P^T dO and dS^T Q (no transposition of P or dS
//     through shared memory). K and V of the warp's 16 keys are A fragments in
//     registers (loaded once); Q, dO (64-query tiles) and the per-query
//     log2e*lse and Di are double-buffered in shared memory (cp.async).
//     Query tiles start at the causal diagonal of the key tile.
//   * dq_kernel: CTA = 4 warps = one (b,h) and 64 queries; warp w owns queries
//     16w..16w+15 (exactly the forward's structure). Q and dO are A fragments
//     in registers; K, V tiles double-buffered (cp.async); key tiles stop at the
//     causal diagonal.
// Masking: keys past S are zero-filled by cp.async and masked per element;
// padded query rows (>= T) and rows with lse = -inf get log2e*lse = +inf in
// the stats so exp2(s - inf) = 0: P, and so dS, is exactly 0 there; padding-mask
// and causal visibility are checked per element (P = 0 where not visible).
//
// Fragment algebra used below (g = lane / 4, t = lane % 4; A/B/C layouts and
// ldmatrix(.trans) semantics as in attention_fa2.cuh):
//  (1) C of two adjacent n8 tiles 2c, 2c+1 (rows g, g+8; cols 2t, 2t+1 of each)
//      == A of the k16 chunk c: a0 = C[2c][0,1], a1 = C[2c][2,3],
//      a2 = C[2c+1][0,1], a3 = C[2c+1][2,3] (as the forward's P V).
//  (2) B[k][n] = X[n][k] with X row-major in shared memory (X = K in the
//      forward's Q K^T): plain ldmatrix.x4, lane l addresses X row
//      n0 + (l % 8) + 8 * (l / 16), col 16kc + 8 * ((l / 8) % 2); regs 0,1 =
//      b0,b1 of n8 tile n0, regs 2,3 = b0,b1 of n8 tile n0 + 8.
//  (3) B[k][n] = X[k][n] with X row-major in shared memory (X = V in the
//      forward's P V): ldmatrix.x4.trans, lane l addresses X row
//      16kc + (l % 8) + 8 * ((l / 8) % 2), col n0 + 8 * (l / 16); regs 0,1 =
//      b0,b1 of n8 tile n0, regs 2,3 = b0,b1 of n8 tile n0 + 8.
//  (4) A (16 x 16 chunk kc of rows r0..r0+15 of X row-major in shared memory):
//      ldmatrix.x4, lane l addresses row r0 + (l % 8) + 8 * ((l / 8) % 2),
//      col 16kc + 8 * (l / 16) (the forward's Q fragments).
// dkdv_kernel, per warp (16 keys) and query tile (64 queries):
//   S^T (16x64)  = K_w (A, (4) from sK) . Q^T  (B[k=d][n=i] = Q[i][d]: (2) from sQ)
//   P^T = exp2(...)  in C layout: key row g / g+8, query col 8n + 2t + {0,1}
//   dV_w (16xD) += P^T (A via (1)) . dO        (B[k=i][n=d] = dO[i][d]: (3) from sdO)
//   dP^T (16x64) = V_w (A, (4) from sV) . dO^T (B[k=d][n=i] = dO[i][d]: (2) from sdO)
//   dS^T = P^T * (dP^T - Di[col])              (elementwise, same C layout)
//   dK_w (16xD) += dS^T (A via (1)) . Q        (B[k=i][n=d] = Q[i][d]: (3) from sQ)
// dq_kernel, per warp (16 queries) and key tile (64 keys):
//   S (16x64)  = Q_w (A, (4)) . K^T            (B[k=d][n=j] = K[j][d]: (2) from sK)
//   dP (16x64) = dO_w (A, (4)) . V^T           (B[k=d][n=j] = V[j][d]: (2) from sV)
//   dS = P * (dP - Di[row])                    (C layout: row g / g+8, key 8n + 2t + {0,1})
//   dQ_w (16xD) += dS (A via (1)) . K          (B[k=j][n=d] = K[j][d]: (3) from sK)
//
// Budget (128 threads): shared memory 6 tiles of 64 x (D+8) bf16 (+ 1 KB of
// per-query stats in dkdv) = 55296 (+1024) B for D = 64, dynamic, opted in.
// Registers (D = 64): dkdv: K, V frags 32 + dK, dV acc 64 + S^T, dP^T 64 +
// packed A 16; dq: Q frags 16 (dO frags reloaded per tile) + dQ acc 32 + S, dP 64 + packed A 16.
// Check -Xptxas=-v for no spills.

namespace nq::cuda {
namespace {
namespace fa2 {

template <int D>
struct BwdLay {
  static constexpr int LD = Lay<D>::LD;
  static constexpr size_t tile = Lay<D>::tile;
  static constexpr size_t stats = 4 * BM * sizeof(float);  // dkdv: lse2[2][BM], Di[2][BM]
  static constexpr size_t bytes = 6 * tile + stats;
};

// Packs fp32 pairs to bf16x2 (low half = first = lower column).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// acc (16 x 64, C layout, 8 n8 tiles) -> A fragments of 4 k16 chunks, rule (1).
__device__ __forceinline__ void c_to_a(uint32_t (&a)[BN / 16][4], const float (&c)[BN / 8][4]) {
#pragma unroll
  for (int n = 0; n < BN / 8; ++n) {
    a[n / 2][(n % 2) * 2 + 0] = pack_bf16(c[n][0], c[n][1]);  // row g:   a0 (n even) / a2 (n odd)
    a[n / 2][(n % 2) * 2 + 1] = pack_bf16(c[n][2], c[n][3]);  // row g+8: a1 (n even) / a3 (n odd)
  }
}

// acc (16 x 64) = A (16 x D, KC chunks in registers) . X^T, X = 64 rows x D in
// shared memory (row stride LD): B[k=d][n=row] = X[row][d], rule (2).
template <int D>
__device__ __forceinline__ void mma_abt(float (&acc)[BN / 8][4], const uint32_t (&a)[D / 16][4],
                                        const bf16* x, int lane) {
  constexpr int LD = Lay<D>::LD;
#pragma unroll
  for (int n = 0; n < BN / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
  for (int np = 0; np < BN / 16; ++np) {  // rows 16np..16np+15 of X = n8 tiles 2np, 2np+1
    const int r = np * 16 + (lane % 8) + 8 * (lane / 16), c = 8 * ((lane / 8) % 2);
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
      uint32_t f[4];
      ldmatrix_x4(f, x + r * LD + kc * 16 + c);
      mma_bf16(acc[2 * np], a[kc], f[0], f[1]);
      mma_bf16(acc[2 * np + 1], a[kc], f[2], f[3]);
    }
  }
}

// acc (16 x D) += A (16 x 64, 4 k16 chunks in registers) . X, X = 64 rows x D
// in shared memory: B[k=row][n=d] = X[row][d], rule (3) (ldmatrix.trans).
template <int D>
__device__ __forceinline__ void mma_ab(float (&acc)[D / 8][4], const uint32_t (&a)[BN / 16][4], const bf16* x,
                                       int lane) {
  constexpr int LD = Lay<D>::LD;
#pragma unroll
  for (int kc = 0; kc < BN / 16; ++kc) {
    const int r = kc * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {  // n8 tiles 2dp, 2dp+1 = cols 16dp..16dp+15
      uint32_t f[4];
      ldmatrix_x4_trans(f, x + r * LD + dp * 16 + 8 * (lane / 16));
      mma_bf16(acc[2 * dp], a[kc], f[0], f[1]);
      mma_bf16(acc[2 * dp + 1], a[kc], f[2], f[3]);
    }
  }
}

// A fragments (rule (4)) of rows r0..r0+15 of X (row-major, stride LD), all D/16 chunks.
template <int D>
__device__ __forceinline__ void load_a(uint32_t (&a)[D / 16][4], const bf16* x, int r0, int lane) {
  constexpr int LD = Lay<D>::LD;
  const int r = r0 + (lane % 8) + 8 * ((lane / 8) % 2), c = 8 * (lane / 16);
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) ldmatrix_x4(a[kc], x + r * LD + kc * 16 + c);
}

// ------------------------------------------------------------------ dK, dV
template <int D>
__global__ void __launch_bounds__(kThreads)
    bwd_dkdv_kernel(Geom g, const bf16* __restrict__ q, const bf16* __restrict__ k,
                    const bf16* __restrict__ v, const bf16* __restrict__ dout, const float* __restrict__ lse,
                    const float* __restrict__ delta, bf16* __restrict__ dk, bf16* __restrict__ dv) {
  using L = BwdLay<D>;
  constexpr int KC = D / 16, NS = BM / 8, NO = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::tile);
  const auto sQ = [&](int i) { return reinterpret_cast<bf16*>(smem + (2 + i) * L::tile); };
  const auto sdO = [&](int i) { return reinterpret_cast<bf16*>(smem + (4 + i) * L::tile); };
  float* stats = reinterpret_cast<float*>(smem + 6 * L::tile);
  const auto sL = [&](int i) { return stats + i * BM; };        // log2e * lse, +inf: row contributes nothing
  const auto sD = [&](int i) { return stats + (2 + i) * BM; };  // Di

  // Key tiles in natural order: under a causal mask the first key tiles see
  // the most query tiles, so they start first.
  const int bh = blockIdx.y, b = bh / g.H, j0 = blockIdx.x * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gq = lane / 4, tq = lane % 4;
  const bf16* qb = q + static_cast<int64_t>(bh) * g.T * D;
  const bf16* dob = dout + static_cast<int64_t>(bh) * g.T * D;
  const bf16* kb = k + static_cast<int64_t>(bh) * g.S * D;
  const bf16* vb = v + static_cast<int64_t>(bh) * g.S * D;
  const float* Lb = lse + static_cast<int64_t>(bh) * g.T;
  const float* Db = delta + static_cast<int64_t>(bh) * g.T;
  // This thread's two keys (C rows g and g+8 of the warp's 16) and whether they are real keys.
  const int kj0 = j0 + warp * 16 + gq, kj1 = kj0 + 8;
  const bool kok0 = kj0 < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + kj0] != 0.f);
  const bool kok1 = kj1 < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + kj1] != 0.f);

  // Causal: query i sees key j0 only if i >= j0 - (S - T); earlier query tiles see none of these keys.
  int qstart = 0;
  if (g.causal) {
    const int64_t first = static_cast<int64_t>(j0) - (static_cast<int64_t>(g.S) - g.T);
    qstart = first <= 0 ? 0 : static_cast<int>(first / BM * BM);
  }
  const int ntiles = qstart < g.T ? (g.T - qstart + BM - 1) / BM : 0;
  const float sl2 = g.scale * kLog2e;

  // Q, dO tile and per-query stats of query tile t into buffer buf.
  const auto load_q = [&](int t, int buf) {
    const int i0 = qstart + t * BM;
    load_tile_async<D>(sQ(buf), qb, i0, g.T);
    load_tile_async<D>(sdO(buf), dob, i0, g.T);
    for (int r = threadIdx.x; r < BM; r += kThreads) {
      const int i = i0 + r;
      const float l = i < g.T ? Lb[i] : -INFINITY;
      sL(buf)[r] = l == -INFINITY ? INFINITY : l * kLog2e;
      sD(buf)[r] = i < g.T ? Db[i] : 0.f;
    }
  };

  load_tile_async<D>(sK, kb, j0, g.S);
  load_tile_async<D>(sV, vb, j0, g.S);
  cp_async_commit();
  if (ntiles > 0) load_q(0, 0);
  cp_async_commit();

  uint32_t ka[KC][4], va[KC][4];  // A fragments of the warp's 16 keys of K and V (rule (4))
  float dka[NO][4], dva[NO][4];   // dK, dV accumulators (C layout: key row g / g+8, d col 8n + 2t + {0,1})
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    dka[n][0] = dka[n][1] = dka[n][2] = dka[n][3] = 0.f;
    dva[n][0] = dva[n][1] = dva[n][2] = dva[n][3] = 0.f;
  }

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t & 1, i0 = qstart + t * BM;
    if (t + 1 < ntiles) load_q(t + 1, buf ^ 1);  // buffer buf^1 was freed by the barrier ending t-1
    cp_async_commit();                           // (possibly empty group: uniform wait count)
    cp_async_wait<1>();                          // K, V and tile t have landed
    __syncthreads();                             // ... for every thread, and the stats stores too
    if (t == 0) {
      load_a<D>(ka, sK, warp * 16, lane);
      load_a<D>(va, sV, warp * 16, lane);
    }
    const bf16* qt = sQ(buf);
    const bf16* dot = sdO(buf);
    const float* ls = sL(buf);
    const float* ds = sD(buf);

    // S^T (16 keys x 64 queries); element s[n][e]: key kj0 (e < 2) / kj1,
    // query col c = 8n + 2tq + (e & 1), i = i0 + c.
    float s[NS][4];
    mma_abt<D>(s, ka, qt, lane);
#pragma unroll
    for (int n = 0; n < NS; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 8 * n + 2 * tq + (e & 1);
        const bool vis = (e < 2 ? kok0 : kok1) && g.causal_ok(i0 + c, e < 2 ? kj0 : kj1);
        s[n][e] = vis ? exp2f(fmaf(s[n][e], sl2, -ls[c])) : 0.f;  // P^T; 0 for +inf stats (dead rows)
      }
    }
    uint32_t pa[BN / 16][4];
    c_to_a(pa, s);
    mma_ab<D>(dva, pa, dot, lane);  // dV += P^T dO

    float dp[NS][4];
    mma_abt<D>(dp, va, dot, lane);  // dP^T = V dO^T (same layout as S^T)
#pragma unroll
    for (int n = 0; n < NS; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[n][e] = s[n][e] * (dp[n][e] - ds[8 * n + 2 * tq + (e & 1)]);  // dS^T
    }
    c_to_a(pa, dp);
    mma_ab<D>(dka, pa, qt, lane);  // dK += dS^T Q (scaled at the end)
    __syncthreads();               // buffer buf fully read before iteration t+1 refills it
  }
  cp_async_wait<0>();  // nothing in flight at exit (e.g. no query tile at all)

  // Rows kj0 / kj1, cols 8n + 2tq, +1. Keys with no visible query get 0.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int j = h == 0 ? kj0 : kj1;
    if (j >= g.S) continue;
    const int64_t row = (static_cast<int64_t>(bh) * g.S + j) * D;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      if (dk)
        *reinterpret_cast<__nv_bfloat162*>(dk + row + 8 * n + 2 * tq) =
            __floats2bfloat162_rn(dka[n][2 * h] * g.scale, dka[n][2 * h + 1] * g.scale);
      if (dv)
        *reinterpret_cast<__nv_bfloat162*>(dv + row + 8 * n + 2 * tq) =
            __floats2bfloat162_rn(dva[n][2 * h], dva[n][2 * h + 1]);
    }
  }
}

// ------------------------------------------------------------------ dQ
// (kThreads, 2): without the minimum-blocks hint ptxas on sm_90 aims at 168
// registers (3 CTAs/SM) and spills a few bytes; 2 CTAs/SM is what 55 KB of
// shared memory per CTA allows on sm_80 anyway.
template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    bwd_dq_kernel(Geom g, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                  const bf16* __restrict__ dout, const float* __restrict__ lse,
                  const float* __restrict__ delta, bf16* __restrict__ dq) {
  using L = BwdLay<D>;
  constexpr int KC = D / 16, NS = BN / 8, NO = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sdO = reinterpret_cast<bf16*>(smem + L::tile);
  const auto sK = [&](int i) { return reinterpret_cast<bf16*>(smem + (2 + i) * L::tile); };
  const auto sV = [&](int i) { return reinterpret_cast<bf16*>(smem + (4 + i) * L::tile); };

  // Query tiles in reverse order: under a causal mask the last ones do the most work.
  const int bh = blockIdx.y, b = bh / g.H, i0 = (gridDim.x - 1 - blockIdx.x) * BM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gq = lane / 4, tq = lane % 4;
  const bf16* kb = k + static_cast<int64_t>(bh) * g.S * D;
  const bf16* vb = v + static_cast<int64_t>(bh) * g.S * D;
  // This thread's two query rows (C rows g and g+8 of the warp's 16).
  const int qi0 = i0 + warp * 16 + gq, qi1 = qi0 + 8;
  const int64_t r0 = static_cast<int64_t>(bh) * g.T + qi0, r1 = r0 + 8;
  const float l0 = qi0 < g.T ? lse[r0] : -INFINITY, l1 = qi1 < g.T ? lse[r1] : -INFINITY;
  const float L20 = l0 == -INFINITY ? INFINITY : l0 * kLog2e;  // +inf: P = 0 on this row
  const float L21 = l1 == -INFINITY ? INFINITY : l1 * kLog2e;
  const float D0 = qi0 < g.T ? delta[r0] : 0.f, D1 = qi1 < g.T ? delta[r1] : 0.f;

  const int kend = g.key_end(min(i0 + BM, g.T) - 1);
  const int ntiles = (kend + BN - 1) / BN;
  const float sl2 = g.scale * kLog2e;

  load_tile_async<D>(sQ, q + static_cast<int64_t>(bh) * g.T * D, i0, g.T);
  load_tile_async<D>(sdO, dout + static_cast<int64_t>(bh) * g.T * D, i0, g.T);
  cp_async_commit();
  if (ntiles > 0) {
    load_tile_async<D>(sK(0), kb, 0, g.S);
    load_tile_async<D>(sV(0), vb, 0, g.S);
  }
  cp_async_commit();

  uint32_t qa[KC][4];  // A fragments of the warp's 16 rows of Q (rule (4)); dO's are reloaded per
                       // tile from sdO (fewer live registers: no spills on sm_90)
  float dqa[NO][4];    // dQ accumulator (C layout: row g / g+8, d col 8n + 2t + {0,1})
#pragma unroll
  for (int n = 0; n < NO; ++n) dqa[n][0] = dqa[n][1] = dqa[n][2] = dqa[n][3] = 0.f;

  for (int t = 0; t < ntiles; ++t) {
    const int buf = t & 1, j0 = t * BN;
    if (t + 1 < ntiles) {
      load_tile_async<D>(sK(buf ^ 1), kb, j0 + BN, g.S);
      load_tile_async<D>(sV(buf ^ 1), vb, j0 + BN, g.S);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (t == 0) load_a<D>(qa, sQ, warp * 16, lane);
    const bf16* kt = sK(buf);
    const bf16* vt = sV(buf);

    // S (16 queries x 64 keys); element s[n][e]: row qi0 (e < 2) / qi1, key j = j0 + 8n + 2tq + (e & 1).
    // Bit 2n + x: this thread's key j0 + 8n + 2tq + x is a real key (j < S, not padding).
    uint32_t kbits = 0;
#pragma unroll
    for (int n = 0; n < NS; ++n) {
#pragma unroll
      for (int x = 0; x < 2; ++x) {
        const int j = j0 + 8 * n + 2 * tq + x;
        const bool ok = j < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + j] != 0.f);
        kbits |= static_cast<uint32_t>(ok) << (2 * n + x);
      }
    }
    float s[NS][4];
    mma_abt<D>(s, qa, kt, lane);
#pragma unroll
    for (int n = 0; n < NS; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = j0 + 8 * n + 2 * tq + (e & 1);
        const bool vis = ((kbits >> (2 * n + (e & 1))) & 1u) != 0 && g.causal_ok(e < 2 ? qi0 : qi1, j);
        s[n][e] = vis ? exp2f(fmaf(s[n][e], sl2, -(e < 2 ? L20 : L21))) : 0.f;  // P
      }
    }
    float dp[NS][4];
    {
      uint32_t oa[KC][4];
      load_a<D>(oa, sdO, warp * 16, lane);
      mma_abt<D>(dp, oa, vt, lane);  // dP = dO V^T
    }
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      dp[n][0] = s[n][0] * (dp[n][0] - D0);  // dS
      dp[n][1] = s[n][1] * (dp[n][1] - D0);
      dp[n][2] = s[n][2] * (dp[n][2] - D1);
      dp[n][3] = s[n][3] * (dp[n][3] - D1);
    }
    uint32_t da[BN / 16][4];
    c_to_a(da, dp);
    mma_ab<D>(dqa, da, kt, lane);  // dQ += dS K (scaled at the end)
    __syncthreads();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = h == 0 ? qi0 : qi1;
    if (i >= g.T) continue;
    bf16* row = dq + (static_cast<int64_t>(bh) * g.T + i) * D;
#pragma unroll
    for (int n = 0; n < NO; ++n)
      *reinterpret_cast<__nv_bfloat162*>(row + 8 * n + 2 * tq) =
          __floats2bfloat162_rn(dqa[n][2 * h] * g.scale, dqa[n][2 * h + 1] * g.scale);
  }
}

// ------------------------------------------------------------------ host side
inline bool backward_supported(const Geom& g, const void* q, const void* k, const void* v, const void* dout,
                               const void* dq, const void* dk, const void* dv) {
  const auto al = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const auto al4 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; };  // null is fine
  return g.D == 64 && g.Dv == 64 && al(q) && al(k) && al(v) && al(dout) && al4(dq) && al4(dk) && al4(dv);
}

// delta = Di (B*H*T fp32), computed beforehand; dq / dk / dv may be null (not needed).
inline void backward(const Geom& g, cudaStream_t st, const bf16* q, const bf16* k, const bf16* v,
                     const bf16* dout, const float* lse, const float* delta, bf16* dq, bf16* dk, bf16* dv) {
  constexpr int D = 64;
  constexpr size_t bytes = BwdLay<D>::bytes;
  if (dk || dv) {
    NQ_CUDA_CHECK(cudaFuncSetAttribute(bwd_dkdv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)),
                  kOp);
    dim3 grid((g.S + BN - 1) / BN, g.B * g.H);
    bwd_dkdv_kernel<D><<<grid, kThreads, bytes, st>>>(g, q, k, v, dout, lse, delta, dk, dv);
    detail::check_launch(kOp);
  }
  if (dq) {
    NQ_CUDA_CHECK(cudaFuncSetAttribute(bwd_dq_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)),
                  kOp);
    dim3 grid((g.T + BM - 1) / BM, g.B * g.H);
    bwd_dq_kernel<D><<<grid, kThreads, bytes, st>>>(g, q, k, v, dout, lse, delta, dq);
    detail::check_launch(kOp);
  }
}

}  // namespace fa2
}  // namespace
}  // namespace nq::cuda
