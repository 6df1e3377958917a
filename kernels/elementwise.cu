// Element-wise ops on CUDA by op code (include/nextquill/cuda/core.hpp):
// unary forward/backward, binary and three-operand ops with broadcasting, and
// the dropout mask. One generic map kernel: a flat grid-stride loop when every
// input is contiguous with the output's shape, else index math over the
// coalesced strides (0 on broadcast dims). bf16 is loaded to fp32 for the math.
#include <nextquill/cuda/core.hpp>

#include "strided.cuh"

namespace nq::cuda {

namespace detail {

// ---- math in float or double ----------------------------------------------------
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return ::exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return ::log(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return ::erf(x); }
__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return ::pow(x, y); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return ::fabs(x); }

// ---- op functors: A is the math type (float, or double for float64) -------------
template <UnaryOp OP>
struct UnaryFwd {
  double s;
  template <typename A>
  __device__ __forceinline__ A operator()(A x) const {
    const A sc = static_cast<A>(s);
    if constexpr (OP == UnaryOp::Neg) return -x;
    if constexpr (OP == UnaryOp::Exp) return m_exp(x);
    if constexpr (OP == UnaryOp::Log) return m_log(x);
    if constexpr (OP == UnaryOp::Sqrt) return m_sqrt(x);
    if constexpr (OP == UnaryOp::Rsqrt) return A(1) / m_sqrt(x);
    if constexpr (OP == UnaryOp::Abs) return m_abs(x);
    if constexpr (OP == UnaryOp::Square) return x * x;
    if constexpr (OP == UnaryOp::Tanh) return m_tanh(x);
    if constexpr (OP == UnaryOp::Sigmoid) {  // two branches keep exp() finite
      if (x >= A(0)) return A(1) / (A(1) + m_exp(-x));
      const A e = m_exp(x);
      return e / (A(1) + e);
    }
    if constexpr (OP == UnaryOp::Relu) return x > A(0) ? x : A(0);
    if constexpr (OP == UnaryOp::Gelu) return A(0.5) * x * (A(1) + m_erf(x * A(0.7071067811865476)));
    if constexpr (OP == UnaryOp::GeluTanh) {
      const A k = A(0.7978845608028654), c = A(0.044715);
      return A(0.5) * x * (A(1) + m_tanh(k * (x + c * x * x * x)));
    }
    if constexpr (OP == UnaryOp::Silu) return x * (A(0.5) + A(0.5) * m_tanh(x * A(0.5)));
    if constexpr (OP == UnaryOp::AddScalar) return x + sc;
    if constexpr (OP == UnaryOp::MulScalar) return x * sc;
    if constexpr (OP == UnaryOp::RsubScalar) return sc - x;
    if constexpr (OP == UnaryOp::RdivScalar) return sc / x;
    if constexpr (OP == UnaryOp::PowScalar) return m_pow(x, sc);
    return x;
  }
};

constexpr bool uses_output(UnaryOp op) {
  return op == UnaryOp::Exp || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Tanh ||
         op == UnaryOp::Sigmoid;
}

// dx = g * f'(v), v = y for uses_output ops, else x (matches the CPU formulas).
template <UnaryOp OP>
struct UnaryBwd {
  double s;
  template <typename A>
  __device__ __forceinline__ A operator()(A g, A v) const {
    const A sc = static_cast<A>(s);
    if constexpr (OP == UnaryOp::Neg) return -g;
    if constexpr (OP == UnaryOp::Exp) return g * v;
    if constexpr (OP == UnaryOp::Log) return g * (A(1) / v);
    if constexpr (OP == UnaryOp::Sqrt) return g * (A(1) / (A(2) * v));
    if constexpr (OP == UnaryOp::Rsqrt) return g * (-v * v * v / A(2));
    if constexpr (OP == UnaryOp::Abs) return g * static_cast<A>((v > A(0)) - (v < A(0)));
    if constexpr (OP == UnaryOp::Square) return g * (A(2) * v);
    if constexpr (OP == UnaryOp::Tanh) return g * (A(1) - v * v);
    if constexpr (OP == UnaryOp::Sigmoid) return g * (v * (A(1) - v));
    if constexpr (OP == UnaryOp::Relu) return g * static_cast<A>(v > A(0));
    if constexpr (OP == UnaryOp::Gelu) {
      const A cdf = A(0.5) * (A(1) + m_erf(v * A(0.7071067811865476)));
      const A pdf = A(0.3989422804014327) * m_exp(A(-0.5) * v * v);
      return g * (cdf + v * pdf);
    }
    if constexpr (OP == UnaryOp::GeluTanh) {
      const A k = A(0.7978845608028654), c = A(0.044715);
      const A t = m_tanh(k * (v + c * v * v * v));
      return g * (A(0.5) * (A(1) + t) + A(0.5) * v * (A(1) - t * t) * k * (A(1) + A(3) * c * v * v));
    }
    if constexpr (OP == UnaryOp::Silu) {
      const A sg = A(0.5) + A(0.5) * m_tanh(v * A(0.5));
      return g * sg * (A(1) + v * (A(1) - sg));
    }
    if constexpr (OP == UnaryOp::AddScalar) return g;
    if constexpr (OP == UnaryOp::MulScalar) return g * sc;
    if constexpr (OP == UnaryOp::RsubScalar) return -g;
    if constexpr (OP == UnaryOp::RdivScalar) return g * (-(sc / v) / v);  // -y/x with y = s/x
    if constexpr (OP == UnaryOp::PowScalar) return s == 0.0 ? A(0) : g * (sc * m_pow(v, sc - A(1)));
    return g;
  }
};

template <BinaryOp OP>
struct BinaryF {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    if constexpr (OP == BinaryOp::Add) return a + b;
    if constexpr (OP == BinaryOp::Sub) return a - b;
    if constexpr (OP == BinaryOp::Mul) return a * b;
    if constexpr (OP == BinaryOp::Div) return a / b;
    if constexpr (OP == BinaryOp::Pow) return m_pow(a, b);
    if constexpr (OP == BinaryOp::Maximum) return a >= b ? a : b;
    if constexpr (OP == BinaryOp::Minimum) return a <= b ? a : b;
    if constexpr (OP == BinaryOp::WhereGradA) return b != A(0) ? a : A(0);
    if constexpr (OP == BinaryOp::WhereGradB) return b != A(0) ? A(0) : a;
    return a;
  }
};

