// GPU tests of matmul / linear (cuBLAS, cuBLASLt) and the mixed-precision
// switches. Each case builds seeded inputs on the CPU, runs the op on the CPU
// (float32) and on CUDA copies (float32 or bfloat16), compares the output,
// then backpropagates one seeded upstream gradient and compares every input
// gradient. bf16 cases compare with the CPU float32 result of the
// bf16-rounded inputs and upstream gradient.
//
// Tolerances (relative, with atol = rtol * max|reference| because products
// cancel): FP32 mode rtol 1e-5; TF32 mode 2e-3 (10-bit mantissa products);
// bf16 2e-2 (the bf16 output is rounded to 8 bits; gradients come from bf16
// saved operands).
#include <functional>
#include <string>
#include <tuple>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Tensor;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

constexpr double kF32 = 1e-5, kTF32 = 2e-3, kBF16 = 2e-2;

// Restores FP32 matmul precision even when a check fails.
struct PrecisionGuard {
  explicit PrecisionGuard(nq::MatmulPrecision p) { nq::cuda::set_matmul_precision(p); }
  ~PrecisionGuard() { nq::cuda::set_matmul_precision(nq::MatmulPrecision::FP32); }
};

Tensor host_f32(const Tensor& t) { return t.to(nq::kFloat32).cpu(); }

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : host_f32(t).to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

void close(const Tensor& got, const Tensor& want, double rtol, const std::string& what) {
  nqgpu::expect_close(host_f32(got), want, rtol, rtol * std::max(max_abs(want), 1.0), what);
}

// f on CUDA copies of `inputs` in dtype dt vs f on their CPU float32
// references; output dtype `out_dt` on the device; every input's gradient.
void check_op(const std::string& what, const Fn& f, const std::vector<Tensor>& inputs, nq::DType dt,
              double rtol, nq::DType out_dt, uint64_t seed = 7) {
  INFO(what);
  std::vector<Tensor> dev(inputs.size()), ref(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    dev[i] = inputs[i].cuda().to(dt).detach().requires_grad_();
    ref[i] = host_f32(dev[i]).detach().requires_grad_();
  }
  Tensor yd = f(dev), yr = f(ref);
  CHECK(yd.device().is_cuda());
  CHECK(yd.dtype() == out_dt);
  close(yd, yr, rtol, what + ": forward");
  nq::Generator g(seed);
  Tensor up = nq::randn(yr.shape(), nq::kFloat32, &g);
  Tensor up_d = up.cuda().to(yd.dtype());
  yd.backward(up_d);
  yr.backward(host_f32(up_d));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    REQUIRE_MESSAGE(dev[i].grad().defined(), what, ": no gradient for input ", i);
    CHECK(dev[i].grad().dtype() == dev[i].dtype());
    CHECK(dev[i].grad().device().is_cuda());
    close(dev[i].grad(), ref[i].grad(), rtol, what + ": gradient of input " + std::to_string(i));
  }
}

Tensor rnd(const nq::Shape& s, uint64_t seed) {
  nq::Generator g(seed);
  return nq::randn(s, nq::kFloat32, &g);
}

Fn mm() {
  return [](const std::vector<Tensor>& v) { return nq::matmul(v[0], v[1]); };
}

