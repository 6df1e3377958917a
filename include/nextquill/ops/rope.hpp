#pragma once
// Rotary position embedding (RoPE), "rotate half" convention of GPT-NeoX,
// Llama and Qwen2: the head dim D is split into halves x1 = x[:D/2] and
// x2 = x[D/2:], and pair i is rotated by the angle pos * theta^(-2i/D):
//   y1 = x1 * cos - x2 * sin,   y2 = x2 * cos + x1 * sin.
// The rotation is orthogonal, so the backward is the rotation by -angle:
//   dx1 = g1 * cos + g2 * sin,  dx2 = g2 * cos - g1 * sin.
// cos/sin are tables gathered by position id (rope_tables), so left-padded
// batches and KV-cache decoding simply pass other positions.
//
// CUDA: rope_tables on CUDA positions builds the tables on the device with the
// same recipe (kernels/rope.cu); rope on a CUDA x reads x through its strides
// and takes float32 tables also for a bfloat16 x (mixed precision).
#include <cmath>
#include <vector>

#include "../cpu/parallel.hpp"
#include "../cuda/nn.hpp"
#include "view.hpp"

namespace nq {

// cos and sin tables (B, T, D/2) in `dtype` for int64 positions (B, T):
// angle = pos * theta^(-2i/D), computed in double.
inline std::pair<Tensor, Tensor> rope_tables(const Tensor& positions, int64_t head_dim, double theta,
                                             DType dtype = kFloat32) {
  NQ_CHECK(positions.dim() == 2 && positions.dtype() == kInt64, "rope_tables",
           "positions must be int64 (B, T), got ", positions.brief());
  NQ_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope_tables", "head_dim must be even, got ", head_dim);
#if NEXTQUILL_WITH_CUDA
  if (positions.device().is_cuda()) return cuda::rope_tables(positions.contiguous(), head_dim, theta, dtype);
#endif
  const int64_t B = positions.size(0), T = positions.size(1), H = head_dim / 2;
  Tensor pc = positions.contiguous();
  const int64_t* pos = pc.data_ptr<int64_t>();
  std::vector<double> inv(H);
  // Same float32 rounding of the inverse frequencies as the reference
  // implementations (they compute them in float32 before the outer product).
  for (int64_t i = 0; i < H; ++i)
    inv[i] = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(2 * i) / head_dim));
  Tensor c = Tensor::empty({B, T, H}, dtype), s = Tensor::empty({B, T, H}, dtype);
  visit_float(dtype, "rope_tables", [&](auto tag) {
    using F = typename decltype(tag)::type;
    F* cp = c.data_ptr<F>();
    F* sp = s.data_ptr<F>();
    for (int64_t r = 0; r < B * T; ++r)
      for (int64_t i = 0; i < H; ++i) {
        // The angle is formed in float32 like the references (pos * inv_freq).
        const double a = static_cast<float>(static_cast<float>(pos[r]) * static_cast<float>(inv[i]));
        cp[r * H + i] = static_cast<F>(std::cos(a));
        sp[r * H + i] = static_cast<F>(std::sin(a));
      }
  });
  return {c, s};
}

namespace detail {

// y = rotate(x) for x (B,H,T,D) of any strides; y contiguous (B,H,T,D).
// sign = +1 forward, -1 backward (rotation by the opposite angle).
template <typename F>
void rope_apply(const Tensor& x, const F* cs, const F* sn, F* y, double sign) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), D2 = D / 2;
  const int64_t s0 = x.stride(0), s1 = x.stride(1), s2 = x.stride(2), s3 = x.stride(3);
  const F* xp = x.data_ptr<F>();
  const F sg = static_cast<F>(sign);
  cpu::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, T * D)),
                    [&](int64_t b0, int64_t e0) {
                      for (int64_t bh = b0; bh < e0; ++bh) {
                        const int64_t b = bh / H, h = bh % H;
                        for (int64_t t = 0; t < T; ++t) {
                          const F* xr = xp + b * s0 + h * s1 + t * s2;
                          const F* c = cs + (b * T + t) * D2;
                          const F* s = sn + (b * T + t) * D2;
                          F* yr = y + ((bh * T) + t) * D;
                          for (int64_t i = 0; i < D2; ++i) {
                            const F x1 = xr[i * s3], x2 = xr[(i + D2) * s3], si = sg * s[i];
                            yr[i] = x1 * c[i] - x2 * si;
                            yr[i + D2] = x2 * c[i] + x1 * si;
                          }
                        }
                      }
                    });
}

}  // namespace detail

