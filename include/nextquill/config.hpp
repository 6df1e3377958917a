#pragma once
// Feature macros. Each mirrors a CMake option of the same name, which sets it
// on the `nextquill::nextquill` target (INTERFACE_COMPILE_DEFINITIONS). A
// consumer that does not use CMake can define them by hand; the defaults here
// are the plain header-only build.

// cuBLAS/CUDA kernels (library target nextquill::cuda).
#ifndef NEXTQUILL_WITH_CUDA
#define NEXTQUILL_WITH_CUDA 0
#endif

// Route fp32/fp64 GEMM through a CBLAS (OpenBLAS) instead of Eigen's kernel.
#ifndef NEXTQUILL_WITH_BLAS
#define NEXTQUILL_WITH_BLAS 0
#endif

// Parallel loops over (batch, head), rows, ... with OpenMP.
#ifndef NEXTQUILL_WITH_OPENMP
#if defined(_OPENMP)
#define NEXTQUILL_WITH_OPENMP 1
#else
#define NEXTQUILL_WITH_OPENMP 0
#endif
#endif

// nextquill parallelises its own loops (and splits GEMMs by rows); Eigen's
// internal OpenMP GEMM threading would nest inside them and make results
// depend on scheduling, so it is off unless the user says otherwise (define
// the macro before including Eigen, or build through CMake which sets it).
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