// All matmul shape/layout cases, run for one dtype / precision.
void matmul_cases(nq::DType dt, double rtol, const std::string& tag) {
  const nq::DType out = dt;
  // Odd sizes, not multiples of any tile.
  check_op(tag + " 37x61 @ 61x19", mm(), {rnd({37, 61}, 1), rnd({61, 19}, 2)}, dt, rtol, out);
  // Transposed views reach cuBLAS as op flags.
  check_op(
      tag + " A^T @ B", [](const std::vector<Tensor>& v) { return nq::matmul(v[0].t(), v[1]); },
      {rnd({61, 37}, 3), rnd({61, 19}, 4)}, dt, rtol, out);
  check_op(
      tag + " A @ B^T", [](const std::vector<Tensor>& v) { return nq::matmul(v[0], v[1].t()); },
      {rnd({37, 61}, 5), rnd({19, 61}, 6)}, dt, rtol, out);
  check_op(
      tag + " A^T @ B^T", [](const std::vector<Tensor>& v) { return nq::matmul(v[0].t(), v[1].t()); },
      {rnd({61, 37}, 7), rnd({19, 61}, 8)}, dt, rtol, out);
  // Narrowed (non-contiguous rows, padded leading dimension).
  check_op(
      tag + " narrowed", [](const std::vector<Tensor>& v) { return nq::matmul(v[0].narrow(1, 3, 20), v[1]); },
      {rnd({13, 29}, 9), rnd({20, 11}, 10)}, dt, rtol, out);
  // Batched, batched transposed, broadcast batches.
  check_op(tag + " batched (3,37,61)@(3,61,19)", mm(), {rnd({3, 37, 61}, 11), rnd({3, 61, 19}, 12)}, dt, rtol,
           out);
  check_op(
      tag + " batched transposed",
      [](const std::vector<Tensor>& v) { return nq::matmul(v[0].transpose(1, 2), v[1].transpose(1, 2)); },
      {rnd({3, 61, 37}, 13), rnd({3, 19, 61}, 14)}, dt, rtol, out);
  check_op(tag + " folded (4,5,7)@(7,6)", mm(), {rnd({4, 5, 7}, 15), rnd({7, 6}, 16)}, dt, rtol, out);
  check_op(tag + " (5,7)@(4,7,6)", mm(), {rnd({5, 7}, 17), rnd({4, 7, 6}, 18)}, dt, rtol, out);
  check_op(tag + " broadcast (2,1,5,7)@(3,7,4)", mm(), {rnd({2, 1, 5, 7}, 19), rnd({3, 7, 4}, 20)}, dt, rtol,
           out);
  check_op(tag + " broadcast (2,3,5,7)@(1,3,7,4)", mm(), {rnd({2, 3, 5, 7}, 21), rnd({1, 3, 7, 4}, 22)}, dt,
           rtol, out);
  // 1-d operands (numpy rules).
  check_op(tag + " (61)@(61)", mm(), {rnd({61}, 23), rnd({61}, 24)}, dt, rtol, out);
  check_op(tag + " (7)@(7,5)", mm(), {rnd({7}, 25), rnd({7, 5}, 26)}, dt, rtol, out);
  check_op(tag + " (3,5,7)@(7)", mm(), {rnd({3, 5, 7}, 27), rnd({7}, 28)}, dt, rtol, out);
  // Sizes that take cuBLAS's tensor-core paths.
  check_op(tag + " 128x256 @ 256x96", mm(), {rnd({128, 256}, 29), rnd({256, 96}, 30)}, dt, rtol, out);
}

Fn lin(bool bias) {
  return [bias](const std::vector<Tensor>& v) { return nq::linear(v[0], v[1], bias ? v[2] : Tensor()); };
}

void linear_cases(nq::DType dt, double rtol, const std::string& tag) {
  for (bool bias : {true, false}) {
    const std::string b = bias ? " +bias" : " no bias";
    // Odd sizes: cuBLASLt's alignment gate fails, the GEMM + bias kernel fallback runs.
    check_op(tag + " linear (37,61)x(19,61)" + b, lin(bias),
             {rnd({37, 61}, 31), rnd({19, 61}, 32), bias ? rnd({19}, 33) : Tensor()}, dt, rtol, dt);
    // Aligned sizes: the cuBLASLt bias epilogue.
    check_op(tag + " linear (4,16,64)x(96,64)" + b, lin(bias),
             {rnd({4, 16, 64}, 34), rnd({96, 64}, 35), bias ? rnd({96}, 36) : Tensor()}, dt, rtol, dt);
    // 1-d input and a transposed weight view.
    check_op(tag + " linear (61)x(19,61)" + b, lin(bias),
             {rnd({61}, 37), rnd({19, 61}, 38), bias ? rnd({19}, 39) : Tensor()}, dt, rtol, dt);
    check_op(
        tag + " linear w = W^T view" + b,
        [bias](const std::vector<Tensor>& v) { return nq::linear(v[0], v[1].t(), bias ? v[2] : Tensor()); },
        {rnd({2, 8, 32}, 40), rnd({32, 48}, 41), bias ? rnd({48}, 42) : Tensor()}, dt, rtol, dt);
  }
}

}  // namespace

