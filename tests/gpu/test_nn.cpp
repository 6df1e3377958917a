// GPU tests of the "nn" ops: softmax / log_softmax / logsumexp, layer_norm /
// rms_norm, embedding, RoPE. Each case builds seeded inputs on the CPU, runs
// the op on the CPU (float32) and on CUDA copies (float32 or bfloat16), and
// compares the output and every input gradient for one shared upstream
// gradient. bf16 cases compare with the CPU float32 result of the bf16-rounded
// inputs and upstream gradient.
//
// Tolerances: float32 rtol 1e-5, atol 1e-6 for outputs (the GPU sums in fp32
// in another order, the CPU in double), atol 1e-5 for gradients that cancel
// (norm dx); bf16 rtol/atol 2e-2 for outputs and 3e-2 for gradients (8-bit
// mantissa on the stored output and on the saved activations).
#include <functional>
#include <limits>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Tensor;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct Tol {
  double rtol, atol, grtol, gatol;
};
constexpr Tol kF32{1e-5, 1e-6, 1e-5, 1e-5};
constexpr Tol kBF16{2e-2, 2e-2, 3e-2, 3e-2};

// A device copy for the GPU run; float inputs in `dt`, int64 as is.
Tensor to_gpu(const Tensor& cpu, nq::DType dt) {
  Tensor d = cpu.cuda();
  if (nq::is_floating(cpu.dtype()) && dt != cpu.dtype()) d = d.to(dt);
  return d;
}
// The CPU reference of a device tensor: float32 (bf16 values exactly).
Tensor ref_of(const Tensor& dev) {
  Tensor c = nq::is_floating(dev.dtype()) ? dev.to(nq::kFloat32) : dev;
  return c.cpu();
}
// float32 on the CPU, for expect_close (bf16 has no host to_vector).
Tensor host_f32(const Tensor& t) { return t.to(nq::kFloat32).cpu(); }

// Runs f on CUDA copies of `inputs` (dtypes[i] on the device; undefined
// inputs stay undefined) and on their CPU float32 references; compares the
// output, then backpropagates one seeded upstream gradient and compares the
// gradients of the inputs marked in `grad`.
void check_op(const std::string& what, const Fn& f, const std::vector<Tensor>& inputs,
              const std::vector<nq::DType>& dtypes, const std::vector<bool>& grad, const Tol& tol,
              uint64_t seed = 1) {
  INFO(what);
  std::vector<Tensor> dev(inputs.size()), ref(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    dev[i] = to_gpu(inputs[i], dtypes[i]);
    ref[i] = ref_of(dev[i]);
    if (grad[i]) {
      dev[i].requires_grad_();
      ref[i].requires_grad_();
    }
  }
  Tensor yd = f(dev), yr = f(ref);
  REQUIRE(yd.device().is_cuda());
  nqgpu::expect_close(host_f32(yd), yr, tol.rtol, tol.atol, what + " forward");
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) any = any || (inputs[i].defined() && grad[i]);
  if (!any) return;
  nq::Generator gen(seed + 1000);
  Tensor g = nq::randn(yr.shape(), nq::kFloat32, &gen);
  Tensor gd = g.cuda().to(yd.dtype());
  yd.backward(gd);
  yr.backward(ref_of(gd));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !grad[i]) continue;
    REQUIRE(dev[i].grad().defined());
    CHECK(dev[i].grad().device().is_cuda());
    CHECK(dev[i].grad().dtype() == dev[i].dtype());
    nqgpu::expect_close(host_f32(dev[i].grad()), ref[i].grad(), tol.grtol, tol.gatol,
                        what + " grad of input " + std::to_string(i));
  }
}

Tensor randn(const nq::Shape& s, uint64_t seed) {
  nq::Generator gen(seed);
  return nq::randn(s, nq::kFloat32, &gen);
}

std::string name(const char* op, const nq::Shape& s, nq::DType dt, int64_t dim = -1) {
  return std::string(op) + " " + nq::shape_str(s) + " dim " + std::to_string(dim) + " " + nq::dtype_name(dt);
}

// (4, n) with row 1 all -inf and every third entry of row 2 -inf.
Tensor masked_rows(int64_t n, uint64_t seed) {
  std::vector<float> v = randn({4, n}, seed).to_vector<float>();
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    v[n + i] = ninf;
    if (i % 3 == 0) v[2 * n + i] = ninf;
  }
  return nq::from_vector<float>(v, {4, n});
}

}  // namespace

