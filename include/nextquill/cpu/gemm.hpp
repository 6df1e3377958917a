#pragma once
// One GEMM entry point for the CPU: C = alpha * op(A) op(B) + beta * C on
// row-major strided matrices. With NEXTQUILL_WITH_BLAS it calls cblas
// (OpenBLAS), otherwise Eigen's kernel through strided Maps; both take
// transposes as flags, so a transposed view never needs a copy.
#include <Eigen/Core>
#include <cstdint>

#include "../config.hpp"
#include "parallel.hpp"

namespace nq::cpu {

// A row-major view of an (rows x cols) matrix with leading dimension ld;
// trans = the stored matrix is the transpose of the logical one.
template <typename T>
struct MatRef {
  const T* data;
  int64_t ld;
  bool trans;
};

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, T alpha, MatRef<T> A, MatRef<T> B, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
#if NEXTQUILL_WITH_BLAS
  auto ta = A.trans ? CblasTrans : CblasNoTrans;
  auto tb = B.trans ? CblasTrans : CblasNoTrans;
  // BLAS requires ld >= max(1, cols of the stored matrix).
  auto fix = [](int64_t ld, int64_t cols) { return static_cast<int>(std::max<int64_t>({ld, cols, 1})); };
  const int lda = fix(A.ld, A.trans ? M : K), ldb = fix(B.ld, B.trans ? K : N);
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha,
                A.data, lda, B.data, ldb, beta, C, static_cast<int>(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha,
                A.data, lda, B.data, ldb, beta, C, static_cast<int>(ldc));
#else
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  using CMap = Eigen::Map<const Mat, 0, Stride>;
  Eigen::Map<Mat, 0, Stride> c(C, M, N, Stride(ldc));
  auto run = [&](const auto& a, const auto& b) {
    if (beta == T(0)) c.noalias() = alpha * (a * b);
    else {
      if (beta != T(1)) c *= beta;
      c.noalias() += alpha * (a * b);
    }
  };
  CMap a(A.data, A.trans ? K : M, A.trans ? M : K, Stride(std::max<int64_t>(A.ld, 1)));
  CMap b(B.data, B.trans ? N : K, B.trans ? K : N, Stride(std::max<int64_t>(B.ld, 1)));
  if (A.trans && B.trans) run(a.transpose(), b.transpose());
  else if (A.trans) run(a.transpose(), b);
  else if (B.trans) run(a, b.transpose());
  else run(a, b);
#endif
}

}  // namespace nq::cpu
