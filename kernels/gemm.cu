// GEMM through cuBLAS / cuBLASLt (see include/nextquill/cuda/blas.hpp).
//
// Row-major -> column-major: a row-major (R,C) matrix with leading dimension
// ld is, read column-major, the (C,R) matrix X^T with the same ld. So the
// row-major product C = A @ B is computed by cuBLAS as C^T = B^T @ A^T with
// m = N, n = M, k = K, cuBLAS's "A" = our b and its "B" = our a, ldc = N.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nextquill/cuda/blas.hpp>
#include <string>

#include "common.cuh"

namespace nq::cuda {

namespace {

constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;
constexpr int kMaxDevices = 64;

struct Handles {
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
};

[[noreturn]] void throw_blas(cublasStatus_t s, const char* op, const std::string& where) {
  fail(op, "cuBLAS error ", cublasGetStatusName(s), ": ", cublasGetStatusString(s), " (", where, ")");
}
inline void check_blas(cublasStatus_t s, const char* op, const std::string& where) {
  if (s != CUBLAS_STATUS_SUCCESS) throw_blas(s, op, where);
}

// cuBLAS calls must be made with the handle's device current.
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int d) {
    int cur = 0;
    NQ_CUDA_CHECK(cudaGetDevice(&cur), "gemm");
    if (cur != d) {
      NQ_CUDA_CHECK(cudaSetDevice(d), "gemm");
      prev = cur;
    }
  }
  ~DeviceGuard() {
    if (prev >= 0) cudaSetDevice(prev);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
};

// Created once per device, never destroyed (tensors and other statics may
// still use them during exit). The caller holds a DeviceGuard for `device`.
Handles& handles(int device) {
  static std::mutex mu;
  static Handles* table[kMaxDevices] = {};
  NQ_CHECK(device >= 0 && device < kMaxDevices, "cublas", "device index ", device, " out of range");
  std::lock_guard<std::mutex> lock(mu);
  if (table[device]) return *table[device];
  auto* h = new Handles();
  cudaStream_t s = detail::stream_of(device);
  check_blas(cublasCreate(&h->blas), "cublas", "cublasCreate on cuda:" + std::to_string(device));
  check_blas(cublasSetStream(h->blas, s), "cublas", "cublasSetStream");
  // Tensor-op math is chosen per call through the compute type.
  check_blas(cublasSetMathMode(h->blas, CUBLAS_DEFAULT_MATH), "cublas", "cublasSetMathMode");
  check_blas(cublasLtCreate(&h->lt), "cublasLt", "cublasLtCreate on cuda:" + std::to_string(device));
  NQ_CUDA_CHECK(cudaMalloc(&h->workspace, kLtWorkspaceBytes), "cublasLt workspace (32 MiB)");
  // The cuBLAS handle (every GEMM but linear's forward) gets the same 32 MiB,
  // the size cuBLAS recommends for Hopper, instead of its default pool; both
  // handles run on one stream, so their kernels never use it at once. After
  // cublasSetStream, which would reset it.
  check_blas(cublasSetWorkspace(h->blas, h->workspace, kLtWorkspaceBytes), "cublas", "cublasSetWorkspace");
  table[device] = h;
  return *h;
}

std::string brief(const Tensor& t) {
  std::string s = t.brief();
  if (!t.is_contiguous()) s += " strides " + shape_str(t.strides());
  return s;
}

// How cuBLAS can read a row-major logical (r, c) matrix whose element (i, j)
// sits at i*sr + j*sc: row-major with leading dimension ld (trans = false:
// read column-major it is the (c, r) matrix, ld >= c), or a transposed view
// (trans = true: column-major (r, c), ld >= r). ok = false when neither.
struct Layout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 1;
};
Layout layout_of(int64_t r, int64_t c, int64_t sr, int64_t sc) {
  Layout l;
  if ((sc == 1 || c == 1) && (r == 1 || sr >= c)) {
    l.ok = true;
    l.ld = r == 1 ? c : sr;
  } else if ((sr == 1 || r == 1) && (c == 1 || sc >= r)) {
    l.ok = true;
    l.trans = true;
    l.ld = c == 1 ? r : sc;
  }
  if (l.ld < 1) l.ld = 1;
  return l;
}

cudaDataType_t cuda_type(DType d, const char* op) {
  switch (d) {
    case DType::Float32:
      return CUDA_R_32F;
    case DType::BFloat16:
      return CUDA_R_16BF;
    case DType::Float64:
      return CUDA_R_64F;
    default:
      break;
  }
  fail(op, "dtype ", dtype_name(d), " is not supported by cuBLAS here (float32, bfloat16, float64)");
}

