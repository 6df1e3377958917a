// scaled_dot_product_attention on CUDA: fused, tiled, online-softmax kernels
// (flash-attention style). Scores live only in registers and shared memory;
// the forward saves O and the per-row log-sum-exp L (fp32), the backward
// recomputes P = exp(scale * q.k - L).
//
// Semantics (same as ops/attention.hpp on the CPU): q (B,H,T,D), k (B,H,S,D),
// v (B,H,S,Dv). Query i sees key j when keep[b,j] != 0 and, if causal,
// j <= i + S - T (the last query aligned with the last key). A query that sees
// no key outputs 0, has L = -inf and gets / gives zero gradient.
//
// Simple kernels (all dtypes, fp32 math), one warp per query row (forward,
// dQ) or per key row (dK/dV), lanes over the 32 keys (queries) of a shared
// memory tile; the head dim is padded with zeros to DM in {32, 64, 128}.
//   forward: block = 4 warps x RPW query rows of one (b,h); loops over key
//            tiles (stops at the causal diagonal), online softmax per row.
//   backward: Di = rowsum(dO * O); a dK/dV kernel over key rows that loops
//            over query tiles (starting at the causal diagonal); a dQ kernel
//            over query rows that loops over key tiles. No atomics.
// Tensor-core paths for bf16: attention_fa2.cuh (FlashAttention-2 style
// mma.sync forward; D == Dv in {64, 128}) and attention_tc.cuh (WMMA, any
// D <= 128, forward and backward). Selection, read on every call:
// NQ_ATTN_IMPL = fa2 (default) | wmma | simple; fa2 falls back to wmma where
// it does not apply. Backward (bf16): NQ_ATTN_BWD = fa2 (default) | wmma
// (attention_fa2_bwd.cuh, D == Dv == 64; falls back to wmma elsewhere). fa2
// became the default after it matched wmma on every tests/gpu case on an H100
// and cut the GPT-2 124M step from 67.9 to 58.6 ms (docs/cuda.md).
// NQ_ATTN_SIMPLE=1 (older switch) forces the simple kernels.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <nextquill/cuda/attention.hpp>

#include "common.cuh"

