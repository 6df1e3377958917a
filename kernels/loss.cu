// Fused cross-entropy over the last dim of contiguous logits (R, V), and its
// logit-difference form CE(softmax(z - z0), y) for NextQuill's L_p, with the
// CPU semantics of ops/loss.hpp:
//   row r valid   <=> target[r] != ignore_index (else loss 0, gradient 0)
//   loss_r        = w_r * (lse_r - x_r[y_r]),  x = z (or z - z0)
//   Sum / Mean / WeightedMean divide sum_r loss_r by 1 / #valid / sum w_valid,
//   a zero denominator gives 0 (never NaN) and a zero gradient
//   dx_r          = coef_r * (exp(x_r - lse_r) - onehot(y_r)),
//   coef_r        = w_r * (upstream_r for None, upstream / denom otherwise)
// and dz0 = -dx. Forward: one block per row, a single pass over the row with
// an online (max, sum) in fp32 (fp64 for float64), so each logit is read once;
// the per-row lse is the only thing saved for backward. A target outside
// [0, V) that is not ignore_index sets a device flag (the row is not read);
// the launcher reads the flag back once and reports the first such row.
#include <algorithm>
#include <nextquill/cuda/loss.hpp>
#include <type_traits>

#include "common.cuh"

namespace nq::cuda {

namespace {

using detail::acc_t;
using detail::block_sum;
using detail::cptr;
using detail::dev_exp;
using detail::dev_log;
using detail::load;
using detail::mptr;
using detail::pos_inf;
using detail::store;

// Online logsumexp state: the running max m and sum s = sum exp(x - m). -inf
// elements add nothing; when m is +-inf the sum is unused (lse = m). NaN is
// tracked separately so that it always wins, as in the CPU row_max.
template <typename A>
__device__ __forceinline__ void lse_push(A& m, A& s, A x) {
  if (x > m) {
    s = s * dev_exp(m - x) + A(1);  // m = -inf: exp(-inf) = 0
    m = x;
  } else if (x != -pos_inf<A>()) {
    s += dev_exp(x - m);  // x = m = +inf gives NaN, but then lse = m = +inf
  }
}
template <typename A>
__device__ __forceinline__ void lse_merge(A& m, A& s, A m2, A s2) {
  if (m2 > m) {
    s = s * dev_exp(m - m2) + s2;
    m = m2;
  } else if (m2 != -pos_inf<A>()) {
    s += s2 * dev_exp(m2 - m);
  }
}

// Folds (m, s, nan) over the block (blockDim.x a multiple of 32, <= 1024) in
// a fixed order; the result is valid in thread 0.
template <typename A>
__device__ void block_lse(A& m, A& s, bool& nan) {
  __shared__ A sm[32], ss[32];
  __shared__ int sn[32];
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const A s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
  nan = __any_sync(0xffffffffu, nan);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
    sn[warp] = nan;
  }
  __syncthreads();
  if (warp == 0) {
    m = lane < nwarps ? sm[lane] : -pos_inf<A>();
    s = lane < nwarps ? ss[lane] : A(0);
    nan = lane < nwarps ? sn[lane] != 0 : false;
    for (int o = 16; o > 0; o >>= 1) {
      const A m2 = __shfl_xor_sync(0xffffffffu, m, o);
      const A s2 = __shfl_xor_sync(0xffffffffu, s, o);
      lse_merge(m, s, m2, s2);
    }
    nan = __any_sync(0xffffffffu, nan);
  }
  __syncthreads();  // the shared slots are reused by the next row
}

// One block per row (grid-stride over rows). Writes lse[r], row_loss[r] =
// w*ce in double, and out_rows[r] (Reduction::None only).
template <typename T, bool kDiff>
__global__ void ce_forward_kernel(const T* __restrict__ z, const T* __restrict__ z0,
                                  const int64_t* __restrict__ tg, const T* __restrict__ w, int64_t R,
                                  int64_t V, int64_t ignore, acc_t<T>* __restrict__ lse,
                                  double* __restrict__ row_loss, T* __restrict__ out_rows,
                                  unsigned long long* __restrict__ bad) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const int64_t y = tg[r];
    if (y == ignore || y < 0 || y >= V) {  // the same branch for the whole block
      if (threadIdx.x == 0) {
        if (y != ignore) atomicMin(bad, static_cast<unsigned long long>(r));
        lse[r] = A(0);
        row_loss[r] = 0.0;
        if (out_rows) store(out_rows + r, 0.0f);
      }
      continue;
    }
    const T* zr = z + r * V;
    const T* z0r = kDiff ? z0 + r * V : nullptr;
    A m = -pos_inf<A>(), s = A(0);
    bool nan = false;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      A x = load(zr + v);
      if constexpr (kDiff) x -= load(z0r + v);
      nan |= x != x;
      lse_push(m, s, x);
    }
    block_lse(m, s, nan);
    if (threadIdx.x == 0) {
      A l;
      if (nan)
        l = A(NAN);
      else if (m == pos_inf<A>() || m == -pos_inf<A>())
        l = m;
      else
        l = m + dev_log(s);
      A xy = load(zr + y);
      if constexpr (kDiff) xy -= load(z0r + y);
      lse[r] = l;
      const double ce = static_cast<double>(l) - static_cast<double>(xy);
      const double loss = w ? static_cast<double>(load(w + r)) * ce : ce;
      row_loss[r] = loss;
      if (out_rows) store(out_rows + r, loss);
    }
  }
}