// x (B,H,T,D), cos/sin (B,T,D/2) from rope_tables (or (T,D/2), shared by the
// batch) -> (B,H,T,D) contiguous. cos/sin carry no gradient.
inline Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  NQ_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope", "x must be (B,H,T,D) with even D, got ",
           shape_str(x.shape()));
#if NEXTQUILL_WITH_CUDA
  if (x.device().is_cuda()) {
    for (const Tensor* t : {&cos, &sin}) {
      NQ_CHECK(t->device() == x.device(), "rope", t == &cos ? "cos" : "sin", " is on ", t->device().str(),
               " but x is on ", x.device().str());
      NQ_CHECK(t->dtype() == x.dtype() || t->dtype() == kFloat32, "rope", t == &cos ? "cos" : "sin",
               " dtype ", dtype_name(t->dtype()), " differs from x ", dtype_name(x.dtype()),
               " (float32 tables also work)");
    }
    // Shapes are checked by the launcher; (T, D/2) tables are read with batch stride 0.
    Tensor c = cos.detach().contiguous(), s = sin.detach().contiguous();
    Tensor out = cuda::rope_apply(x.detach(), c, s, false);  // (B,H,T,D) contiguous
    return record("rope", out, {x}, [c, s](const Tensor& g, const Node&) {
      return std::vector<Tensor>{cuda::rope_apply(g, c, s, true)};
    });
  }
#endif
  const int64_t B = x.size(0), T = x.size(2), D2 = x.size(3) / 2;
  auto table = [&](const Tensor& t, const char* what) {
    NQ_CHECK(t.device() == x.device(), "rope", what, " is on ", t.device().str(), " but x is on ",
             x.device().str());
    NQ_CHECK(t.dtype() == x.dtype(), "rope", what, " dtype ", dtype_name(t.dtype()), " differs from x ",
             dtype_name(x.dtype()));
    if (t.dim() == 2) {
      NQ_CHECK(t.size(0) == T && t.size(1) == D2, "rope", what, " ", shape_str(t.shape()), " must be [", T,
               ",", D2, "] for x ", shape_str(x.shape()));
      return t.unsqueeze(0).expand({B, T, D2}).contiguous();
    }
    NQ_CHECK(t.dim() == 3 && t.size(0) == B && t.size(1) == T && t.size(2) == D2, "rope", what, " ",
             shape_str(t.shape()), " must be [", B, ",", T, ",", D2, "] for x ", shape_str(x.shape()));
    return t.contiguous();
  };
  Tensor c = table(cos, "cos").detach(), s = table(sin, "sin").detach();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  visit_float(x.dtype(), "rope", [&](auto tag) {
    using F = typename decltype(tag)::type;
    detail::rope_apply<F>(x, c.data_ptr<F>(), s.data_ptr<F>(), out.data_ptr<F>(), 1.0);
  });
  return record("rope", out, {x}, [c, s](const Tensor& g, const Node&) {
    Tensor dx = Tensor::empty(g.shape(), g.dtype());
    visit_float(g.dtype(), "rope backward", [&](auto tag) {
      using F = typename decltype(tag)::type;
      detail::rope_apply<F>(g, c.data_ptr<F>(), s.data_ptr<F>(), dx.data_ptr<F>(), -1.0);
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace nq