namespace nq::cuda {
namespace {

constexpr const char* kOp = "scaled_dot_product_attention";
constexpr int kWarps = 4;  // warps per block in the simple kernels
constexpr int kTile = 32;  // keys (queries) per shared-memory tile = lanes
constexpr unsigned kFull = 0xffffffffu;

struct Geom {
  int B, H, T, S, D, Dv;
  float scale;
  bool causal;
  const float* keep;  // (B,S) 1 = real key, 0 = padding; null: all real
  // Key j is causally visible to query i.
  __device__ __forceinline__ bool causal_ok(int i, int j) const {
    return !causal || static_cast<int64_t>(j) <= static_cast<int64_t>(i) + S - T;
  }
  // Keys [0, key_end(i)) may be visible to queries <= i (causal bound only).
  __host__ __device__ __forceinline__ int key_end(int i_last) const {
    if (!causal) return S;
    int64_t e = static_cast<int64_t>(i_last) + S - T + 1;
    return static_cast<int>(e < 0 ? 0 : (e > S ? S : e));
  }
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Copies rows [r0, r0+R) (clipped to n_rows) of a (.., n_rows, ncols)
// matrix at `src` into shared dst[R][LD] as fp32, zero-padding rows past
// n_rows and columns past ncols up to DM.
template <typename T, int R, int DM, int LD>
__device__ __forceinline__ void load_tile(float (*dst)[LD], const T* src, int r0, int n_rows, int ncols) {
  for (int e = threadIdx.x; e < R * DM; e += blockDim.x) {
    const int r = e / DM, d = e % DM, row = r0 + r;
    dst[r][d] = (row < n_rows && d < ncols) ? detail::load(src + static_cast<int64_t>(row) * ncols + d) : 0.f;
  }
}

// ---------------------------------------------------------------- forward
template <typename T, int DM, int RPW>
__global__ void __launch_bounds__(kWarps * 32)
    attn_fwd_simple(Geom g, const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                    T* __restrict__ o, float* __restrict__ lse) {
  constexpr int BQ = kWarps * RPW, C = DM / 32;
  __shared__ float sQ[BQ][DM];
  __shared__ float sK[kTile][DM + 1];  // +1: lane j reads row j, conflict-free
  __shared__ float sV[kTile][DM + 1];
  const int bh = blockIdx.y, b = bh / g.H;
  const int i0 = blockIdx.x * BQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* qb = q + static_cast<int64_t>(bh) * g.T * g.D;
  const T* kb = k + static_cast<int64_t>(bh) * g.S * g.D;
  const T* vb = v + static_cast<int64_t>(bh) * g.S * g.Dv;
  load_tile<T, BQ, DM, DM>(sQ, qb, i0, g.T, g.D);

  float m[RPW], l[RPW], acc[RPW][C];
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    m[r] = -INFINITY, l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < C; ++c) acc[r][c] = 0.f;
  }
  const int kend = g.key_end(min(i0 + BQ, g.T) - 1);  // tiles past the causal diagonal are skipped
  for (int j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();  // previous tile fully used (and sQ written, first time)
    load_tile<T, kTile, DM, DM + 1>(sK, kb, j0, g.S, g.D);
    load_tile<T, kTile, DM, DM + 1>(sV, vb, j0, g.S, g.Dv);
    __syncthreads();
    const int j = j0 + lane;
    const bool key_ok = j < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + j] != 0.f);
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      const int row = warp * RPW + r, i = i0 + row;
      float s = 0.f;
#pragma unroll
      for (int d = 0; d < DM; ++d) s = fmaf(sQ[row][d], sK[lane][d], s);
      const bool vis = key_ok && g.causal_ok(i, j);
      s = vis ? s * g.scale : -INFINITY;
      const float mnew = fmaxf(m[r], warp_max(s));
      if (mnew == -INFINITY) continue;        // warp-uniform: no visible key so far
      const float alpha = expf(m[r] - mnew);  // 0 when m was -inf
      const float p = vis ? expf(s - mnew) : 0.f;
      l[r] = l[r] * alpha + warp_sum(p);
      m[r] = mnew;
#pragma unroll
      for (int c = 0; c < C; ++c) acc[r][c] *= alpha;
#pragma unroll 8
      for (int jj = 0; jj < kTile; ++jj) {
        const float pj = __shfl_sync(kFull, p, jj);
#pragma unroll
        for (int c = 0; c < C; ++c) acc[r][c] = fmaf(pj, sV[jj][lane + 32 * c], acc[r][c]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int i = i0 + warp * RPW + r;
    if (i >= g.T) continue;
    const int64_t row = static_cast<int64_t>(bh) * g.T + i;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;  // l == 0: no visible key, output 0
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (d < g.Dv) detail::store(o + row * g.Dv + d, acc[r][c] * inv);
    }
    if (lane == 0) lse[row] = l[r] > 0.f ? m[r] + logf(l[r]) : -INFINITY;
  }
}

// ------------------------------------------------------ backward: Di
// Di = rowsum(dO * O) (= rowsum(P * dP)); one warp per row.
template <typename T>
__global__ void attn_bwd_delta(int64_t rows, int Dv, const T* __restrict__ o, const T* __restrict__ dout,
                               float* __restrict__ delta) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    float s = 0.f;
    for (int d = lane; d < Dv; d += 32) s += detail::load(o + r * Dv + d) * detail::load(dout + r * Dv + d);
    s = warp_sum(s);
    if (lane == 0) delta[r] = s;
  }
}

