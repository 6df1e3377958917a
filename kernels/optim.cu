// Optimizer kernels: one fused element-wise update per parameter (AdamW, SGD),
// gradient sum of squares for clip_grad_norm (per-block partial sums in fixed
// slots, then one block adds them in order: deterministic, one host read for
// the whole list), in-place scale and zero. The element arithmetic follows
// optim/adamw.hpp and optim/sgd.hpp step by step, in the parameter's dtype.
#include <algorithm>
#include <nextquill/cuda/optim.hpp>

#include "common.cuh"

namespace nq::cuda {

namespace {

using detail::acc_t;
using detail::block_sum;
using detail::dev_sqrt;
using detail::load;
using detail::mptr;
using detail::store;

template <typename T>
__global__ void adamw_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                             int64_t n, AdamWScalars s) {
  using A = acc_t<T>;
  const A decay = A(s.decay), w1 = A(s.w1), b1 = A(s.b1), b2 = A(s.b2), w2 = A(s.w2),
          neg_step = A(s.neg_step), c2 = A(s.c2), eps = A(s.eps);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const A gi = load(g + i);
    A mi = load(m + i);
    mi = s.lerp_low ? mi + w1 * (gi - mi) : gi - (gi - mi) * b1;
    const A vi = load(v + i) * b2 + w2 * gi * gi;
    A x = load(p + i);
    if (s.has_decay) x = x * decay;
    store(m + i, mi);
    store(v + i, vi);
    store(p + i, x + neg_step * mi / (dev_sqrt(vi) / c2 + eps));
  }
}

// mode 0: no momentum, 1: first step (buf = d), 2: later steps.
template <typename T>
__global__ void sgd_update_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, int64_t n,
                                  double lr, double wd, double mom, double damp1, bool has_decay,
                                  bool nesterov, int mode) {
  using A = acc_t<T>;
  const A tlr = A(lr), twd = A(wd), tmom = A(mom), tdamp = A(damp1);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const A pi = load(p + i);
    A d = load(g + i);
    if (has_decay) d = d + twd * pi;
    if (mode == 1) {
      store(buf + i, d);
    } else if (mode == 2) {
      const A b = load(buf + i) * tmom + tdamp * d;
      store(buf + i, b);
    }
    if (mode != 0) {
      const A b = load(buf + i);
      d = nesterov ? d + tmom * b : b;
    }
    store(p + i, pi + (-tlr) * d);
  }
}

template <typename T>
__global__ void sumsq_kernel(const T* __restrict__ x, int64_t n, double* __restrict__ part) {
  double acc = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(load(x + i));
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

__global__ void sum_parts_kernel(const double* __restrict__ part, int64_t n, double* __restrict__ out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += part[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

template <typename T>
__global__ void scale_kernel(T* __restrict__ x, int64_t n, double coef) {
  using A = acc_t<T>;
  const A k = A(static_cast<T>(coef));  // T(coef), as the CPU loop
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(x + i, load(x + i) * k);
}

constexpr int kThreads = 256;
constexpr int64_t kMaxSumBlocks = 512;

void check_same(const char* op, const Tensor& p, const Tensor& t, const char* name) {
  detail::check_cuda_tensor(t, op, name);
  NQ_CHECK(t.device() == p.device() && t.dtype() == p.dtype() && t.numel() == p.numel(), op, name, " ",
           t.brief(), " on ", t.device().str(), " does not match the parameter ", p.brief(), " on ",
           p.device().str());
}

}  // namespace

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWScalars& s) {
  const char* op = "AdamW";
  detail::check_cuda_tensor(p, op, "parameter");
  check_same(op, p, g, "gradient");
  check_same(op, p, m, "exp_avg");
  check_same(op, p, v, "exp_avg_sq");
  const int64_t n = p.numel();
  if (n == 0) return;
  detail::visit_float(p.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    adamw_kernel<T><<<detail::blocks_for(n, kThreads), kThreads, 0, detail::stream_of(p)>>>(
        mptr<T>(p), mptr<T>(g), mptr<T>(m), mptr<T>(v), n, s);
    detail::check_launch(op);
  });
}

void sgd_step(const Tensor& p, const Tensor& g, const Tensor& buf, double lr, double weight_decay,
              double momentum, double dampening, bool nesterov, bool first) {
  const char* op = "SGD";
  detail::check_cuda_tensor(p, op, "parameter");
  check_same(op, p, g, "gradient");
  if (buf.defined()) check_same(op, p, buf, "momentum buffer");
  const int64_t n = p.numel();
  if (n == 0) return;
  const int mode = !buf.defined() ? 0 : first ? 1 : 2;
  detail::visit_float(p.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sgd_update_kernel<T><<<detail::blocks_for(n, kThreads), kThreads, 0, detail::stream_of(p)>>>(
        mptr<T>(p), mptr<T>(g), buf.defined() ? mptr<T>(buf) : nullptr, n, lr, weight_decay, momentum,
        1 - dampening, weight_decay != 0, nesterov && mode != 0, mode);
    detail::check_launch(op);
  });
}

double sum_squares(const std::vector<Tensor>& ts) {
  const char* op = "clip_grad_norm";
  if (ts.empty()) return 0.0;
  const Device dev = ts[0].device();
  std::vector<int64_t> blocks;
  int64_t total = 0;
  for (const Tensor& t : ts) {
    detail::check_cuda_tensor(t, op, "gradient");
    NQ_CHECK(t.device() == dev, op, "gradients on ", dev.str(), " and ", t.device().str(),
             ": sum them per device");
    const int64_t nb = std::clamp<int64_t>((t.numel() + kThreads * 4 - 1) / (kThreads * 4), 1, kMaxSumBlocks);
    blocks.push_back(nb);
    total += nb;
  }
  cudaStream_t st = detail::stream_of(ts[0]);
  Tensor part = Tensor::empty({total}, TensorOptions(DType::Float64).with_device(dev));
  Tensor out = Tensor::empty({}, TensorOptions(DType::Float64).with_device(dev));
  double* pp = mptr<double>(part);
  int64_t off = 0;
  for (size_t k = 0; k < ts.size(); ++k) {
    const Tensor& t = ts[k];
    detail::visit_float(t.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      sumsq_kernel<T><<<static_cast<unsigned>(blocks[k]), kThreads, 0, st>>>(mptr<T>(t), t.numel(), pp + off);
      detail::check_launch(op);
    });
    off += blocks[k];
  }
  sum_parts_kernel<<<1, 1024, 0, st>>>(pp, total, mptr<double>(out));
  detail::check_launch(op);
  double host = 0.0;
  copy_d2h(&host, out.raw_data_ptr(), sizeof(double), dev.index);
  return host;
}

void scale_(const Tensor& t, double coef) {
  const char* op = "clip_grad_norm";
  detail::check_cuda_tensor(t, op, "gradient");
  const int64_t n = t.numel();
  if (n == 0) return;
  detail::visit_float(t.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    scale_kernel<T>
        <<<detail::blocks_for(n, kThreads), kThreads, 0, detail::stream_of(t)>>>(mptr<T>(t), n, coef);
    detail::check_launch(op);
  });
}

void zero_(const Tensor& t) {
  const char* op = "zero_grad";
  detail::check_cuda_tensor(t, op, "gradient");
  const size_t nbytes = static_cast<size_t>(t.numel()) * element_size(t.dtype());
  if (nbytes == 0) return;
  NQ_CUDA_CHECK(cudaMemsetAsync(t.raw_data_ptr(), 0, nbytes, detail::stream_of(t)), op);
}

}  // namespace nq::cuda