cublasComputeType_t compute_type(DType in, MatmulPrecision prec) {
  if (in == DType::Float64) return CUBLAS_COMPUTE_64F;
  if (in == DType::Float32 && prec == MatmulPrecision::TF32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;  // fp32, and bf16 inputs with fp32 accumulation
}

void check_int(int64_t v, const char* op, const char* what, const std::string& shapes) {
  NQ_CHECK(v >= 0 && v <= INT_MAX, op, what, " = ", v, " exceeds cuBLAS's 32-bit limit (", shapes, ")");
}

// ---- small kernels: bias (+GELU) fallback, column sums ---------------------

__device__ __forceinline__ float gelu_tanh(float x) {
  const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
  const float k1 = 0.044715f;
  return 0.5f * x * (1.0f + tanhf(k0 * (x + k1 * x * x * x)));
}

// y (R,N) contiguous += bias (N) [then GELU], in place.
template <typename T, bool Gelu>
__global__ void bias_act_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t rows, int64_t n) {
  const int64_t total = rows * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    auto v = detail::load(y + i);
    if (bias) v += detail::load(bias + i % n);
    if constexpr (Gelu) v = gelu_tanh(static_cast<float>(v));
    detail::store(y + i, v);
  }
}

// Pass 1 of sum_rows: block (32, 8) covers 32 columns; block row `chunk` sums
// rows chunk*8+ty, stepping nchunks*8, then the 8 partials are added in a
// fixed order. partial: (nchunks, n) in the accumulation type.
template <typename T>
__global__ void col_partial_kernel(const T* __restrict__ g, detail::acc_t<T>* __restrict__ partial,
                                   int64_t rows, int64_t n) {
  using A = detail::acc_t<T>;
  __shared__ A tile[8][33];
  const int64_t col = blockIdx.x * int64_t(32) + threadIdx.x;
  const int64_t step = int64_t(gridDim.y) * 8;
  A acc = 0;
  if (col < n)
    for (int64_t r = blockIdx.y * int64_t(8) + threadIdx.y; r < rows; r += step)
      acc += detail::load(g + r * n + col);
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < n) {
    A s = 0;
    for (int k = 0; k < 8; ++k) s += tile[k][threadIdx.x];
    partial[blockIdx.y * n + col] = s;
  }
}

// Pass 2: out[col] = sum over chunks of partial[chunk][col].
template <typename T>
__global__ void col_final_kernel(const detail::acc_t<T>* __restrict__ partial, T* __restrict__ out,
                                 int64_t nchunks, int64_t n) {
  const int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (col >= n) return;
  detail::acc_t<T> s = 0;
  for (int64_t c = 0; c < nchunks; ++c) s += partial[c * n + col];
  detail::store(out + col, s);
}

void launch_bias_act(Tensor& y, const Tensor& bias, bool gelu, const char* op) {
  const int64_t n = y.size(-1), rows = y.numel() / (n > 0 ? n : 1);
  if (y.numel() == 0) return;
  detail::visit_float(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* yp = static_cast<T*>(y.raw_data_ptr());
    const T* bp = bias.defined() ? static_cast<const T*>(bias.raw_data_ptr()) : nullptr;
    if (gelu)
      bias_act_kernel<T, true>
          <<<detail::blocks_for(y.numel()), 256, 0, detail::stream_of(y)>>>(yp, bp, rows, n);
    else
      bias_act_kernel<T, false>
          <<<detail::blocks_for(y.numel()), 256, 0, detail::stream_of(y)>>>(yp, bp, rows, n);
    detail::check_launch(op);
  });
}

// NQ_CUBLASLT_DEBUG=1 prints why a linear left the cuBLASLt epilogue path.
bool lt_debug() {
  static const bool on = [] {
    const char* e = std::getenv("NQ_CUBLASLT_DEBUG");
    return e && *e && *e != '0';
  }();
  return on;
}
bool lt_fallback(const char* why, const std::string& shapes) {
  if (lt_debug()) std::fprintf(stderr, "nq::linear: cuBLASLt path not used (%s): %s\n", why, shapes.c_str());
  return false;
}

size_t ptr_alignment(const void* p) {
  auto v = reinterpret_cast<uintptr_t>(p);
  size_t a = 256;
  while (a > 1 && (v % a) != 0) a /= 2;
  return a;
}