template <TernaryOp OP>
struct TernaryF {
  template <typename A>
  __device__ __forceinline__ A operator()(A x, A y, A z) const {
    if constexpr (OP == TernaryOp::Where) return x != A(0) ? y : z;
    if constexpr (OP == TernaryOp::DivGradB) return -x * y / (z * z);
    if constexpr (OP == TernaryOp::PowGradA) return x * z * m_pow(y, z - A(1));
    if constexpr (OP == TernaryOp::PowGradB) return y == A(0) ? A(0) : x * z * m_log(y);
    if constexpr (OP == TernaryOp::MaxGradA) return y >= z ? x : A(0);
    if constexpr (OP == TernaryOp::MaxGradB) return y >= z ? A(0) : x;
    if constexpr (OP == TernaryOp::MinGradA) return y <= z ? x : A(0);
    if constexpr (OP == TernaryOp::MinGradB) return y <= z ? A(0) : x;
    return x;
  }
};

// ---- the generic map ---------------------------------------------------------------
template <typename T, int N>
struct Inputs {
  const T* p[N];
};

template <typename T, int N, typename F>
__device__ __forceinline__ acc_t<T> apply(const F& f, const Inputs<T, N>& in, const int64_t* off) {
  if constexpr (N == 1)
    return f(load(in.p[0] + off[0]));
  else if constexpr (N == 2)
    return f(load(in.p[0] + off[0]), load(in.p[1] + off[1]));
  else
    return f(load(in.p[0] + off[0]), load(in.p[1] + off[1]), load(in.p[2] + off[2]));
}

template <typename T, int N, typename F>
__global__ void map_flat_kernel(T* __restrict__ out, Inputs<T, N> in, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[N];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i;
    store(out + i, apply<T, N>(f, in, off));
  }
}

template <typename T, int N, typename F>
__global__ void map_strided_kernel(T* out, Inputs<T, N> in, int64_t n, Geom<N + 1> g, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[N + 1];
    g.offsets(i, off);
    store(out + off[0], apply<T, N>(f, in, off + 1));
  }
}

// out = f(in...) with broadcasting; inputs on one CUDA device with one float dtype.
template <int N, typename F>
Tensor run_map(const std::array<Tensor, N>& in, const char* op, F f) {
  Shape shape = in[0].shape();
  for (int k = 0; k < N; ++k) {
    NQ_CHECK(in[k].defined(), op, "operand ", k, " is undefined");
    NQ_CHECK(in[k].device().is_cuda(), op, "operand ", k, " (", in[k].brief(), ") is on ",
             in[k].device().str(), ", expected a CUDA tensor");
    NQ_CHECK(in[k].device() == in[0].device(), op, "device mismatch: ", in[0].device().str(), " vs ",
             in[k].device().str());
    NQ_CHECK(in[k].dtype() == in[0].dtype(), op, "dtype mismatch: ", in[0].brief(), " vs ", in[k].brief());
    if (k) shape = broadcast_shapes(shape, in[k].shape(), op);
  }
  Tensor out = Tensor::empty(shape, in[0].options());
  const int64_t n = out.numel();
  if (n == 0) return out;
  bool flat = true;
  for (int k = 0; k < N; ++k) flat = flat && in[k].shape() == shape && in[k].is_contiguous();
  cudaStream_t st = stream_of(out);
  ::nq::cuda::detail::visit_float(out.dtype(), op, [&](auto tg) {
    using T = typename decltype(tg)::type;
    Inputs<T, N> ptrs;
    for (int k = 0; k < N; ++k) ptrs.p[k] = static_cast<const T*>(in[k].raw_data_ptr());
    T* o = static_cast<T*>(out.raw_data_ptr());
    if (flat) {
      map_flat_kernel<T, N, F><<<blocks_for(n), 256, 0, st>>>(o, ptrs, n, f);
    } else {
      std::array<Strides, N + 1> strides;
      strides[0] = out.strides();
      for (int k = 0; k < N; ++k) strides[k + 1] = broadcast_strides(in[k].shape(), in[k].strides(), shape);
      auto g = make_geom<N + 1>(shape, strides, op);
      map_strided_kernel<T, N, F><<<blocks_for(n), 256, 0, st>>>(o, ptrs, n, g, f);
    }
    check_launch(op);
  });
  return out;
}