TEST_CASE("gpu softmax / log_softmax, last dim, odd lengths incl. vocab 50257") {
  for (nq::DType dt : {nq::kFloat32, nq::kBFloat16}) {
    const Tol tol = dt == nq::kFloat32 ? kF32 : kBF16;
    for (nq::Shape s : {nq::Shape{5, 1}, nq::Shape{3, 37}, nq::Shape{2, 3, 1000}, nq::Shape{2, 50257}}) {
      Tensor x = randn(s, 11) * 3.0;
      check_op(
          name("softmax", s, dt), [](auto& in) { return nq::softmax(in[0], -1); }, {x}, {dt}, {true}, tol);
      check_op(
          name("log_softmax", s, dt), [](auto& in) { return nq::log_softmax(in[0], -1); }, {x}, {dt}, {true},
          tol);
    }
  }
}

TEST_CASE("gpu softmax / log_softmax / logsumexp over a non-last dim") {
  const nq::Shape s{6, 37, 5};
  Tensor x = randn(s, 12);
  for (int64_t dim : {0, 1}) {
    check_op(
        name("softmax", s, nq::kFloat32, dim), [dim](auto& in) { return nq::softmax(in[0], dim); }, {x},
        {nq::kFloat32}, {true}, kF32);
    check_op(
        name("log_softmax", s, nq::kFloat32, dim), [dim](auto& in) { return nq::log_softmax(in[0], dim); },
        {x}, {nq::kFloat32}, {true}, kF32);
    for (bool keep : {false, true})
      check_op(
          name("logsumexp", s, nq::kFloat32, dim) + (keep ? " keepdim" : ""),
          [dim, keep](auto& in) { return nq::logsumexp(in[0], dim, keep); }, {x}, {nq::kFloat32}, {true},
          kF32);
  }
  // bf16, non-last dim
  check_op(
      name("softmax", s, nq::kBFloat16, 1), [](auto& in) { return nq::softmax(in[0], 1); }, {x},
      {nq::kBFloat16}, {true}, kBF16);
}

TEST_CASE("gpu logsumexp, last dim, odd lengths") {
  for (nq::DType dt : {nq::kFloat32, nq::kBFloat16}) {
    const Tol tol = dt == nq::kFloat32 ? kF32 : kBF16;
    for (nq::Shape s : {nq::Shape{5, 1}, nq::Shape{3, 37}, nq::Shape{4, 1000}, nq::Shape{2, 50257}}) {
      Tensor x = randn(s, 13) * 2.0;
      check_op(
          name("logsumexp", s, dt), [](auto& in) { return nq::logsumexp(in[0], -1); }, {x}, {dt}, {true},
          tol);
    }
  }
}

TEST_CASE("gpu softmax family on fully and partly -inf rows") {
  for (int64_t n : {1, 37, 1000}) {
    Tensor x = masked_rows(n, 14);
    const nq::Shape s = x.shape();
    check_op(
        name("softmax -inf", s, nq::kFloat32), [](auto& in) { return nq::softmax(in[0], -1); }, {x},
        {nq::kFloat32}, {true}, kF32);
    check_op(
        name("log_softmax -inf", s, nq::kFloat32), [](auto& in) { return nq::log_softmax(in[0], -1); }, {x},
        {nq::kFloat32}, {true}, kF32);
    check_op(
        name("logsumexp -inf", s, nq::kFloat32), [](auto& in) { return nq::logsumexp(in[0], -1); }, {x},
        {nq::kFloat32}, {true}, kF32);
    check_op(
        name("softmax -inf", s, nq::kBFloat16), [](auto& in) { return nq::softmax(in[0], -1); }, {x},
        {nq::kBFloat16}, {true}, kBF16);
  }
  // The masked row itself: softmax exactly 0, log_softmax and logsumexp -inf, no NaN.
  Tensor x = masked_rows(37, 15).cuda();
  std::vector<float> sm = nq::softmax(x, -1).cpu().to_vector<float>();
  std::vector<float> ls = nq::log_softmax(x, -1).cpu().to_vector<float>();
  std::vector<float> lse = nq::logsumexp(x, -1).cpu().to_vector<float>();
  for (int64_t i = 0; i < 37; ++i) {
    CHECK(sm[37 + i] == 0.0f);
    CHECK(ls[37 + i] == -std::numeric_limits<float>::infinity());
  }
  CHECK(lse[1] == -std::numeric_limits<float>::infinity());
}