// ------------------------------------------------------ backward: dK, dV
// Block = 4 warps x KPW key rows of one (b,h); lanes over the 32 queries of a
// tile. dV_j = sum_i P_ij dO_i, dK_j = scale * sum_i dS_ij q_i,
// dS_ij = P_ij (dO_i . v_j - Di).
template <typename T, int DM, int KPW>
__global__ void __launch_bounds__(kWarps * 32)
    attn_bwd_dkdv_simple(Geom g, const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                         const T* __restrict__ dout, const float* __restrict__ lse,
                         const float* __restrict__ delta, T* __restrict__ dk, T* __restrict__ dv) {
  constexpr int BK = kWarps * KPW, C = DM / 32;
  __shared__ float sK[BK][DM];
  __shared__ float sV[BK][DM];
  __shared__ float sQ[kTile][DM + 1];
  __shared__ float sdO[kTile][DM + 1];
  const int bh = blockIdx.y, b = bh / g.H;
  const int j0 = blockIdx.x * BK;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* qb = q + static_cast<int64_t>(bh) * g.T * g.D;
  const T* dob = dout + static_cast<int64_t>(bh) * g.T * g.Dv;
  const float* Lb = lse + static_cast<int64_t>(bh) * g.T;
  const float* Db = delta + static_cast<int64_t>(bh) * g.T;
  load_tile<T, BK, DM, DM>(sK, k + static_cast<int64_t>(bh) * g.S * g.D, j0, g.S, g.D);
  load_tile<T, BK, DM, DM>(sV, v + static_cast<int64_t>(bh) * g.S * g.Dv, j0, g.S, g.Dv);

  bool key_ok[KPW];
  float ak[KPW][C], av[KPW][C];
#pragma unroll
  for (int r = 0; r < KPW; ++r) {
    const int j = j0 + warp * KPW + r;
    key_ok[r] = j < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + j] != 0.f);
#pragma unroll
    for (int c = 0; c < C; ++c) ak[r][c] = av[r][c] = 0.f;
  }
  // Causal: query i sees key j0 only if i >= j0 - (S - T); earlier tiles see none of the block's keys.
  int qstart = 0;
  if (g.causal) {
    const int64_t first = static_cast<int64_t>(j0) - (g.S - g.T);
    qstart = first <= 0 ? 0 : static_cast<int>(first / kTile * kTile);
  }
  for (int i0 = qstart; i0 < g.T; i0 += kTile) {
    __syncthreads();
    load_tile<T, kTile, DM, DM + 1>(sQ, qb, i0, g.T, g.D);
    load_tile<T, kTile, DM, DM + 1>(sdO, dob, i0, g.T, g.Dv);
    __syncthreads();
    const int i = i0 + lane;
    const float L = i < g.T ? Lb[i] : -INFINITY;
    const float Di = i < g.T ? Db[i] : 0.f;
#pragma unroll
    for (int r = 0; r < KPW; ++r) {
      if (!key_ok[r]) continue;  // warp-uniform; a padding key gets zero gradient
      const int kr = warp * KPW + r, j = j0 + kr;
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int d = 0; d < DM; ++d) {
        s = fmaf(sQ[lane][d], sK[kr][d], s);
        dp = fmaf(sdO[lane][d], sV[kr][d], dp);
      }
      const bool vis = L != -INFINITY && g.causal_ok(i, j);  // L = -inf also covers i >= T
      const float p = vis ? expf(s * g.scale - L) : 0.f;
      const float ds = p * (dp - Di);
#pragma unroll 8
      for (int ii = 0; ii < kTile; ++ii) {
        const float pi = __shfl_sync(kFull, p, ii), dsi = __shfl_sync(kFull, ds, ii);
#pragma unroll
        for (int c = 0; c < C; ++c) {
          av[r][c] = fmaf(pi, sdO[ii][lane + 32 * c], av[r][c]);
          ak[r][c] = fmaf(dsi, sQ[ii][lane + 32 * c], ak[r][c]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < KPW; ++r) {
    const int j = j0 + warp * KPW + r;
    if (j >= g.S) continue;
    const int64_t row = static_cast<int64_t>(bh) * g.S + j;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (dk && d < g.D) detail::store(dk + row * g.D + d, ak[r][c] * g.scale);
      if (dv && d < g.Dv) detail::store(dv + row * g.Dv + d, av[r][c]);
    }
  }
}

// ------------------------------------------------------ backward: dQ
// Block = 4 warps x RPW query rows; lanes over the 32 keys of a tile.
// dQ_i = scale * sum_j dS_ij k_j.
template <typename T, int DM, int RPW>
__global__ void __launch_bounds__(kWarps * 32)
    attn_bwd_dq_simple(Geom g, const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                       const T* __restrict__ dout, const float* __restrict__ lse,
                       const float* __restrict__ delta, T* __restrict__ dq) {
  constexpr int BQ = kWarps * RPW, C = DM / 32;
  __shared__ float sQ[BQ][DM];
  __shared__ float sdO[BQ][DM];
  __shared__ float sK[kTile][DM + 1];
  __shared__ float sV[kTile][DM + 1];
  const int bh = blockIdx.y, b = bh / g.H;
  const int i0 = blockIdx.x * BQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* kb = k + static_cast<int64_t>(bh) * g.S * g.D;
  const T* vb = v + static_cast<int64_t>(bh) * g.S * g.Dv;
  load_tile<T, BQ, DM, DM>(sQ, q + static_cast<int64_t>(bh) * g.T * g.D, i0, g.T, g.D);
  load_tile<T, BQ, DM, DM>(sdO, dout + static_cast<int64_t>(bh) * g.T * g.Dv, i0, g.T, g.Dv);

  float L[RPW], Di[RPW], acc[RPW][C];
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int i = i0 + warp * RPW + r;
    const int64_t row = static_cast<int64_t>(bh) * g.T + i;
    L[r] = i < g.T ? lse[row] : -INFINITY;  // -inf: nothing to do for this row
    Di[r] = i < g.T ? delta[row] : 0.f;
#pragma unroll
    for (int c = 0; c < C; ++c) acc[r][c] = 0.f;
  }
  const int kend = g.key_end(min(i0 + BQ, g.T) - 1);
  for (int j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();
    load_tile<T, kTile, DM, DM + 1>(sK, kb, j0, g.S, g.D);
    load_tile<T, kTile, DM, DM + 1>(sV, vb, j0, g.S, g.Dv);
    __syncthreads();
    const int j = j0 + lane;
    const bool key_ok = j < g.S && (!g.keep || g.keep[static_cast<int64_t>(b) * g.S + j] != 0.f);
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      if (L[r] == -INFINITY) continue;  // warp-uniform
      const int row = warp * RPW + r, i = i0 + row;
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int d = 0; d < DM; ++d) {
        s = fmaf(sQ[row][d], sK[lane][d], s);
        dp = fmaf(sdO[row][d], sV[lane][d], dp);
      }
      const bool vis = key_ok && g.causal_ok(i, j);
      const float p = vis ? expf(s * g.scale - L[r]) : 0.f;
      const float ds = p * (dp - Di[r]);
#pragma unroll 8
      for (int jj = 0; jj < kTile; ++jj) {
        const float dsj = __shfl_sync(kFull, ds, jj);
#pragma unroll
        for (int c = 0; c < C; ++c) acc[r][c] = fmaf(dsj, sK[jj][lane + 32 * c], acc[r][c]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int i = i0 + warp * RPW + r;
    if (i >= g.T) continue;
    const int64_t row = static_cast<int64_t>(bh) * g.T + i;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (d < g.D) detail::store(dq + row * g.D + d, acc[r][c] * g.scale);
    }
  }
}