// One block: total = sum row_loss, denominator by reduction, out = total /
// denom (0 when denom == 0). Fixed summation order: deterministic.
template <typename T>
__global__ void ce_reduce_kernel(const double* __restrict__ row_loss, const int64_t* __restrict__ tg,
                                 const T* __restrict__ w, int64_t R, int64_t ignore, int red,
                                 T* __restrict__ out, double* __restrict__ denom_out) {
  double tot = 0.0, nv = 0.0, ws = 0.0;
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
    tot += row_loss[r];
    if (tg[r] != ignore) {
      nv += 1.0;
      if (w) ws += static_cast<double>(load(w + r));
    }
  }
  tot = block_sum(tot);
  nv = block_sum(nv);
  ws = block_sum(ws);
  if (threadIdx.x == 0) {
    double denom = 1.0;  // Sum
    if (red == static_cast<int>(LossReduction::Mean))
      denom = nv;
    else if (red == static_cast<int>(LossReduction::WeightedMean))
      denom = w ? ws : nv;
    store(out, denom != 0.0 ? tot / denom : 0.0);
    *denom_out = denom;
  }
}

// One block per row: dx = coef * (exp(x - lse) - onehot(y)) into dz (if
// given) and -dx into dz0 (if given).
template <typename T, bool kDiff>
__global__ void ce_backward_kernel(const T* __restrict__ z, const T* __restrict__ z0,
                                   const int64_t* __restrict__ tg, const T* __restrict__ w,
                                   const acc_t<T>* __restrict__ lse, const T* __restrict__ g,
                                   const double* __restrict__ denom, int64_t R, int64_t V, int64_t ignore,
                                   T* __restrict__ dz, T* __restrict__ dz0) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const int64_t y = tg[r];
    A coef;
    if (!denom) {  // Reduction::None: per-row upstream
      coef = load(g + r);
    } else {
      const double d = *denom;
      coef = d != 0.0 ? static_cast<A>(static_cast<double>(load(g)) / d) : A(0);
    }
    if (w) coef *= load(w + r);
    T* dr = dz ? dz + r * V : nullptr;
    T* d0r = dz0 ? dz0 + r * V : nullptr;
    if (y == ignore || y < 0 || y >= V || coef == A(0)) {  // out of range cannot pass the forward
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        if (dr) store(dr + v, 0.0f);
        if (d0r) store(d0r + v, 0.0f);
      }
      continue;
    }
    const T* zr = z + r * V;
    const T* z0r = kDiff ? z0 + r * V : nullptr;
    const A l = lse[r];
    const bool dead = l == -pos_inf<A>();  // all -inf row: softmax taken as 0
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      A p = A(0);
      if (!dead) {
        A x = load(zr + v);
        if constexpr (kDiff) x -= load(z0r + v);
        p = dev_exp(x - l) * coef;
      }
      if (v == y) p -= coef;
      if (dr) store(dr + v, p);
      if (d0r) store(d0r + v, -p);
    }
  }
}