TEST_CASE("cuda matmul float32 (FP32 math) matches the CPU") { matmul_cases(nq::kFloat32, kF32, "fp32"); }

TEST_CASE("cuda matmul float32 (TF32 math) matches the CPU loosely") {
  PrecisionGuard p(nq::MatmulPrecision::TF32);
  CHECK(nq::cuda::matmul_precision() == nq::MatmulPrecision::TF32);
  matmul_cases(nq::kFloat32, kTF32, "tf32");
}

TEST_CASE("cuda matmul bfloat16 (fp32 accumulate) matches the CPU on rounded inputs") {
  matmul_cases(nq::kBFloat16, kBF16, "bf16");
}

TEST_CASE("cuda linear float32 / TF32 / bfloat16 match the CPU") {
  linear_cases(nq::kFloat32, kF32, "fp32");
  {
    PrecisionGuard p(nq::MatmulPrecision::TF32);
    linear_cases(nq::kFloat32, kTF32, "tf32");
  }
  linear_cases(nq::kBFloat16, kBF16, "bf16");
}

TEST_CASE("cuda linear skips gradients of inputs that do not need them") {
  Tensor x = rnd({5, 8}, 50).cuda();  // no grad
  Tensor w = rnd({4, 8}, 51).cuda().requires_grad_();
  Tensor b = rnd({4}, 52).cuda();  // no grad
  Tensor y = nq::linear(x, w, b);
  y.backward(rnd({5, 4}, 53).cuda());
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(b.grad().defined());
  REQUIRE(w.grad().defined());
  Tensor wc = w.detach().cpu().requires_grad_();
  nq::linear(x.cpu(), wc, b.cpu()).backward(rnd({5, 4}, 53));
  close(w.grad(), wc.grad(), kF32, "dW only");
}

TEST_CASE("autocast bf16: fp32 leaves, bf16 outputs, fp32 gradients") {
  Tensor x0 = rnd({3, 9, 32}, 60), w0 = rnd({48, 32}, 61), b0 = rnd({48}, 62), m0 = rnd({32, 16}, 63);
  Tensor x = x0.cuda().requires_grad_(), w = w0.cuda().requires_grad_(), b = b0.cuda().requires_grad_();
  Tensor m = m0.cuda().requires_grad_();
  Tensor y, z;
  {
    nq::AutocastGuard ac(nq::kBFloat16);
    CHECK(nq::autocast_dtype() == nq::kBFloat16);
    y = nq::linear(x, w, b);  // (3,9,48) bf16
    z = nq::matmul(x, m);     // (3,9,16) bf16
  }
  CHECK(nq::autocast_dtype() == nq::kFloat32);  // restored
  CHECK(y.dtype() == nq::kBFloat16);
  CHECK(z.dtype() == nq::kBFloat16);
  // linear casts inside its own node: its edges reach the fp32 leaves directly
  // (no "to" nodes), and its backward writes their fp32 gradients.
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name == "linear");
  CHECK(y.grad_fn()->next[0].leaf == x.meta_ptr());
  CHECK(y.grad_fn()->next[1].leaf == w.meta_ptr());
  CHECK(y.grad_fn()->next[2].leaf == b.meta_ptr());
  // Reference: CPU float32 on the bf16-rounded operands.
  auto rounded = [](const Tensor& t) { return host_f32(t.detach().to(nq::kBFloat16)).requires_grad_(); };
  Tensor xr = rounded(x), wr = rounded(w), br = rounded(b), mr = rounded(m);
  Tensor yr = nq::linear(xr, wr, br), zr = nq::matmul(xr, mr);
  close(y, yr, kBF16, "autocast linear forward");
  close(z, zr, kBF16, "autocast matmul forward");
  Tensor gy = host_f32(rnd({3, 9, 48}, 64).cuda().to(nq::kBFloat16)),
         gz = host_f32(rnd({3, 9, 16}, 65).cuda().to(nq::kBFloat16));
  (nq::sum(nq::mul(y.to(nq::kFloat32), gy.cuda())) + nq::sum(nq::mul(z.to(nq::kFloat32), gz.cuda())))
      .backward();
  (nq::sum(nq::mul(yr, gy)) + nq::sum(nq::mul(zr, gz))).backward();
  for (auto* p : {&x, &w, &b, &m}) {
    REQUIRE(p->grad().defined());
    CHECK(p->grad().dtype() == nq::kFloat32);
    CHECK(p->grad().device().is_cuda());
  }
  close(x.grad(), xr.grad(), kBF16, "autocast dx");
  close(w.grad(), wr.grad(), kBF16, "autocast dW");
  close(b.grad(), br.grad(), kBF16, "autocast db");
  close(m.grad(), mr.grad(), kBF16, "autocast dm");
}

