// CPU machinery: the caching allocator and the run-time GEMM backend switch.
#include <doctest/doctest.h>

#include <nextquill/nextquill.hpp>

TEST_CASE("CpuAllocator reuses freed large blocks of the same size and respects its limit") {
  auto& alloc = nq::CpuAllocator::instance();
  alloc.empty_cache();
  const int64_t n = (int64_t(4) << 20) / 4;  // 4 MiB of float32: above the caching threshold
  void* first = nullptr;
  {
    nq::Tensor t = nq::empty({n});
    first = t.raw_data_ptr();
  }
  CHECK(alloc.cached_bytes() >= size_t(4) << 20);
  {
    nq::Tensor t = nq::empty({n});
    CHECK(t.raw_data_ptr() == first);  // served from the cache
    CHECK(alloc.cached_bytes() == 0);
  }
  alloc.set_cache_limit(0);  // caching off: blocks go straight back to the OS
  { nq::Tensor t = nq::empty({n}); }
  CHECK(alloc.cached_bytes() == 0);
  alloc.set_cache_limit(size_t(1) << 30);
  // Small blocks are never cached.
  { nq::Tensor t = nq::empty({16}); }
  CHECK(alloc.cached_bytes() == 0);
}

TEST_CASE("matmul gives the same result with the BLAS and Eigen GEMM backends") {
  nq::Generator g(3);
  // (2*1501) rows of 40: enough work for gemm_eigen to split rows across threads.
  nq::Tensor a = nq::randn({2, 1501, 40}, nq::kFloat64, &g), w = nq::randn({39, 40}, nq::kFloat64, &g);
  const nq::GemmBackend before = nq::gemm_backend();
  nq::set_gemm_backend(nq::GemmBackend::Eigen);
  CHECK(nq::gemm_backend() == nq::GemmBackend::Eigen);
  std::vector<double> eigen = nq::matmul(a, w.t()).to_vector<double>();
  std::vector<double> blas = eigen;
  if (NEXTQUILL_WITH_BLAS) {
    nq::set_gemm_backend(nq::GemmBackend::Blas);
    blas = nq::matmul(a, w.t()).to_vector<double>();
  } else {
    CHECK_THROWS_WITH_AS(nq::set_gemm_backend(nq::GemmBackend::Blas), doctest::Contains("no BLAS"),
                         nq::Error);
  }
  nq::set_gemm_backend(before);
  REQUIRE(blas.size() == eigen.size());
  double err = 0;
  for (size_t i = 0; i < blas.size(); ++i) err = std::max(err, std::abs(blas[i] - eigen[i]));
  CHECK(err < 1e-12);
}
