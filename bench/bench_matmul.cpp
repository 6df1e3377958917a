// fp32 GEMM throughput: nq::matmul against its peers on the same shapes.
//
//   nq       nq::matmul (forward, NoGradGuard); allocates its output, as any
//            user of the op pays.
//   openblas cblas_sgemm on raw buffers, output preallocated.
//   eigen    Eigen's own product kernel (EIGEN_USE_BLAS is not defined, and
//            EIGEN_DONT_PARALLELIZE keeps it single-threaded), output
//            preallocated.
//   linear_fwd_bwd  y = x @ w^T, then backward into x and w (x and w require
//            grad): three GEMMs of the same size plus the autograd overhead.
//
// Single thread by default; NQ_THREADS=n sets nq::set_num_threads(n) (OpenMP
// and OpenBLAS alike). After the run, a table of nq / OpenBLAS per shape.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

namespace {

struct GemmShape {
  const char* label;  // "[M,K]x[K,N]" as the user writes it
  const char* id;     // benchmark-name suffix
  int64_t M, N, K;
  bool trans_b;  // b is the transposed view of an (N, K) tensor
};

const GemmShape kShapes[] = {
    {"[2048,256]x[256,768]", "M2048_K256_N768", 2048, 768, 256, false},
    {"[2048,1024]x[1024,256]", "M2048_K1024_N256", 2048, 256, 1024, false},
    {"[2048,256]x[256,4096]^T", "M2048_K256_N4096_Bt", 2048, 4096, 256, true},
};

double flops(const GemmShape& s) { return 2.0 * double(s.M) * double(s.N) * double(s.K); }

void set_flops(benchmark::State& state, double f) {
  // Rate over (real) time, with SI prefixes of 1000: prints e.g. "95.1G/s" = GFLOP/s.
  state.counters["GFLOPS"] =
      benchmark::Counter(f, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// Operands shared by all implementations of one shape: a (M, K), b stored
// (K, N), or (N, K) when trans_b.
struct Operands {
  nq::Tensor a, b;
};

Operands make_operands(const GemmShape& s) {
  nq::Generator gen(1234);
  Operands o;
  o.a = nq::randn({s.M, s.K}, {}, &gen);
  o.b = s.trans_b ? nq::randn({s.N, s.K}, {}, &gen) : nq::randn({s.K, s.N}, {}, &gen);
  return o;
}

void BM_nq(benchmark::State& state, GemmShape s) {
  nq::NoGradGuard ng;
  Operands o = make_operands(s);
  const nq::Tensor b = s.trans_b ? o.b.t() : o.b;  // a view: strides (1, K)
  for (auto _ : state) {
    nq::Tensor c = nq::matmul(o.a, b);
    benchmark::DoNotOptimize(c.data_ptr<float>());
    benchmark::ClobberMemory();
  }
  set_flops(state, flops(s));
}

// nq::matmul with the Eigen GEMM backend selected at run time (NQ_GEMM=eigen).
void BM_nq_eigen(benchmark::State& state, GemmShape s) {
  const nq::GemmBackend before = nq::gemm_backend();
  nq::set_gemm_backend(nq::GemmBackend::Eigen);
  BM_nq(state, s);
  nq::set_gemm_backend(before);
}

void BM_openblas(benchmark::State& state, GemmShape s) {
  Operands o = make_operands(s);
  std::vector<float> c(size_t(s.M * s.N));
  const float* A = o.a.data_ptr<float>();
  const float* B = o.b.data_ptr<float>();
  const int M = int(s.M), N = int(s.N), K = int(s.K);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, K, B,
                s.trans_b ? K : N, 0.0f, c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, flops(s));
}

// Diagnostic: cblas_sgemm into a freshly allocated (64-byte aligned) output
// each iteration, i.e. what nq::matmul does besides the GEMM call.
void BM_openblas_alloc(benchmark::State& state, GemmShape s) {
  Operands o = make_operands(s);
  const float* A = o.a.data_ptr<float>();
  const float* B = o.b.data_ptr<float>();
  const int M = int(s.M), N = int(s.N), K = int(s.K);
  const size_t bytes = ((size_t(s.M * s.N) * sizeof(float) + 63) / 64) * 64;
  for (auto _ : state) {
    float* c = static_cast<float*>(std::aligned_alloc(64, bytes));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, K, B,
                s.trans_b ? K : N, 0.0f, c, N);
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
    std::free(c);
  }
  set_flops(state, flops(s));
}

void BM_eigen(benchmark::State& state, GemmShape s) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Operands o = make_operands(s);
  Mat a = Eigen::Map<const Mat>(o.a.data_ptr<float>(), s.M, s.K);
  Mat b = Eigen::Map<const Mat>(o.b.data_ptr<float>(), s.trans_b ? s.N : s.K, s.trans_b ? s.K : s.N);
  Mat c(s.M, s.N);
  for (auto _ : state) {
    if (s.trans_b)
      c.noalias() = a * b.transpose();
    else
      c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, flops(s));
}

