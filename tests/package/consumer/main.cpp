// Downstream smoke test: compiled against nextquill::nextquill (CMake) or the
// flags from `pkg-config nextquill`. Prints one line that check.sh inspects.
// It checks the version API, that the dependency flags arrive, and runs one
// real forward/backward pass through nq ops.
#include <nextquill/nextquill.hpp>

#include <Eigen/Core>
#include <cstdio>
#include <cstring>

#if NEXTQUILL_WITH_BLAS
#include <cblas.h>
#endif
#if NEXTQUILL_WITH_OPENMP
#include <omp.h>
#endif

int main() {
  // The macros and the string must agree.
  char expect[32];
  std::snprintf(expect, sizeof expect, "%d.%d.%d", NEXTQUILL_VERSION_MAJOR, NEXTQUILL_VERSION_MINOR,
                NEXTQUILL_VERSION_PATCH);
  if (std::strcmp(expect, nq::version_string) != 0) {
    std::printf("version mismatch: macros %s, nq::version_string %s\n", expect, nq::version_string);
    return 1;
  }

  // Eigen include path comes through the target.
  Eigen::Vector3f a(1.f, 2.f, 3.f), b(4.f, 5.f, 6.f);
  float dot = a.dot(b);

#if NEXTQUILL_WITH_BLAS
  // BLAS library and cblas.h come through the target; check they agree with Eigen.
  float blas_dot = cblas_sdot(3, a.data(), 1, b.data(), 1);
  if (blas_dot != dot) {
    std::printf("cblas_sdot gave %g, expected %g\n", blas_dot, dot);
    return 1;
  }
#endif
#if defined(OPENBLAS_VERSION)
  const int openblas_parallel = openblas_get_parallel();  // 0 seq, 1 pthreads, 2 OpenMP
#else
  const int openblas_parallel = -1;
#endif
#if NEXTQUILL_WITH_OPENMP
  const int omp_threads = omp_get_max_threads();
#else
  const int omp_threads = 0;
#endif

  // A real op graph: d/dw mean((x w)^2) through matmul (BLAS or Eigen),
  // softmax and the autograd engine.
  nq::Tensor x = nq::from_vector<float>({1, 2, 3, 4}, {2, 2});
  nq::Tensor w = nq::ones({2, 1}).requires_grad_();
  nq::Tensor loss = nq::square(nq::matmul(x, w)).mean() + nq::softmax(x, -1).sum();
  loss.backward();
  // d/dw of mean((x w)^2) = 2/2 * x^T (x w) = x^T [3, 7] = [24, 34]
  std::vector<float> gw = w.grad().to_vector<float>();
  if (gw[0] != 24.f || gw[1] != 34.f) {
    std::printf("autograd gave w.grad = [%g, %g], expected [24, 34]\n", gw[0], gw[1]);
    return 1;
  }

  std::printf("nextquill %s (NEXTQUILL_VERSION=%d) blas=%d openmp=%d cuda=%d dot=%g omp_threads=%d "
              "openblas_parallel=%d\n",
              nq::version_string, NEXTQUILL_VERSION, NEXTQUILL_WITH_BLAS, NEXTQUILL_WITH_OPENMP,
              NEXTQUILL_WITH_CUDA, dot, omp_threads, openblas_parallel);
  return dot == 32.f ? 0 : 1;
}