// ---- dropout mask -------------------------------------------------------------------
__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void dropout_mask_kernel(T* out, int64_t n, float p, double scale, uint64_t key) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t h = splitmix64(key ^ splitmix64(static_cast<uint64_t>(i)));
    const float u = static_cast<float>(h >> 40) * 0x1.0p-24f;  // uniform in [0, 1)
    store(out + i, u < p ? 0.0 : scale);
  }
}

}  // namespace detail

#define NQ_UNARY_OPS(X)                                                                           \
  X(Neg)                                                                                          \
  X(Exp)                                                                                          \
  X(Log) X(Sqrt) X(Rsqrt) X(Abs) X(Square) X(Tanh) X(Sigmoid) X(Relu) X(Gelu) X(GeluTanh) X(Silu) \
      X(AddScalar) X(MulScalar) X(RsubScalar) X(RdivScalar) X(PowScalar)

bool unary_backward_uses_output(UnaryOp op) { return detail::uses_output(op); }

Tensor unary(UnaryOp op, const Tensor& x, double s) {
  switch (op) {
#define NQ_CASE(NAME) \
  case UnaryOp::NAME: \
    return detail::run_map<1>({x}, "unary_" #NAME, detail::UnaryFwd<UnaryOp::NAME>{s});
    NQ_UNARY_OPS(NQ_CASE)
#undef NQ_CASE
  }
  fail("cuda::unary", "unknown op code ", static_cast<int>(op));
}

Tensor unary_backward(UnaryOp op, const Tensor& g, const Tensor& saved, double s) {
  switch (op) {
#define NQ_CASE(NAME) \
  case UnaryOp::NAME: \
    return detail::run_map<2>({g, saved}, "unary_backward_" #NAME, detail::UnaryBwd<UnaryOp::NAME>{s});
    NQ_UNARY_OPS(NQ_CASE)
#undef NQ_CASE
  }
  fail("cuda::unary_backward", "unknown op code ", static_cast<int>(op));
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  switch (op) {
#define NQ_CASE(NAME)  \
  case BinaryOp::NAME: \
    return detail::run_map<2>({a, b}, #NAME, detail::BinaryF<BinaryOp::NAME>{});
    NQ_CASE(Add)
    NQ_CASE(Sub)
    NQ_CASE(Mul) NQ_CASE(Div) NQ_CASE(Pow) NQ_CASE(Maximum) NQ_CASE(Minimum) NQ_CASE(WhereGradA)
        NQ_CASE(WhereGradB)
#undef NQ_CASE
  }
  fail("cuda::binary", "unknown op code ", static_cast<int>(op));
}

Tensor ternary(TernaryOp op, const Tensor& a, const Tensor& b, const Tensor& c) {
  switch (op) {
#define NQ_CASE(NAME)   \
  case TernaryOp::NAME: \
    return detail::run_map<3>({a, b, c}, #NAME, detail::TernaryF<TernaryOp::NAME>{});
    NQ_CASE(Where)
    NQ_CASE(DivGradB)
    NQ_CASE(PowGradA) NQ_CASE(PowGradB) NQ_CASE(MaxGradA) NQ_CASE(MaxGradB) NQ_CASE(MinGradA)
        NQ_CASE(MinGradB)
#undef NQ_CASE
  }
  fail("cuda::ternary", "unknown op code ", static_cast<int>(op));
}

Tensor dropout_mask(const Shape& shape, TensorOptions opts, double p, uint64_t key) {
  const char* op = "dropout";
  NQ_CHECK(opts.device.is_cuda(), op, "mask requested on ", opts.device.str());
  Tensor mask = Tensor::empty(shape, opts.with_requires_grad(false));
  const int64_t n = mask.numel();
  if (n == 0) return mask;
  const double scale = 1.0 / (1.0 - p);
  detail::visit_float(mask.dtype(), op, [&](auto tg) {
    using T = typename decltype(tg)::type;
    detail::dropout_mask_kernel<T><<<detail::blocks_for(n), 256, 0, detail::stream_of(mask)>>>(
        static_cast<T*>(mask.raw_data_ptr()), n, static_cast<float>(p), scale, key);
    detail::check_launch(op);
  });
  return mask;
}

}  // namespace nq::cuda