TEST_CASE("gpu layer_norm and rms_norm, with and without weight/bias") {
  for (nq::Shape s : {nq::Shape{4, 1}, nq::Shape{5, 37}, nq::Shape{3, 1000}, nq::Shape{2, 3, 768}}) {
    const int64_t C = s.back();
    Tensor x = randn(s, 21) * 2.0 + 0.5;
    Tensor w = randn({C}, 22) * 0.5 + 1.0, b = randn({C}, 23) * 0.1;
    for (nq::DType dt : {nq::kFloat32, nq::kBFloat16}) {
      const Tol tol = dt == nq::kFloat32 ? kF32 : kBF16;
      auto ln = [](auto& in) { return nq::layer_norm(in[0], in[1], in[2], 1e-5); };
      auto rms = [](auto& in) { return nq::rms_norm(in[0], in[1], 1e-6); };
      check_op(name("layer_norm w b", s, dt), ln, {x, w, b}, {dt, dt, dt}, {true, true, true}, tol);
      check_op(name("layer_norm no w/b", s, dt), ln, {x, Tensor(), Tensor()}, {dt, dt, dt},
               {true, false, false}, tol);
      check_op(name("layer_norm w only", s, dt), ln, {x, w, Tensor()}, {dt, dt, dt}, {true, true, false},
               tol);
      check_op(name("layer_norm b only", s, dt), ln, {x, Tensor(), b}, {dt, dt, dt}, {true, false, true},
               tol);
      check_op(name("rms_norm w", s, dt), rms, {x, w}, {dt, dt}, {true, true}, tol);
      check_op(name("rms_norm no w", s, dt), rms, {x, Tensor()}, {dt, dt}, {true, false}, tol);
      // frozen weight: only dx asked for
      check_op(name("layer_norm frozen w b", s, dt), ln, {x, w, b}, {dt, dt, dt}, {true, false, false}, tol);
    }
    // Mixed precision: bf16 x with fp32 weight/bias (y bf16, dweight/dbias fp32).
    auto ln = [](auto& in) { return nq::layer_norm(in[0], in[1], in[2], 1e-5); };
    auto rms = [](auto& in) { return nq::rms_norm(in[0], in[1], 1e-6); };
    check_op(name("layer_norm mixed", s, nq::kBFloat16), ln, {x, w, b},
             {nq::kBFloat16, nq::kFloat32, nq::kFloat32}, {true, true, true}, kBF16);
    check_op(name("rms_norm mixed", s, nq::kBFloat16), rms, {x, w}, {nq::kBFloat16, nq::kFloat32},
             {true, true}, kBF16);
  }
}

TEST_CASE("gpu norms: saved statistics are float32 and mixed devices throw") {
  Tensor x = randn({3, 37}, 24).cuda();
  Tensor w = randn({37}, 25);  // on the CPU
  CHECK_THROWS_AS(nq::layer_norm(x, w, Tensor(), 1e-5), nq::Error);
  CHECK_THROWS_AS(nq::rms_norm(x, w, 1e-6), nq::Error);
  // bf16 x with a float64 weight is not a supported mix
  CHECK_THROWS_AS(nq::rms_norm(x.to(nq::kBFloat16), w.cuda().to(nq::kFloat64), 1e-6), nq::Error);
}

TEST_CASE("gpu embedding: gather, scatter-add over repeated ids") {
  const int64_t V = 50;
  for (int64_t C : {1, 37, 768}) {
    Tensor w = randn({V, C}, 31);
    std::vector<int64_t> idv;
    for (int64_t i = 0; i < 3 * 7; ++i)
      idv.push_back((i * 7) % 5 + (i == 20 ? V - 1 : 0));  // many repeats, V-1
    Tensor ids = nq::from_vector<int64_t>(idv, {3, 7});
    auto emb = [](auto& in) { return nq::embedding(in[0], in[1]); };
    check_op("embedding f32 C=" + std::to_string(C), emb, {w, ids}, {nq::kFloat32, nq::kInt64}, {true, false},
             kF32);
    check_op("embedding bf16 C=" + std::to_string(C), emb, {w, ids}, {nq::kBFloat16, nq::kInt64},
             {true, false}, kBF16);
    // ids left on the CPU with a CUDA weight: checked on the host, then copied.
    Tensor wd = w.cuda().requires_grad_();
    Tensor wr = w.clone().requires_grad_();
    Tensor yd = nq::embedding(wd, ids), yr = nq::embedding(wr, ids);
    nqgpu::expect_close(yd, yr, 0, 1e-30, "embedding host ids forward (exact)");
    Tensor g = randn(yr.shape(), 32);
    yd.backward(g.cuda());
    yr.backward(g);
    nqgpu::expect_close(wd.grad(), wr.grad(), 1e-5, 1e-6, "embedding host ids grad");
  }
}