// Linear layer y = x @ w^T (x (M, K), w (N, K)) forward + backward into both.
void BM_linear_fwd_bwd(benchmark::State& state, GemmShape s) {
  nq::Generator gen(99);
  nq::Tensor x = nq::randn({s.M, s.K}, {}, &gen).requires_grad_();
  nq::Tensor w = nq::randn({s.N, s.K}, {}, &gen).requires_grad_();
  nq::Tensor gy = nq::randn({s.M, s.N}, {}, &gen);
  for (auto _ : state) {
    x.zero_grad(/*set_to_none=*/true);
    w.zero_grad(true);
    nq::Tensor y = nq::matmul(x, w.t());
    y.backward(gy);
    benchmark::DoNotOptimize(x.grad().data_ptr<float>());
    benchmark::DoNotOptimize(w.grad().data_ptr<float>());
    benchmark::ClobberMemory();
  }
  set_flops(state, 3.0 * flops(s));  // forward GEMM + dX GEMM + dW GEMM
}

// Console output as usual, plus the GFLOP/s of every run, for the table.
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> gflops;  // benchmark name -> GFLOP/s

  explicit RecordingReporter(OutputOptions opts) : ConsoleReporter(opts) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
      auto it = r.counters.find("GFLOPS");
      if (it == r.counters.end()) continue;
      // With --benchmark_repetitions, keep the best repetition: on a shared
      // machine the noise only ever slows a run down.
      double& best = gflops[r.run_name.function_name];
      best = std::max(best, it->second.value / 1e9);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  if (const char* env = std::getenv("NQ_THREADS")) threads = std::max(1, std::atoi(env));
  nq::set_num_threads(threads);

  for (const auto& s : kShapes) {
    const std::string id = s.id;
    benchmark::RegisterBenchmark(("nq/" + id).c_str(), BM_nq, s)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("nq_eigen/" + id).c_str(), BM_nq_eigen, s)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("openblas/" + id).c_str(), BM_openblas, s)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("openblas_alloc/" + id).c_str(), BM_openblas_alloc, s)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("eigen/" + id).c_str(), BM_eigen, s)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark((std::string("linear_fwd_bwd/") + kShapes[0].id).c_str(), BM_linear_fwd_bwd,
                               kShapes[0])
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();

  // A custom reporter does not see --benchmark_color; honour it (default: color on a terminal).
  bool color = isatty(STDOUT_FILENO);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--benchmark_color=", 0) == 0) {
      const std::string v = arg.substr(18);
      color = v == "true" || v == "yes" || v == "1" || (v == "auto" && isatty(STDOUT_FILENO));
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf(
      "nextquill %s, threads = %d (NQ_THREADS), nq GEMM backend = %s\n", nq::version_string, threads,
      nq::gemm_backend() == nq::GemmBackend::Blas ? "cblas (NQ_GEMM=blas)" : "Eigen kernel (NQ_GEMM=eigen)");
#ifdef OPENBLAS_VERSION
  std::printf("peer: %s, core %s\n", openblas_get_config(), openblas_get_corename());
#endif
  RecordingReporter reporter(color ? benchmark::ConsoleReporter::OO_ColorTabular
                                   : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  // run_name.function_name is "impl/shape-id". Ratios use the best repetition
  // of each (run with --benchmark_repetitions=N; do not pass
  // --benchmark_report_aggregates_only, which hides the repetitions).
  auto get = [&](const std::string& impl, const std::string& id) -> double {
    auto it = reporter.gflops.find(impl + "/" + id);
    return it == reporter.gflops.end() ? -1.0 : it->second;
  };
  auto cell = [](double v, const char* fmt) {
    char buf[32];
    if (v > 0)
      std::snprintf(buf, sizeof buf, fmt, v);
    else
      std::snprintf(buf, sizeof buf, "-");
    return std::string(buf);
  };
  std::printf("\n%-25s | %10s | %10s | %10s | %10s | %11s | %11s\n", "shape", "nq GFLOP/s", "nq(Eigen)",
              "OpenBLAS", "Eigen", "nq/OpenBLAS", "OB+alloc/OB");
  std::printf("%s\n", std::string(25 + 4 * 13 + 2 * 14 + 1, '-').c_str());
  for (const auto& s : kShapes) {
    const double nqv = get("nq", s.id), nqe = get("nq_eigen", s.id), ob = get("openblas", s.id),
                 eg = get("eigen", s.id), oba = get("openblas_alloc", s.id);
    if (nqv < 0 && ob < 0 && eg < 0) continue;  // filtered out
    std::printf("%-25s | %10s | %10s | %10s | %10s | %11s | %11s\n", s.label, cell(nqv, "%.1f").c_str(),
                cell(nqe, "%.1f").c_str(), cell(ob, "%.1f").c_str(), cell(eg, "%.1f").c_str(),
                cell(nqv > 0 && ob > 0 ? nqv / ob : -1, "%.3f").c_str(),
                cell(oba > 0 && ob > 0 ? oba / ob : -1, "%.3f").c_str());
  }
  return 0;
}