// (B,S) mask of any supported dtype -> fp32 keep (1 = real key).
template <typename M>
__global__ void attn_keep(int64_t n, const M* __restrict__ m, float* __restrict__ keep) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    keep[e] = m[e] != M(0) ? 1.f : 0.f;
}

}  // namespace
}  // namespace nq::cuda

#include "attention_fa2.cuh"
#include "attention_fa2_bwd.cuh"
#include "attention_tc.cuh"

namespace nq::cuda {
namespace {

// ---------------------------------------------------------------- host side
int head_dim_bucket(int d) { return d <= 32 ? 32 : (d <= 64 ? 64 : 128); }

enum class Impl { Simple, Wmma, Fa2 };

// Read per call so tests can switch implementations with setenv.
Impl selected_impl() {
  const char* s = std::getenv("NQ_ATTN_SIMPLE");
  if (s && *s && std::strcmp(s, "0") != 0) return Impl::Simple;
  const char* e = std::getenv("NQ_ATTN_IMPL");
  if (!e || !*e || std::strcmp(e, "fa2") == 0) return Impl::Fa2;
  if (std::strcmp(e, "wmma") == 0) return Impl::Wmma;
  if (std::strcmp(e, "simple") == 0) return Impl::Simple;
  fail(kOp, "NQ_ATTN_IMPL = '", e, "' is not one of fa2, wmma, simple");
}

enum class BwdImpl { Wmma, Fa2 };

// bf16 backward: NQ_ATTN_BWD = fa2 (default) | wmma (attention_fa2_bwd.cuh,
// D == Dv == 64, else wmma). Read per call; NQ_ATTN_IMPL=simple still wins.
BwdImpl selected_bwd_impl() {
  const char* e = std::getenv("NQ_ATTN_BWD");
  if (!e || !*e || std::strcmp(e, "fa2") == 0) return BwdImpl::Fa2;
  if (std::strcmp(e, "wmma") == 0) return BwdImpl::Wmma;
  fail(kOp, "NQ_ATTN_BWD = '", e, "' is not one of fa2, wmma");
}

struct Prepared {
  Geom g;
  Tensor keep;  // holds the fp32 keep mask alive
  cudaStream_t stream;
};

Prepared prepare(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale,
                 bool causal) {
  detail::check_cuda_tensor(q, kOp, "q");
  detail::check_cuda_tensor(k, kOp, "k");
  detail::check_cuda_tensor(v, kOp, "v");
  NQ_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, kOp,
           "expected q (B,H,T,D), k (B,H,S,D), v (B,H,S,Dv), got ", shape_str(q.shape()), ", ",
           shape_str(k.shape()), ", ", shape_str(v.shape()));
  NQ_CHECK(q.size(0) == k.size(0) && q.size(0) == v.size(0) && q.size(1) == k.size(1) &&
               q.size(1) == v.size(1) && k.size(2) == v.size(2) && q.size(3) == k.size(3),
           kOp, "shapes do not match: q ", shape_str(q.shape()), " (B,H,T,D), k ", shape_str(k.shape()),
           " (B,H,S,D), v ", shape_str(v.shape()), " (B,H,S,Dv)");
  NQ_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), kOp, "dtype mismatch: q ", q.brief(), ", k ",
           k.brief(), ", v ", v.brief());
  NQ_CHECK(q.device() == k.device() && q.device() == v.device(), kOp, "q, k, v must be on one device, got ",
           q.device().str(), ", ", k.device().str(), ", ", v.device().str());
  const int64_t D = q.size(3), Dv = v.size(3);
  NQ_CHECK(D >= 1 && D <= kAttentionMaxHeadDim && Dv >= 1 && Dv <= kAttentionMaxHeadDim, kOp,
           "head dims D = ", D, ", Dv = ", Dv, " are not supported on CUDA (1..", kAttentionMaxHeadDim,
           "); q ", shape_str(q.shape()), ", v ", shape_str(v.shape()));
  const int64_t BH = q.size(0) * q.size(1);
  NQ_CHECK(BH <= 65535 && q.size(2) < (int64_t(1) << 30) && k.size(2) < (int64_t(1) << 30), kOp, "B*H = ", BH,
           " (max 65535) or T, S too large for the CUDA kernel");
  Prepared p;
  p.g.B = static_cast<int>(q.size(0)), p.g.H = static_cast<int>(q.size(1));
  p.g.T = static_cast<int>(q.size(2)), p.g.S = static_cast<int>(k.size(2));
  p.g.D = static_cast<int>(D), p.g.Dv = static_cast<int>(Dv);
  p.g.scale = static_cast<float>(scale);
  p.g.causal = causal;
  p.g.keep = nullptr;
  p.stream = detail::stream_of(q);
  if (mask.defined()) {
    NQ_CHECK(mask.dim() == 2 && mask.size(0) == q.size(0) && mask.size(1) == k.size(2), kOp,
             "key_padding_mask ", shape_str(mask.shape()), " must be (B,S) = [", q.size(0), ",", k.size(2),
             "]");
    NQ_CHECK(mask.device() == q.device(), kOp, "key_padding_mask is on ", mask.device().str(), ", q on ",
             q.device().str());
    detail::check_cuda_tensor(mask, kOp, "key_padding_mask");
    p.keep = Tensor::empty(mask.shape(), TensorOptions(kFloat32).with_device(q.device()));
    const int64_t n = mask.numel();
    auto* keep = static_cast<float*>(p.keep.raw_data_ptr());
    if (n > 0) {
      switch (mask.dtype()) {
        case DType::Int64:
          attn_keep<<<detail::blocks_for(n), 256, 0, p.stream>>>(
              n, static_cast<const int64_t*>(mask.raw_data_ptr()), keep);
          break;
        case DType::Float32:
          attn_keep<<<detail::blocks_for(n), 256, 0, p.stream>>>(
              n, static_cast<const float*>(mask.raw_data_ptr()), keep);
          break;
        case DType::Float64:
          attn_keep<<<detail::blocks_for(n), 256, 0, p.stream>>>(
              n, static_cast<const double*>(mask.raw_data_ptr()), keep);
          break;
        default:
          fail(kOp, "key_padding_mask must be int64 or float, got ", mask.brief());
      }
      detail::check_launch(kOp);
    }
    p.g.keep = keep;
  }
  return p;
}