// RAII for the cuBLASLt descriptors of one call.
struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// y = x @ w^T (+bias) [GELU] through cuBLASLt. Returns false (nothing
// launched) when cuBLASLt has no algorithm for this case; throws on errors.
bool lt_linear(const Tensor& x, const Layout& lx, const Tensor& w, const Layout& lwt, const Tensor& bias,
               bool gelu, Tensor& y, MatmulPrecision prec, const char* op, const std::string& shapes) {
  const int64_t R = x.size(0), K = x.size(1), N = w.size(0);
  const size_t es = element_size(x.dtype());
  // Conservative gate: plain float/bf16 (double has no Lt epilogue path we
  // need), 16-byte aligned pointers and leading dimensions, no degenerate dims.
  if (x.dtype() == DType::Float64) return lt_fallback("float64", shapes);
  if (R < 2 || N < 2 || K < 2) return lt_fallback("a dimension below 2", shapes);
  if (ptr_alignment(x.raw_data_ptr()) < 16 || ptr_alignment(w.raw_data_ptr()) < 16 ||
      ptr_alignment(y.raw_data_ptr()) < 16)
    return lt_fallback("pointer not 16-byte aligned", shapes);
  if (bias.defined() && ptr_alignment(bias.raw_data_ptr()) < 16)
    return lt_fallback("bias not 16-byte aligned", shapes);
  if ((lx.ld * es) % 16 != 0 || (lwt.ld * es) % 16 != 0 || (N * es) % 16 != 0)
    return lt_fallback("leading dimension not a multiple of 16 bytes", shapes);

  const int dev = x.device().index;
  Handles& h = handles(dev);
  const cudaDataType_t t = cuda_type(x.dtype(), op);
  LtDescs d;
  auto chk = [&](cublasStatus_t s, const char* where) {
    check_blas(s, op, std::string(where) + "; " + shapes);
  };
  chk(cublasLtMatmulDescCreate(&d.op, compute_type(x.dtype(), prec), CUDA_R_32F), "cublasLtMatmulDescCreate");
  // cuBLAS "A" = w^T as a row-major (K,N) logical matrix, "B" = x (R,K).
  cublasOperation_t opa = lwt.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opb = lx.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  chk(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)), "set TRANSA");
  chk(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)), "set TRANSB");
  cublasLtEpilogue_t epi = gelu ? (bias.defined() ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                                : (bias.defined() ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
  chk(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "set EPILOGUE");
  if (bias.defined()) {
    const void* bp = bias.raw_data_ptr();
    chk(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)),
        "set BIAS_POINTER");
    cudaDataType_t bt = t;
    chk(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)),
        "set BIAS_DATA_TYPE");
  }
  // Layouts describe the stored (column-major) matrices before the op:
  // op N: (rows of op result, k); op T: (k, rows of op result).
  chk(cublasLtMatrixLayoutCreate(&d.a, t, lwt.trans ? K : N, lwt.trans ? N : K, lwt.ld), "layout A");
  chk(cublasLtMatrixLayoutCreate(&d.b, t, lx.trans ? R : K, lx.trans ? K : R, lx.ld), "layout B");
  chk(cublasLtMatrixLayoutCreate(&d.c, t, N, R, N), "layout C");
  chk(cublasLtMatmulPreferenceCreate(&d.pref), "cublasLtMatmulPreferenceCreate");
  uint64_t ws = kLtWorkspaceBytes;
  chk(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
      "set MAX_WORKSPACE_BYTES");
  uint32_t al_a = static_cast<uint32_t>(ptr_alignment(w.raw_data_ptr()));
  uint32_t al_b = static_cast<uint32_t>(ptr_alignment(x.raw_data_ptr()));
  uint32_t al_c = static_cast<uint32_t>(ptr_alignment(y.raw_data_ptr()));
  chk(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                           sizeof(al_a)),
      "set MIN_ALIGNMENT_A");
  chk(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                           sizeof(al_b)),
      "set MIN_ALIGNMENT_B");
  chk(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                           sizeof(al_c)),
      "set MIN_ALIGNMENT_C");
  chk(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                           sizeof(al_c)),
      "set MIN_ALIGNMENT_D");
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(h.lt, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &res, &found);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) return lt_fallback("no cuBLASLt algorithm", shapes);
  chk(s, "cublasLtMatmulAlgoGetHeuristic");
  const float alpha = 1.0f, beta = 0.0f;
  s = cublasLtMatmul(h.lt, d.op, &alpha, w.raw_data_ptr(), d.a, x.raw_data_ptr(), d.b, &beta,
                     y.raw_data_ptr(), d.c, y.raw_data_ptr(), d.c, &res.algo, h.workspace, kLtWorkspaceBytes,
                     detail::stream_of(dev));
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) return lt_fallback("cublasLtMatmul: not supported", shapes);
  chk(s, "cublasLtMatmul");
  return true;
}