// Threads per row: ~8 elements each, a multiple of 32 in [32, 1024].
int row_threads(int64_t V) {
  int64_t t = (V + 7) / 8;
  t = (t + 31) / 32 * 32;
  return static_cast<int>(std::clamp<int64_t>(t, 32, 1024));
}
unsigned row_blocks(int64_t R) { return static_cast<unsigned>(std::min<int64_t>(R, int64_t(1) << 20)); }

struct Checked {
  int64_t R, V;
};

Checked check_inputs(const char* op, const Tensor& logits, const Tensor& logits0, const Tensor& targets,
                     const Tensor& weights) {
  detail::check_cuda_tensor(logits, op, "logits");
  detail::check_cuda_tensor(targets, op, "targets");
  NQ_CHECK(logits.dim() >= 1, op, "logits must have a class dim (..., V), got ", shape_str(logits.shape()));
  NQ_CHECK(targets.dtype() == DType::Int64, op, "targets must be int64, got ", dtype_name(targets.dtype()));
  NQ_CHECK(targets.device() == logits.device(), op, "targets are on ", targets.device().str(), ", logits on ",
           logits.device().str());
  const int64_t V = logits.size(-1), R = targets.numel();
  NQ_CHECK(logits.numel() == R * V, op, "logits ", shape_str(logits.shape()), " do not hold ", R, " rows of ",
           V);
  if (logits0.defined()) {
    detail::check_cuda_tensor(logits0, op, "logits0");
    NQ_CHECK(logits0.shape() == logits.shape() && logits0.dtype() == logits.dtype() &&
                 logits0.device() == logits.device(),
             op, "the two logit tensors differ: ", logits.brief(), " on ", logits.device().str(), " and ",
             logits0.brief(), " on ", logits0.device().str());
  }
  if (weights.defined()) {
    detail::check_cuda_tensor(weights, op, "weights");
    NQ_CHECK(weights.numel() == R && weights.dtype() == logits.dtype() && weights.device() == logits.device(),
             op, "weights ", weights.brief(), " on ", weights.device().str(), " must hold ", R,
             " values of the logits' dtype ", dtype_name(logits.dtype()), " on ", logits.device().str());
  }
  return {R, V};
}

}  // namespace

CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& logits0, const Tensor& targets,
                                          const Tensor& weights, int64_t ignore_index, LossReduction red) {
  const char* op = "cross_entropy";
  const auto [R, V] = check_inputs(op, logits, logits0, targets, weights);
  const Device dev = logits.device();
  cudaStream_t st = detail::stream_of(logits);
  CrossEntropyForward res;
  Tensor bad = Tensor::empty({1}, TensorOptions(DType::Int64).with_device(dev));
  NQ_CUDA_CHECK(cudaMemsetAsync(bad.raw_data_ptr(), 0xFF, sizeof(unsigned long long), st), op);  // "none"
  Tensor row_loss = Tensor::empty({R}, TensorOptions(DType::Float64).with_device(dev));
  detail::visit_float(logits.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    res.lse = Tensor::empty(
        {R}, TensorOptions(std::is_same_v<A, double> ? DType::Float64 : DType::Float32).with_device(dev));
    res.out = Tensor::empty(red == LossReduction::None ? Shape{R} : Shape{}, logits.options());
    T* out_rows = red == LossReduction::None ? mptr<T>(res.out) : nullptr;
    if (R > 0) {
      const int threads = row_threads(V);
      if (logits0.defined())
        ce_forward_kernel<T, true><<<row_blocks(R), threads, 0, st>>>(
            cptr<T>(logits), cptr<T>(logits0), cptr<int64_t>(targets), cptr<T>(weights), R, V, ignore_index,
            mptr<A>(res.lse), mptr<double>(row_loss), out_rows, mptr<unsigned long long>(bad));
      else
        ce_forward_kernel<T, false><<<row_blocks(R), threads, 0, st>>>(
            cptr<T>(logits), nullptr, cptr<int64_t>(targets), cptr<T>(weights), R, V, ignore_index,
            mptr<A>(res.lse), mptr<double>(row_loss), out_rows, mptr<unsigned long long>(bad));
      detail::check_launch(op);
    }
    if (red != LossReduction::None) {
      res.denom = Tensor::empty({}, TensorOptions(DType::Float64).with_device(dev));
      ce_reduce_kernel<T><<<1, 1024, 0, st>>>(mptr<double>(row_loss), cptr<int64_t>(targets),
                                              cptr<T>(weights), R, ignore_index, static_cast<int>(red),
                                              mptr<T>(res.out), mptr<double>(res.denom));
      detail::check_launch(op);
    }
  });
  // The one host read: was any target out of range? (waits for the stream)
  unsigned long long first = 0;
  copy_d2h(&first, bad.raw_data_ptr(), sizeof(first), dev.index);
  if (first != ~0ULL) {
    res.bad_row = static_cast<int64_t>(first);
    copy_d2h(&res.bad_target, cptr<int64_t>(targets) + res.bad_row, sizeof(int64_t), dev.index);
  }
  return res;
}

