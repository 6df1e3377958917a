// Rotary position embedding on CUDA, the same "rotate half" convention as the
// CPU path (ops/rope.hpp): x (B,H,T,D) is split into halves x1 = x[:D/2],
// x2 = x[D/2:], and pair i at position p is rotated by p * theta^(-2i/D):
//   y1 = x1 * cos - x2 * sin,   y2 = x2 * cos + x1 * sin.
// The backward is the rotation by the opposite angle (sin -> -sin).
// The tables follow rope_tables exactly: inverse frequencies rounded to fp32,
// the angle formed as an fp32 product, cos/sin evaluated in fp64.
#include <nextquill/cuda/nn.hpp>

#include "common.cuh"

namespace nq::cuda {

namespace {

using detail::acc_t;
using detail::load;
using detail::store;

// cos/sin (R, H) for positions (R), R = B*T, H = head_dim / 2.
template <typename F>
__global__ void rope_tables_kernel(const int64_t* __restrict__ pos, F* __restrict__ cs, F* __restrict__ sn,
                                   int64_t R, int64_t H, int64_t head_dim, double theta) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < R * H;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = k / H, i = k - r * H;
    const float inv = static_cast<float>(1.0 / ::pow(theta, static_cast<double>(2 * i) / head_dim));
    const double a = static_cast<double>(__fmul_rn(static_cast<float>(pos[r]), inv));
    store(cs + k, ::cos(a));
    store(sn + k, ::sin(a));
  }
}

// y (B,H,T,D) contiguous from x of strides (s0..s3); tables (.., T, D2) with
// batch stride tb (0 for a table shared by the batch). sign = -1: inverse.
template <typename T, typename F>
__global__ void rope_kernel(const T* __restrict__ x, const F* __restrict__ cs, const F* __restrict__ sn,
                            T* __restrict__ y, int64_t B, int64_t H, int64_t Tn, int64_t D2, int64_t s0,
                            int64_t s1, int64_t s2, int64_t s3, int64_t tb, float sign) {
  using A = acc_t<T>;
  const int64_t total = B * H * Tn * D2;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k % D2;
    const int64_t t = (k / D2) % Tn;
    const int64_t bh = k / (D2 * Tn);
    const int64_t h = bh % H, b = bh / H;
    const T* xr = x + b * s0 + h * s1 + t * s2;
    const A x1 = load(xr + i * s3), x2 = load(xr + (i + D2) * s3);
    const int64_t ti = b * tb + t * D2 + i;
    const A c = static_cast<A>(load(cs + ti)), s = static_cast<A>(sign) * static_cast<A>(load(sn + ti));
    T* yr = y + (bh * Tn + t) * (2 * D2);
    store(yr + i, x1 * c - x2 * s);
    store(yr + i + D2, x2 * c + x1 * s);
  }
}

}  // namespace

std::pair<Tensor, Tensor> rope_tables(const Tensor& positions, int64_t head_dim, double theta, DType dtype) {
  const char* op = "rope_tables";
  detail::check_cuda_tensor(positions, op, "positions");
  NQ_CHECK(positions.dim() == 2 && positions.dtype() == DType::Int64, op,
           "positions must be int64 (B, T), got ", positions.brief());
  NQ_CHECK(head_dim > 0 && head_dim % 2 == 0, op, "head_dim must be even, got ", head_dim);
  const int64_t B = positions.size(0), Tn = positions.size(1), H = head_dim / 2;
  const TensorOptions o = TensorOptions(dtype).with_device(positions.device());
  Tensor c = Tensor::empty({B, Tn, H}, o), s = Tensor::empty({B, Tn, H}, o);
  if (c.numel() == 0) return {c, s};
  detail::visit_float(dtype, op, [&](auto tag) {
    using F = typename decltype(tag)::type;
    rope_tables_kernel<F><<<detail::blocks_for(B * Tn * H), 256, 0, detail::stream_of(positions)>>>(
        static_cast<const int64_t*>(positions.raw_data_ptr()), static_cast<F*>(c.raw_data_ptr()),
        static_cast<F*>(s.raw_data_ptr()), B * Tn, H, head_dim, theta);
    detail::check_launch(op);
  });
  return {c, s};
}

Tensor rope_apply(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse) {
  const char* op = inverse ? "rope backward" : "rope";
  NQ_CHECK(x.device().is_cuda(), op, "x is on ", x.device().str(), ", expected a CUDA tensor");
  NQ_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, op, "x must be (B,H,T,D) with even D, got ",
           shape_str(x.shape()));
  const int64_t B = x.size(0), H = x.size(1), Tn = x.size(2), D2 = x.size(3) / 2;
  int64_t tb = Tn * D2;  // batch stride of the tables
  for (const Tensor* t : {&cos, &sin}) {
    const char* what = t == &cos ? "cos" : "sin";
    detail::check_cuda_tensor(*t, op, what);
    NQ_CHECK(t->device() == x.device(), op, what, " is on ", t->device().str(), " but x is on ",
             x.device().str());
    NQ_CHECK(t->dtype() == cos.dtype(), op, "cos and sin dtypes differ");
    if (t->dim() == 2) {
      NQ_CHECK(t->size(0) == Tn && t->size(1) == D2, op, what, " ", shape_str(t->shape()), " must be [", Tn,
               ",", D2, "] for x ", shape_str(x.shape()));
      tb = 0;  // shared by the batch
    } else {
      NQ_CHECK(t->dim() == 3 && t->size(0) == B && t->size(1) == Tn && t->size(2) == D2, op, what, " ",
               shape_str(t->shape()), " must be [", B, ",", Tn, ",", D2, "] for x ", shape_str(x.shape()));
    }
  }
  NQ_CHECK(cos.dim() == sin.dim(), op, "cos ", shape_str(cos.shape()), " and sin ", shape_str(sin.shape()),
           " differ in shape");
  Tensor y = Tensor::empty(x.shape(), x.options());
  const int64_t total = B * H * Tn * D2;
  if (total == 0) return y;
  detail::visit_float(x.dtype(), op, [&](auto xt) {
    using T = typename decltype(xt)::type;
    detail::visit_float(cos.dtype(), op, [&](auto ft) {
      using F = typename decltype(ft)::type;
      rope_kernel<T, F><<<detail::blocks_for(total), 256, 0, detail::stream_of(x)>>>(
          static_cast<const T*>(x.raw_data_ptr()), static_cast<const F*>(cos.raw_data_ptr()),
          static_cast<const F*>(sin.raw_data_ptr()), static_cast<T*>(y.raw_data_ptr()), B, H, Tn, D2,
          x.stride(0), x.stride(1), x.stride(2), x.stride(3), tb, inverse ? -1.0f : 1.0f);
      detail::check_launch(op);
    });
  });
  return y;
}

}  // namespace nq::cuda