template <int DM>
constexpr int rows_per_warp() {
  return DM == 128 ? 2 : 4;  // keeps static shared memory under 48 KB
}

template <typename T, int DM>
void forward_simple(const Prepared& p, const T* q, const T* k, const T* v, T* o, float* lse) {
  constexpr int RPW = rows_per_warp<DM>(), BQ = kWarps * RPW;
  dim3 grid((p.g.T + BQ - 1) / BQ, p.g.B * p.g.H);
  attn_fwd_simple<T, DM, RPW><<<grid, kWarps * 32, 0, p.stream>>>(p.g, q, k, v, o, lse);
  detail::check_launch(kOp);
}

template <typename T, int DM>
void backward_simple(const Prepared& p, const T* q, const T* k, const T* v, const T* dout, const float* lse,
                     const float* delta, T* dq, T* dk, T* dv) {
  constexpr int RPW = rows_per_warp<DM>(), B = kWarps * RPW;
  if (dk || dv) {
    dim3 grid((p.g.S + B - 1) / B, p.g.B * p.g.H);
    attn_bwd_dkdv_simple<T, DM, RPW>
        <<<grid, kWarps * 32, 0, p.stream>>>(p.g, q, k, v, dout, lse, delta, dk, dv);
    detail::check_launch(kOp);
  }
  if (dq) {
    dim3 grid((p.g.T + B - 1) / B, p.g.B * p.g.H);
    attn_bwd_dq_simple<T, DM, RPW><<<grid, kWarps * 32, 0, p.stream>>>(p.g, q, k, v, dout, lse, delta, dq);
    detail::check_launch(kOp);
  }
}