CrossEntropyGrads cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& logits0,
                                         const Tensor& targets, const Tensor& weights, const Tensor& lse,
                                         const Tensor& denom, int64_t ignore_index, LossReduction red,
                                         bool need_dlogits, bool need_dlogits0) {
  const char* op = "cross_entropy_backward";
  const auto [R, V] = check_inputs(op, logits, logits0, targets, weights);
  detail::check_cuda_tensor(grad, op, "grad");
  detail::check_cuda_tensor(lse, op, "lse");
  NQ_CHECK(grad.dtype() == logits.dtype(), op, "upstream gradient ", grad.brief(),
           " must have the logits' dtype ", dtype_name(logits.dtype()));
  NQ_CHECK(grad.numel() == (red == LossReduction::None ? R : 1), op, "upstream gradient ", grad.brief(),
           " does not match ", R, " rows with reduction ", static_cast<int>(red));
  NQ_CHECK(lse.numel() == R, op, "saved lse ", lse.brief(), " does not hold ", R, " rows");
  NQ_CHECK(red == LossReduction::None || (denom.defined() && denom.dtype() == DType::Float64), op,
           "a reduced loss needs the saved float64 denominator");
  NQ_CHECK(!need_dlogits0 || logits0.defined(), op, "dlogits0 asked for without logits0");
  CrossEntropyGrads out;
  if (need_dlogits) out.dlogits = Tensor::empty(logits.shape(), logits.options());
  if (need_dlogits0) out.dlogits0 = Tensor::empty(logits.shape(), logits.options());
  if (R == 0 || V == 0 || (!need_dlogits && !need_dlogits0)) return out;
  cudaStream_t st = detail::stream_of(logits);
  detail::visit_float(logits.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    NQ_CHECK(lse.dtype() == (std::is_same_v<A, double> ? DType::Float64 : DType::Float32), op, "saved lse ",
             lse.brief(), " has the wrong dtype");
    const double* dn = red == LossReduction::None ? nullptr : cptr<double>(denom);
    const int threads = row_threads(V);
    if (logits0.defined())
      ce_backward_kernel<T, true><<<row_blocks(R), threads, 0, st>>>(
          cptr<T>(logits), cptr<T>(logits0), cptr<int64_t>(targets), cptr<T>(weights), cptr<A>(lse),
          cptr<T>(grad), dn, R, V, ignore_index, mptr<T>(out.dlogits), mptr<T>(out.dlogits0));
    else
      ce_backward_kernel<T, false><<<row_blocks(R), threads, 0, st>>>(
          cptr<T>(logits), nullptr, cptr<int64_t>(targets), cptr<T>(weights), cptr<A>(lse), cptr<T>(grad), dn,
          R, V, ignore_index, mptr<T>(out.dlogits), nullptr);
    detail::check_launch(op);
  });
  return out;
}

}  // namespace nq::cuda