// Shared by linear and linear_gelu.
Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor& bias, bool gelu, MatmulPrecision prec,
                   const char* op) {
  const std::string shapes =
      "x " + brief(x) + ", w " + brief(w) + (bias.defined() ? ", bias " + brief(bias) : "");
  NQ_CHECK(x.device().is_cuda() && w.device() == x.device(), op,
           "operands must be on one CUDA device: ", shapes, " on ", x.device().str(), " and ",
           w.device().str());
  NQ_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), op, "expected x (R,K) and w (N,K), got ",
           shapes);
  NQ_CHECK(x.dtype() == w.dtype(), op, "dtype mismatch: ", shapes);
  if (bias.defined()) {
    detail::check_cuda_tensor(bias, op, "bias");
    NQ_CHECK(bias.device() == x.device() && bias.dtype() == x.dtype() && bias.dim() == 1 &&
                 bias.size(0) == w.size(0),
             op, "bias must be (N) with the operands' dtype and device: ", shapes);
  }
  const int64_t R = x.size(0), K = x.size(1), N = w.size(0);
  check_int(R, op, "rows", shapes);
  check_int(K, op, "K", shapes);
  check_int(N, op, "N", shapes);
  Layout lx = layout_of(R, K, x.stride(0), x.stride(1));
  Layout lwt = layout_of(K, N, w.stride(1), w.stride(0));  // w^T as a (K,N) matrix
  NQ_CHECK(lx.ok && lwt.ok, op,
           "operands must be row-major or transposed views (call .contiguous()): ", shapes);
  Tensor y = Tensor::empty({R, N}, x.options());
  DeviceGuard guard(x.device().index);
  if (R > 0 && N > 0 && K > 0 && lt_linear(x, lx, w, lwt, bias, gelu, y, prec, op, shapes)) return y;
  // Fallback: plain GEMM, then the epilogue as a kernel.
  Tensor wt = Tensor::make_view(w, {K, N}, {w.stride(1), w.stride(0)}, w.offset());
  y = gemm(x, wt, prec, x.dtype());
  if (bias.defined() || gelu) launch_bias_act(y, bias, gelu, op);
  return y;
}

}  // namespace

void* cublas_handle(int device) {
  DeviceGuard guard(device);
  return handles(device).blas;
}
void* cublaslt_handle(int device) {
  DeviceGuard guard(device);
  return handles(device).lt;
}

Tensor gemm(const Tensor& a, const Tensor& b, MatmulPrecision prec, DType out_dtype) {
  const char* op = "matmul";
  const std::string shapes = brief(a) + " @ " + brief(b);
  NQ_CHECK(a.device().is_cuda() && b.device() == a.device(), op,
           "operands must be on one CUDA device: ", shapes, " on ", a.device().str(), " and ",
           b.device().str());
  NQ_CHECK((a.dim() == 2 || a.dim() == 3) && b.dim() == a.dim(), op,
           "cuda::gemm takes two 2-d or two 3-d operands, got ", shapes);
  NQ_CHECK(a.dtype() == b.dtype(), op, "dtype mismatch: ", shapes);
  NQ_CHECK(out_dtype == a.dtype() || (a.dtype() == DType::BFloat16 && out_dtype == DType::Float32), op,
           "output dtype ", dtype_name(out_dtype), " is not supported for ", dtype_name(a.dtype()),
           " operands");
  const bool batched = a.dim() == 3;
  const int64_t B = batched ? a.size(0) : 1;
  NQ_CHECK(!batched || b.size(0) == B, op, "batch sizes differ: ", shapes);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  NQ_CHECK(b.size(-2) == K, op, "inner dimensions differ: ", shapes);
  check_int(M, op, "M", shapes);
  check_int(N, op, "N", shapes);
  check_int(K, op, "K", shapes);
  check_int(B, op, "batch", shapes);
  const cudaDataType_t t_in = cuda_type(a.dtype(), op), t_out = cuda_type(out_dtype, op);

  Shape os = batched ? Shape{B, M, N} : Shape{M, N};
  Tensor out = Tensor::empty(os, a.options().with_dtype(out_dtype));
  if (out.numel() == 0) return out;
  const int dev = a.device().index;
  cudaStream_t stream = detail::stream_of(dev);
  if (K == 0) {  // empty sum: zeros (all-zero bits are 0 in every float type)
    NQ_CUDA_CHECK(cudaMemsetAsync(out.raw_data_ptr(), 0, out.numel() * element_size(out_dtype), stream), op);
    return out;
  }
  Layout la = layout_of(M, K, a.stride(-2), a.stride(-1));
  Layout lb = layout_of(K, N, b.stride(-2), b.stride(-1));
  NQ_CHECK(la.ok && lb.ok, op,
           "operands must be row-major or transposed views (call .contiguous()): ", shapes);
  check_int(la.ld, op, "lda", shapes);
  check_int(lb.ld, op, "ldb", shapes);
  const long long sa = batched && B > 1 ? a.stride(0) : 0, sb = batched && B > 1 ? b.stride(0) : 0;

  DeviceGuard guard(dev);
  cublasHandle_t h = handles(dev).blas;
  // C^T (N,M) = op(b) (N,K) @ op(a) (K,M).
  const cublasOperation_t opa = lb.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = la.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasComputeType_t ct = compute_type(a.dtype(), prec);
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const double alpha_d = 1.0, beta_d = 0.0;
  const void* alpha = ct == CUBLAS_COMPUTE_64F ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = ct == CUBLAS_COMPUTE_64F ? static_cast<const void*>(&beta_d) : &beta_f;
  cublasStatus_t s;
  if (B == 1)
    s = cublasGemmEx(h, opa, opb, int(N), int(M), int(K), alpha, b.raw_data_ptr(), t_in, int(lb.ld),
                     a.raw_data_ptr(), t_in, int(la.ld), beta, out.raw_data_ptr(), t_out, int(N), ct,
                     CUBLAS_GEMM_DEFAULT);
  else
    s = cublasGemmStridedBatchedEx(h, opa, opb, int(N), int(M), int(K), alpha, b.raw_data_ptr(), t_in,
                                   int(lb.ld), sb, a.raw_data_ptr(), t_in, int(la.ld), sa, beta,
                                   out.raw_data_ptr(), t_out, int(N), static_cast<long long>(M) * N, int(B),
                                   ct, CUBLAS_GEMM_DEFAULT);
  check_blas(s, op, (B == 1 ? "cublasGemmEx " : "cublasGemmStridedBatchedEx ") + shapes);
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, MatmulPrecision prec) {
  return linear_impl(x, w, bias, false, prec, "linear");
}