template <typename F>
void visit_dm(int d, F&& f) {
  switch (head_dim_bucket(d)) {
    case 32:
      f(std::integral_constant<int, 32>{});
      break;
    case 64:
      f(std::integral_constant<int, 64>{});
      break;
    default:
      f(std::integral_constant<int, 128>{});
      break;
  }
}

}  // namespace

std::vector<Tensor> attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Tensor& key_padding_mask, double scale, bool causal) {
  Prepared p = prepare(q, k, v, key_padding_mask, scale, causal);
  Tensor out = Tensor::empty({q.size(0), q.size(1), q.size(2), v.size(3)}, q.options());
  Tensor lse =
      Tensor::empty({q.size(0), q.size(1), q.size(2)}, TensorOptions(kFloat32).with_device(q.device()));
  if (out.numel() == 0) return {out, lse};
  const int dm = head_dim_bucket(std::max(p.g.D, p.g.Dv));
  detail::visit_float(q.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* qp = static_cast<const T*>(q.raw_data_ptr());
    const T* kp = static_cast<const T*>(k.raw_data_ptr());
    const T* vp = static_cast<const T*>(v.raw_data_ptr());
    T* op = static_cast<T*>(out.raw_data_ptr());
    float* lp = static_cast<float*>(lse.raw_data_ptr());
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      const Impl impl = selected_impl();
      if (impl == Impl::Fa2 && fa2::forward_supported(p.g, qp, kp, vp, op)) {
        fa2::forward(p.g, p.stream, qp, kp, vp, op, lp);
        return;
      }
      if (impl != Impl::Simple && tc::forward_supported(p.g.D, p.g.Dv)) {
        tc::forward(p.g, p.stream, qp, kp, vp, op, lp);
        return;
      }
    }
    visit_dm(dm, [&](auto DMc) { forward_simple<T, decltype(DMc)::value>(p, qp, kp, vp, op, lp); });
  });
  return {out, lse};
}