TEST_CASE("autocast is a no-op on the CPU; float32 guard turns it off") {
  Tensor a = rnd({4, 5}, 70), b = rnd({5, 3}, 71);
  nq::AutocastGuard ac(nq::kBFloat16);
  CHECK(nq::matmul(a, b).dtype() == nq::kFloat32);
  {
    nq::AutocastGuard off(nq::kFloat32);
    CHECK(nq::matmul(a.cuda(), b.cuda()).dtype() == nq::kFloat32);
  }
  CHECK(nq::matmul(a.cuda(), b.cuda()).dtype() == nq::kBFloat16);
  CHECK_THROWS_AS(nq::AutocastGuard(nq::kFloat16), nq::Error);
}

TEST_CASE("cuda matmul: bf16 @ fp32 outside autocast promotes to fp32") {
  Tensor a = rnd({6, 10}, 80), b = rnd({10, 4}, 81);
  Tensor ad = a.cuda().to(nq::kBFloat16).detach().requires_grad_(), bd = b.cuda().requires_grad_();
  Tensor y = nq::matmul(ad, bd);
  CHECK(y.dtype() == nq::kFloat32);
  close(y, nq::matmul(host_f32(ad), b), kF32, "promoted forward");
  y.sum().backward();
  CHECK(ad.grad().dtype() == nq::kBFloat16);
  CHECK(bd.grad().dtype() == nq::kFloat32);
}

TEST_CASE("cuda linear_gelu (cuBLASLt GELU+bias epilogue) matches gelu_tanh(linear)") {
  for (auto [r, k, n] : {std::tuple<int64_t, int64_t, int64_t>{64, 128, 96}, {37, 61, 19}}) {
    Tensor x = rnd({r, k}, 90), w = rnd({n, k}, 91), b = rnd({n}, 92);
    Tensor want = nq::gelu(nq::linear(x, w, b), nq::GeluApprox::Tanh);
    close(nq::cuda::linear_gelu(x.cuda(), w.cuda(), b.cuda(), nq::MatmulPrecision::FP32), want, kF32,
          "linear_gelu fp32 " + std::to_string(r) + "x" + std::to_string(k) + "x" + std::to_string(n));
  }
}

TEST_CASE("cuda matmul / linear errors name the shapes and devices") {
  Tensor a = rnd({3, 4}, 100).cuda(), b = rnd({5, 2}, 101).cuda();
  try {
    nq::matmul(a, b);
    FAIL("no error for (3,4) @ (5,2)");
  } catch (const nq::Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("matmul") != std::string::npos);
    CHECK(msg.find("[3,4]") != std::string::npos);
    CHECK(msg.find("[5,2]") != std::string::npos);
  }
  CHECK_THROWS_AS(nq::matmul(a, rnd({4, 2}, 102)), nq::Error);  // cuda @ cpu
  CHECK_THROWS_AS(nq::linear(a, rnd({6, 4}, 103)), nq::Error);  // cuda x, cpu w
  CHECK_THROWS_AS(nq::linear(a, rnd({6, 5}, 104).cuda()), nq::Error);
  CHECK_THROWS_AS(nq::matmul(a.to(nq::kFloat64), rnd({4, 2}, 105).cuda()), nq::Error);  // f64 @ f32
}
