// The GPU test runner: skips (exit 77, which ctest reports as skipped) with a
// clear message when no CUDA device is visible, else runs every GPU case.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <nextquill/cuda/runtime.hpp>

int main(int argc, char** argv) {
  if (nq::cuda::device_count() == 0) {
    std::printf("SKIPPED: no CUDA device visible (nq::cuda::device_count() == 0); "
                "the GPU tests need an NVIDIA GPU and driver\n");
    return 77;
  }
  std::printf("GPU tests on %s\n", nq::cuda::device_name(0).c_str());
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
