#pragma once
// Thread control and a chunked parallel_for on OpenMP (serial without it).
#include <algorithm>
#include <cstdint>

#include "../config.hpp"

#if NEXTQUILL_WITH_OPENMP
#include <omp.h>
#endif
#if NEXTQUILL_WITH_BLAS
#include <cblas.h>
#endif

namespace nq {

inline int get_num_threads() {
#if NEXTQUILL_WITH_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Threads for our parallel loops and for BLAS alike.
inline void set_num_threads(int n) {
  n = std::max(1, n);
#if NEXTQUILL_WITH_OPENMP
  omp_set_num_threads(n);
#endif
#if NEXTQUILL_WITH_BLAS && defined(OPENBLAS_VERSION)
  openblas_set_num_threads(n);
#endif
}

namespace cpu {

// f(begin, end) over [0, n) split in contiguous chunks of at least `grain`
// items; runs inline when the work is small or we are already in parallel.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& f) {
  const int64_t n = end - begin;
  if (n <= 0) return;
#if NEXTQUILL_WITH_OPENMP
  int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
  if (chunks > 1) {
#pragma omp parallel for num_threads(static_cast <int>(chunks)) schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t b = begin + n * c / chunks, e = begin + n * (c + 1) / chunks;
      f(b, e);
    }
    return;
  }
#endif
  (void)grain;
  f(begin, end);
}

// f(i) for each i in [0, n), one item per task, dynamically scheduled: for
// coarse independent work such as attention over (batch, head).
template <typename F>
void parallel_items(int64_t n, F&& f) {
#if NEXTQUILL_WITH_OPENMP
  if (n > 1 && !omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace cpu
}  // namespace nq
