// Throughput of the fused neural-network ops (fp32, CPU).
//
//   attention   scaled_dot_product_attention, B=4 H=8 T=S=256 D=64, causal;
//               arg = threads (1, 2). Counters: tokens/s (B*T per call) and
//               GFLOPS = the GEMM work nq executes: full (T,S) tiles (the
//               causal mask is applied to the tile, not skipped), 2 GEMMs per
//               (batch, head) forward = 4*B*H*T*S*D, 7 for fwd+bwd (backward
//               recomputes QK^T, then dV, dP, dQ, dK), i.e. x3.5.
//   softmax     last dim, 4096x1024; bytes/s = read x + write y.
//   layer_norm  4096x768 (weight, bias); rms_norm 4096x768 (weight).
//   cross_entropy  N=2048, V=8192, mean; bytes/s counts one read of the logits
//               (fwd) or read logits + write dlogits (fwd+bwd).
//
// "fwd" runs under NoGradGuard; "fwd_bwd" builds the graph and backpropagates
// an upstream gradient (or the scalar loss), clearing .grad each iteration.
// Single thread unless NQ_THREADS=n is set (the attention benchmark sets its
// own thread count per arg).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <nextquill/nextquill.hpp>

namespace {

int g_default_threads = 1;

// Sets the thread count for one benchmark and restores the default after it.
struct ThreadScope {
  explicit ThreadScope(int n) { nq::set_num_threads(n); }
  ~ThreadScope() { nq::set_num_threads(g_default_threads); }
};

void sink(const nq::Tensor& t) {
  benchmark::DoNotOptimize(t.raw_data_ptr());
  benchmark::ClobberMemory();
}

// ---- attention ---------------------------------------------------------------
constexpr int64_t kB = 4, kH = 8, kT = 256, kD = 64;

double attention_flops() {
  // QK^T and PV over the full (T, S) tile, per (batch, head).
  return 2.0 * 2.0 * double(kB * kH) * double(kT) * double(kT) * double(kD);
}

void set_attention_counters(benchmark::State& state, double flops) {
  state.counters["GFLOPS"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["tokens/s"] = benchmark::Counter(
      double(kB * kT), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_attention_fwd(benchmark::State& state) {
  ThreadScope ts(int(state.range(0)));
  nq::NoGradGuard ng;
  nq::Generator gen(1);
  nq::Tensor q = nq::randn({kB, kH, kT, kD}, {}, &gen), k = nq::randn({kB, kH, kT, kD}, {}, &gen),
             v = nq::randn({kB, kH, kT, kD}, {}, &gen);
  nq::AttentionOptions opts;
  opts.causal = true;
  for (auto _ : state) sink(nq::scaled_dot_product_attention(q, k, v, opts));
  set_attention_counters(state, attention_flops());
}

void BM_attention_fwd_bwd(benchmark::State& state) {
  ThreadScope ts(int(state.range(0)));
  nq::Generator gen(2);
  nq::Tensor q = nq::randn({kB, kH, kT, kD}, {}, &gen).requires_grad_(),
             k = nq::randn({kB, kH, kT, kD}, {}, &gen).requires_grad_(),
             v = nq::randn({kB, kH, kT, kD}, {}, &gen).requires_grad_();
  nq::Tensor go = nq::randn({kB, kH, kT, kD}, {}, &gen);
  nq::AttentionOptions opts;
  opts.causal = true;
  for (auto _ : state) {
    for (auto* t : {&q, &k, &v}) t->zero_grad(/*set_to_none=*/true);
    nq::Tensor o = nq::scaled_dot_product_attention(q, k, v, opts);
    o.backward(go);
    sink(q.grad());
    sink(k.grad());
    sink(v.grad());
  }
  set_attention_counters(state, 3.5 * attention_flops());  // fwd (2 GEMMs) + bwd (QK^T again + 4)
}

// ---- softmax / norms ---------------------------------------------------------
constexpr int64_t kSmRows = 4096, kSmCols = 1024;
constexpr int64_t kNormRows = 4096, kNormCols = 768;

void set_bytes(benchmark::State& state, int64_t bytes_per_iter, int64_t rows) {
  state.SetBytesProcessed(state.iterations() * bytes_per_iter);
  state.SetItemsProcessed(state.iterations() * rows);  // rows/s
}

void BM_softmax_fwd(benchmark::State& state) {
  nq::NoGradGuard ng;
  nq::Tensor x = nq::randn({kSmRows, kSmCols});
  for (auto _ : state) sink(nq::softmax(x, -1));
  set_bytes(state, 2 * kSmRows * kSmCols * 4, kSmRows);  // read x, write y
}

void BM_softmax_fwd_bwd(benchmark::State& state) {
  nq::Tensor x = nq::randn({kSmRows, kSmCols}).requires_grad_();
  nq::Tensor gy = nq::randn({kSmRows, kSmCols});
  for (auto _ : state) {
    x.zero_grad(true);
    nq::Tensor y = nq::softmax(x, -1);
    y.backward(gy);
    sink(x.grad());
  }
  set_bytes(state, 5 * kSmRows * kSmCols * 4, kSmRows);  // fwd r+w, bwd read y, gy, write gx
}

void BM_layer_norm_fwd(benchmark::State& state) {
  nq::NoGradGuard ng;
  nq::Tensor x = nq::randn({kNormRows, kNormCols}), w = nq::randn({kNormCols}), b = nq::randn({kNormCols});
  for (auto _ : state) sink(nq::layer_norm(x, w, b));
  set_bytes(state, 2 * kNormRows * kNormCols * 4, kNormRows);
}

void BM_layer_norm_fwd_bwd(benchmark::State& state) {
  nq::Tensor x = nq::randn({kNormRows, kNormCols}).requires_grad_(),
             w = nq::randn({kNormCols}).requires_grad_(), b = nq::randn({kNormCols}).requires_grad_();
  nq::Tensor gy = nq::randn({kNormRows, kNormCols});
  for (auto _ : state) {
    for (auto* t : {&x, &w, &b}) t->zero_grad(true);
    nq::Tensor y = nq::layer_norm(x, w, b);
    y.backward(gy);
    sink(x.grad());
    sink(w.grad());
  }
  set_bytes(state, 5 * kNormRows * kNormCols * 4, kNormRows);  // fwd r+w, bwd read x, gy, write gx
}

void BM_rms_norm_fwd(benchmark::State& state) {
  nq::NoGradGuard ng;
  nq::Tensor x = nq::randn({kNormRows, kNormCols}), w = nq::randn({kNormCols});
  for (auto _ : state) sink(nq::rms_norm(x, w));
  set_bytes(state, 2 * kNormRows * kNormCols * 4, kNormRows);
}

void BM_rms_norm_fwd_bwd(benchmark::State& state) {
  nq::Tensor x = nq::randn({kNormRows, kNormCols}).requires_grad_(),
             w = nq::randn({kNormCols}).requires_grad_();
  nq::Tensor gy = nq::randn({kNormRows, kNormCols});
  for (auto _ : state) {
    for (auto* t : {&x, &w}) t->zero_grad(true);
    nq::Tensor y = nq::rms_norm(x, w);
    y.backward(gy);
    sink(x.grad());
    sink(w.grad());
  }
  set_bytes(state, 5 * kNormRows * kNormCols * 4, kNormRows);
}

// ---- cross-entropy -------------------------------------------------------------
constexpr int64_t kCeN = 2048, kCeV = 8192;

nq::Tensor ce_targets() {
  nq::Generator gen(7);
  return nq::mul(nq::rand({kCeN}, {}, &gen), double(kCeV)).to(nq::kInt64);
}

void BM_cross_entropy_fwd(benchmark::State& state) {
  nq::NoGradGuard ng;
  nq::Tensor logits = nq::randn({kCeN, kCeV});
  nq::Tensor targets = ce_targets();
  for (auto _ : state) sink(nq::cross_entropy(logits, targets));
  set_bytes(state, kCeN * kCeV * 4, kCeN);
}

void BM_cross_entropy_fwd_bwd(benchmark::State& state) {
  nq::Tensor logits = nq::randn({kCeN, kCeV}).requires_grad_();
  nq::Tensor targets = ce_targets();
  for (auto _ : state) {
    logits.zero_grad(true);
    nq::Tensor loss = nq::cross_entropy(logits, targets);
    loss.backward();
    sink(logits.grad());
  }
  set_bytes(state, 3 * kCeN * kCeV * 4, kCeN);  // fwd read, bwd read + write dlogits
}

}  // namespace

BENCHMARK(BM_attention_fwd)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_attention_fwd_bwd)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_softmax_fwd)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_softmax_fwd_bwd)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_layer_norm_fwd)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_layer_norm_fwd_bwd)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_rms_norm_fwd)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_rms_norm_fwd_bwd)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_cross_entropy_fwd)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_cross_entropy_fwd_bwd)->Unit(benchmark::kMicrosecond)->UseRealTime();

int main(int argc, char** argv) {
  if (const char* env = std::getenv("NQ_THREADS")) g_default_threads = std::max(1, std::atoi(env));
  nq::set_num_threads(g_default_threads);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