std::vector<Tensor> attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                       const Tensor& lse, const Tensor& dout, const Tensor& key_padding_mask,
                                       double scale, bool causal, bool need_q, bool need_k, bool need_v) {
  Prepared p = prepare(q, k, v, key_padding_mask, scale, causal);
  const Shape oshape{q.size(0), q.size(1), q.size(2), v.size(3)};
  detail::check_cuda_tensor(out, kOp, "out");
  detail::check_cuda_tensor(dout, kOp, "grad");
  detail::check_cuda_tensor(lse, kOp, "lse");
  NQ_CHECK(out.shape() == oshape && dout.shape() == oshape && out.dtype() == q.dtype() &&
               dout.dtype() == q.dtype(),
           kOp, "backward: out ", out.brief(), " and grad ", dout.brief(), " must be ", shape_str(oshape),
           " ", dtype_name(q.dtype()));
  NQ_CHECK(lse.dtype() == kFloat32 && lse.numel() == q.size(0) * q.size(1) * q.size(2), kOp,
           "backward: lse must be float32 (B,H,T), got ", lse.brief());
  Tensor dq, dk, dv;
  if (need_q) dq = Tensor::empty(q.shape(), q.options());
  if (need_k) dk = Tensor::empty(k.shape(), k.options());
  if (need_v) dv = Tensor::empty(v.shape(), v.options());
  if (!need_q && !need_k && !need_v) return {dq, dk, dv};
  const auto zero = [&](const Tensor& t) {
    if (t.defined() && t.numel() > 0)
      NQ_CUDA_CHECK(cudaMemsetAsync(t.raw_data_ptr(), 0, t.numel() * element_size(t.dtype()), p.stream), kOp);
  };
  if (q.size(2) == 0 || k.size(2) == 0 || q.size(0) * q.size(1) == 0) {  // no scores: all gradients are 0
    zero(dq), zero(dk), zero(dv);
    return {dq, dk, dv};
  }
  const int64_t rows = q.size(0) * q.size(1) * q.size(2);
  Tensor delta = Tensor::empty({rows}, TensorOptions(kFloat32).with_device(q.device()));
  auto* dp = static_cast<float*>(delta.raw_data_ptr());
  const auto* lp = static_cast<const float*>(lse.raw_data_ptr());
  const int dm = head_dim_bucket(std::max(p.g.D, p.g.Dv));
  detail::visit_float(q.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* qp = static_cast<const T*>(q.raw_data_ptr());
    const T* kp = static_cast<const T*>(k.raw_data_ptr());
    const T* vp = static_cast<const T*>(v.raw_data_ptr());
    const T* op = static_cast<const T*>(out.raw_data_ptr());
    const T* gp = static_cast<const T*>(dout.raw_data_ptr());
    T* dqp = need_q ? static_cast<T*>(dq.raw_data_ptr()) : nullptr;
    T* dkp = need_k ? static_cast<T*>(dk.raw_data_ptr()) : nullptr;
    T* dvp = need_v ? static_cast<T*>(dv.raw_data_ptr()) : nullptr;
    attn_bwd_delta<T><<<detail::blocks_for(rows * 32, 256), 256, 0, p.stream>>>(rows, p.g.Dv, op, gp, dp);
    detail::check_launch(kOp);
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      const Impl impl = selected_impl();
      if (impl != Impl::Simple && selected_bwd_impl() == BwdImpl::Fa2 &&
          fa2::backward_supported(p.g, qp, kp, vp, gp, dqp, dkp, dvp)) {
        fa2::backward(p.g, p.stream, qp, kp, vp, gp, lp, dp, dqp, dkp, dvp);
        return;
      }
      if (impl != Impl::Simple && tc::backward_supported(p.g.D, p.g.Dv)) {
        tc::backward(p.g, p.stream, qp, kp, vp, gp, lp, dp, dqp, dkp, dvp);
        return;
      }
    }
    visit_dm(dm, [&](auto DMc) {
      backward_simple<T, decltype(DMc)::value>(p, qp, kp, vp, gp, lp, dp, dqp, dkp, dvp);
    });
  });
  return {dq, dk, dv};
}

}  // namespace nq::cuda