TEST_CASE("gpu embedding: out-of-range ids throw nq::Error") {
  Tensor w = randn({10, 8}, 33).cuda();
  for (int64_t bad : {10, 1000, -1}) {
    Tensor ids = nq::from_vector<int64_t>({1, 2, bad, 3, bad, 4}, {2, 3});
    // device ids: checked on the GPU, first bad position reported
    try {
      nq::embedding(w, ids.cuda());
      FAIL("no error for id " << bad);
    } catch (const nq::Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("out of range") != std::string::npos);
      CHECK(msg.find(std::to_string(bad)) != std::string::npos);
      CHECK(msg.find("[0,2]") != std::string::npos);  // position of the first bad id
    }
    CHECK_THROWS_AS(nq::embedding(w, ids), nq::Error);  // host ids
  }
  // The stream is still usable after the error.
  Tensor ok = nq::embedding(w, nq::from_vector<int64_t>({9, 0}, {2}).cuda());
  nqgpu::expect_close(ok, nq::embedding(w.cpu(), nq::from_vector<int64_t>({9, 0}, {2})), 0, 1e-30,
                      "after error");
}

TEST_CASE("gpu rope: tables and rotation with position offsets") {
  const int64_t B = 2, H = 3, T = 5, D = 8;
  // left-padded style offsets: batch 0 starts at 7, batch 1 at 4093
  std::vector<int64_t> pv;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) pv.push_back((b ? 4093 : 7) + t);
  Tensor pos = nq::from_vector<int64_t>(pv, {B, T});
  auto [c, s] = nq::rope_tables(pos, D, 10000.0);
  auto [cd, sd] = nq::rope_tables(pos.cuda(), D, 10000.0);
  REQUIRE(cd.device().is_cuda());
  nqgpu::expect_close(cd, c, 1e-6, 1e-7, "rope_tables cos");
  nqgpu::expect_close(sd, s, 1e-6, 1e-7, "rope_tables sin");

  Tensor x = randn({B, H, T, D}, 41);
  auto rope = [](auto& in) { return nq::rope(in[0], in[1], in[2]); };
  check_op("rope f32", rope, {x, c, s}, {nq::kFloat32, nq::kFloat32, nq::kFloat32}, {true, false, false},
           kF32);
  check_op("rope bf16", rope, {x, c, s}, {nq::kBFloat16, nq::kBFloat16, nq::kBFloat16}, {true, false, false},
           kBF16);

  // (T, D/2) tables shared by the batch
  Tensor c2 = c.select(0, 0).contiguous(), s2 = s.select(0, 0).contiguous();
  check_op("rope f32 2-D tables", rope, {x, c2, s2}, {nq::kFloat32, nq::kFloat32, nq::kFloat32},
           {true, false, false}, kF32);

  // Strided x: (B,T,H,D) storage viewed as (B,H,T,D), as after a qkv split.
  Tensor xt = randn({B, T, H, D}, 42);
  auto rope_t = [](auto& in) { return nq::rope(in[0].transpose(1, 2), in[1], in[2]); };
  check_op("rope f32 strided x", rope_t, {xt, c, s}, {nq::kFloat32, nq::kFloat32, nq::kFloat32},
           {true, false, false}, kF32);

  // bf16 x with float32 tables (mixed precision), against the CPU in float32.
  Tensor xb = x.cuda().to(nq::kBFloat16).requires_grad_();
  Tensor yb = nq::rope(xb, cd, sd);
  CHECK(yb.dtype() == nq::kBFloat16);
  Tensor xr = xb.detach().to(nq::kFloat32).cpu().requires_grad_();
  Tensor yr = nq::rope(xr, c, s);
  nqgpu::expect_close(host_f32(yb), yr, kBF16.rtol, kBF16.atol, "rope bf16 x fp32 tables");
  Tensor g = randn({B, H, T, D}, 43);
  yb.backward(g.cuda().to(nq::kBFloat16));
  yr.backward(g.cuda().to(nq::kBFloat16).to(nq::kFloat32).cpu());
  nqgpu::expect_close(host_f32(xb.grad()), xr.grad(), kBF16.grtol, kBF16.gatol,
                      "rope bf16 x fp32 tables grad");

  // Tables on another device than x throw.
  CHECK_THROWS_AS(nq::rope(x.cuda(), c, s), nq::Error);
}
