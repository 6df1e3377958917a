#pragma once
// One GEMM entry point for the CPU: C = alpha * op(A) op(B) + beta * C on
// row-major strided matrices. Two kernels sit behind it: OpenBLAS's cblas
// (when built with NEXTQUILL_WITH_BLAS) and Eigen's own, chosen at run time
// (set_gemm_backend, or NQ_GEMM=blas|eigen; default: see
// default_gemm_backend). Both take transposes as flags,
// so a transposed view never needs a copy. Why both: which is faster depends
// on the CPU and the BLAS build (OpenBLAS 0.3.21 does not know Zen 5 and
// falls back to AVX2 kernels there, where Eigen's AVX-512 kernel wins); see
// docs/benchmarks.md.
#include "../config.hpp"  // before Eigen: sets EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../config.hpp"
#include "../core/error.hpp"
#include "parallel.hpp"

namespace nq {

enum class GemmBackend { Blas, Eigen };

namespace cpu {
// The default when NQ_GEMM is unset: BLAS, except where OpenBLAS runs kernels
// narrower than the AVX-512 code Eigen was compiled to (an OpenBLAS that does
// not know the CPU, e.g. 0.3.21 on Zen 5, picks its Haswell/Zen AVX2 kernels
// and is ~1.4x slower than Eigen there).
inline GemmBackend default_gemm_backend() {
#if NEXTQUILL_WITH_BLAS
#if defined(OPENBLAS_VERSION) && defined(EIGEN_VECTORIZE_AVX512) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx512f")) {
    const char* core = openblas_get_corename();
    const bool wide = core && (std::strstr(core, "kylakex") || std::strstr(core, "ooperlake") ||
                               std::strstr(core, "apphire") || std::strstr(core, "KYLAKEX") ||
                               std::strstr(core, "OOPERLAKE") || std::strstr(core, "APPHIRE"));
    if (!wide) return GemmBackend::Eigen;
  }
#endif
  return GemmBackend::Blas;
#else
  return GemmBackend::Eigen;
#endif
}

inline GemmBackend& gemm_backend_ref() {
  static GemmBackend b = [] {
    const char* env = std::getenv("NQ_GEMM");
    if (env && std::strcmp(env, "eigen") == 0) return GemmBackend::Eigen;
    if (env && std::strcmp(env, "blas") == 0) {
      NQ_CHECK(NEXTQUILL_WITH_BLAS, "gemm",
               "NQ_GEMM=blas but this build has no BLAS (NEXTQUILL_WITH_BLAS=0)");
      return GemmBackend::Blas;
    }
    NQ_CHECK(!env || !*env, "gemm", "NQ_GEMM='", env, "' is not one of: blas, eigen");
    return default_gemm_backend();
  }();
  return b;
}
}  // namespace cpu

inline GemmBackend gemm_backend() { return cpu::gemm_backend_ref(); }
inline void set_gemm_backend(GemmBackend b) {
  NQ_CHECK(b != GemmBackend::Blas || NEXTQUILL_WITH_BLAS, "set_gemm_backend",
           "this build has no BLAS (configure with -DNEXTQUILL_WITH_BLAS=ON)");
  cpu::gemm_backend_ref() = b;
}

namespace cpu {

// A row-major view of an (rows x cols) matrix with leading dimension ld;
// trans = the stored matrix is the transpose of the logical one.
template <typename T>
struct MatRef {
  const T* data;
  int64_t ld;
  bool trans;
};

#if NEXTQUILL_WITH_BLAS
template <typename T>
void gemm_blas(int64_t M, int64_t N, int64_t K, T alpha, MatRef<T> A, MatRef<T> B, T beta, T* C,
               int64_t ldc) {
  auto ta = A.trans ? CblasTrans : CblasNoTrans;
  auto tb = B.trans ? CblasTrans : CblasNoTrans;
  // BLAS requires ld >= max(1, cols of the stored matrix).
  auto fix = [](int64_t ld, int64_t cols) { return static_cast<int>(std::max<int64_t>({ld, cols, 1})); };
  const int lda = fix(A.ld, A.trans ? M : K), ldb = fix(B.ld, B.trans ? K : N);
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A.data, lda, B.data, ldb, beta, C,
                static_cast<int>(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A.data, lda, B.data, ldb, beta, C,
                static_cast<int>(ldc));
}
#endif

// Eigen's kernel on one block of rows of C; EIGEN_DONT_PARALLELIZE keeps it
// single-threaded, so gemm_eigen splits rows across threads itself.
template <typename T>
void gemm_eigen_rows(int64_t M, int64_t N, int64_t K, T alpha, MatRef<T> A, MatRef<T> B, T beta, T* C,
                     int64_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  using CMap = Eigen::Map<const Mat, 0, Stride>;
  Eigen::Map<Mat, 0, Stride> c(C, M, N, Stride(ldc));
  auto run = [&](const auto& a, const auto& b) {
    if (beta == T(0))
      c.noalias() = alpha * (a * b);
    else {
      if (beta != T(1)) c *= beta;
      c.noalias() += alpha * (a * b);
    }
  };
  CMap a(A.data, A.trans ? K : M, A.trans ? M : K, Stride(std::max<int64_t>(A.ld, 1)));
  CMap b(B.data, B.trans ? N : K, B.trans ? K : N, Stride(std::max<int64_t>(B.ld, 1)));
  if (A.trans && B.trans)
    run(a.transpose(), b.transpose());
  else if (A.trans)
    run(a.transpose(), b);
  else if (B.trans)
    run(a, b.transpose());
  else
    run(a, b);
}

template <typename T>
void gemm_eigen(int64_t M, int64_t N, int64_t K, T alpha, MatRef<T> A, MatRef<T> B, T beta, T* C,
                int64_t ldc) {
  // Row blocks of at least 64 rows and ~4 MFLOP, so small products stay serial.
  const int64_t grain = std::max<int64_t>(64, (int64_t(1) << 22) / std::max<int64_t>(1, N * K));
  parallel_for(0, M, grain, [&](int64_t m0, int64_t m1) {
    MatRef<T> a = A;
    a.data += A.trans ? m0 : m0 * A.ld;  // logical row m0 of op(A)
    gemm_eigen_rows<T>(m1 - m0, N, K, alpha, a, B, beta, C + m0 * ldc, ldc);
  });
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, T alpha, MatRef<T> A, MatRef<T> B, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
#if NEXTQUILL_WITH_BLAS
  if (gemm_backend() == GemmBackend::Blas) return gemm_blas<T>(M, N, K, alpha, A, B, beta, C, ldc);
#endif
  gemm_eigen<T>(M, N, K, alpha, A, B, beta, C, ldc);
}

}  // namespace cpu
}  // namespace nq