Tensor linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, MatmulPrecision prec) {
  NQ_CHECK(bias.defined(), "linear_gelu", "bias is required");
  return linear_impl(x, w, bias, true, prec, "linear_gelu");
}

Tensor sum_rows(const Tensor& g, DType out_dtype) {
  const char* op = "linear (bias gradient)";
  detail::check_cuda_tensor(g, op, "gradient");
  NQ_CHECK(g.dim() == 2, op, "expected a (R,N) gradient, got ", g.brief());
  NQ_CHECK(out_dtype == g.dtype() || (g.dtype() == DType::BFloat16 && out_dtype == DType::Float32), op,
           "output dtype ", dtype_name(out_dtype), " for a ", dtype_name(g.dtype()), " gradient");
  const int64_t R = g.size(0), N = g.size(1);
  Tensor out = Tensor::empty({N}, g.options().with_dtype(out_dtype));
  if (N == 0) return out;
  cudaStream_t stream = detail::stream_of(g);
  if (R == 0) {
    NQ_CUDA_CHECK(cudaMemsetAsync(out.raw_data_ptr(), 0, N * element_size(out_dtype), stream), op);
    return out;
  }
  const int64_t col_blocks = (N + 31) / 32;
  NQ_CHECK(col_blocks <= INT_MAX, op, "too many columns: ", g.brief());
  int64_t nchunks = (R + 63) / 64;  // ~64 rows per chunk
  if (nchunks > 1024) nchunks = 1024;
  detail::visit_float(g.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = detail::acc_t<T>;
    const DType adt = std::is_same_v<A, double> ? DType::Float64 : DType::Float32;
    Tensor partial = Tensor::empty({nchunks, N}, g.options().with_dtype(adt));
    A* pp = static_cast<A*>(partial.raw_data_ptr());
    dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(nchunks));
    col_partial_kernel<T>
        <<<grid, dim3(32, 8), 0, stream>>>(static_cast<const T*>(g.raw_data_ptr()), pp, R, N);
    detail::check_launch(op);
    const unsigned fb = static_cast<unsigned>((N + 255) / 256);
    if (out_dtype == g.dtype()) {
      col_final_kernel<T><<<fb, 256, 0, stream>>>(pp, static_cast<T*>(out.raw_data_ptr()), nchunks, N);
    } else {  // bf16 gradient, fp32 sums
      col_final_kernel<float><<<fb, 256, 0, stream>>>(reinterpret_cast<const float*>(pp),
                                                      static_cast<float*>(out.raw_data_ptr()), nchunks, N);
    }
    detail::check_launch(op);
  });
  return out;
}

}  // namespace nq::cuda
