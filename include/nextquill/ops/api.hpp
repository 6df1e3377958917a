#pragma once
// Every op nextquill offers, declared in one place (a reader's index). Each is
// defined, forward and backward side by side, in the header named beside it.
#include <optional>
#include <vector>

#include "../core/generator.hpp"
#include "../core/tensor.hpp"

namespace nq {

// ---- factories (ops/factory.hpp) -------------------------------------------
inline Tensor empty(const Shape& shape, TensorOptions opts = {});
inline Tensor zeros(const Shape& shape, TensorOptions opts = {});
inline Tensor ones(const Shape& shape, TensorOptions opts = {});
inline Tensor full(const Shape& shape, double value, TensorOptions opts = {});
inline Tensor zeros_like(const Tensor& t);
inline Tensor ones_like(const Tensor& t);
inline Tensor empty_like(const Tensor& t);
inline Tensor scalar_tensor(double value, TensorOptions opts = {});
// [start, end) with `step`; dtype defaults to float32 (pass kInt64 for indices).
inline Tensor arange(double start, double end, double step = 1.0, TensorOptions opts = {});
inline Tensor arange(int64_t n, TensorOptions opts = {});
// N(0,1) and U[lo,hi) from `gen` (default generator when null).
inline Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
inline Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opts = {},
                      Generator* gen = nullptr);
inline Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
// Copies `data` (float, double or int64_t) into a new tensor of `shape`; the
// dtype follows T unless opts.dtype says otherwise (pass opts explicitly).
template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape);
template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape, TensorOptions opts);

// ---- element-wise (ops/elementwise.hpp); binary ops broadcast ---------------
inline Tensor add(const Tensor& a, const Tensor& b);
inline Tensor sub(const Tensor& a, const Tensor& b);
inline Tensor mul(const Tensor& a, const Tensor& b);
inline Tensor div(const Tensor& a, const Tensor& b);
inline Tensor pow(const Tensor& a, const Tensor& b);
inline Tensor maximum(const Tensor& a, const Tensor& b);
inline Tensor minimum(const Tensor& a, const Tensor& b);
inline Tensor add(const Tensor& a, double s);
inline Tensor mul(const Tensor& a, double s);
inline Tensor pow(const Tensor& a, double exponent);
inline Tensor rsub(double s, const Tensor& a);  // s - a
inline Tensor rdiv(double s, const Tensor& a);  // s / a
inline Tensor neg(const Tensor& x);
inline Tensor exp(const Tensor& x);
inline Tensor log(const Tensor& x);
inline Tensor sqrt(const Tensor& x);
inline Tensor rsqrt(const Tensor& x);
inline Tensor abs(const Tensor& x);
inline Tensor square(const Tensor& x);
inline Tensor tanh(const Tensor& x);
inline Tensor sigmoid(const Tensor& x);
inline Tensor relu(const Tensor& x);
enum class GeluApprox { None, Tanh };
inline Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::None);
inline Tensor silu(const Tensor& x);
// Broadcast-sums `x` down to `shape` (the backward of broadcasting).
inline Tensor sum_to(const Tensor& x, const Shape& shape);
// where(cond != 0, a, b); cond carries no gradient.
inline Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- reductions (ops/reduce.hpp) ---------------------------------------------
inline Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
inline Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Max over one dim; the gradient flows to the (first) arg-max.
inline Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
inline Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // int64, no grad
inline Tensor max(const Tensor& x);                                        // over all elements

// ---- linear algebra (ops/matmul.hpp) ---------------------------------------
// (..., M, K) @ (..., K, N) with broadcast batch dims; 1-d operands as numpy.
// Transposed views feed BLAS as transposes, without copies.
inline Tensor matmul(const Tensor& a, const Tensor& b);
// x @ w^T + b with w (out, in): the Linear layer's op.
inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// ---- joining and splitting (ops/join.hpp) ----------------------------------
inline Tensor concat(const std::vector<Tensor>& ts, int64_t dim);
inline Tensor stack(const std::vector<Tensor>& ts, int64_t dim);
inline std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
inline std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
inline std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);

// ---- neural-network ops ----------------------------------------------------
// ops/softmax.hpp: numerically stable (max-subtracted).
inline Tensor softmax(const Tensor& x, int64_t dim = -1);
inline Tensor log_softmax(const Tensor& x, int64_t dim = -1);
inline Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim = false);
// ops/norm.hpp: over the last dim; weight/bias may be undefined.
inline Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
inline Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);
// ops/embedding.hpp: weight (V, C), ids int64 (...) -> (..., C); scatter-add backward.
inline Tensor embedding(const Tensor& weight, const Tensor& ids);
// ops/dropout.hpp: inverted dropout; identity when !train or p == 0.
inline Tensor dropout(const Tensor& x, double p, bool train = true, Generator* gen = nullptr);

// ops/attention.hpp
struct AttentionOptions {
  bool causal = false;
  // (B, S) int64/float, nonzero = real key, 0 = padding (left or right).
  Tensor key_padding_mask;
  // Default 1/sqrt(D).
  std::optional<double> scale;
};
// q (B,H,T,D), k and v (B,H,S,D) -> (B,H,T,D). Causal aligns the last query
// with the last key (query i sees keys j <= i + S - T). One (T,S) score tile
// per (batch, head) at a time; backward recomputes it from the saved
// log-sum-exp. A query row with no visible key outputs 0.
inline Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const AttentionOptions& opts = {});

// ops/loss.hpp
enum class Reduction { None, Sum, Mean, WeightedMean };
struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  // Optional per-token weights, same shape as targets; no gradient flows to them.
  Tensor weights;
  // Mean: sum(w*ce) / #valid tokens. WeightedMean: sum(w*ce) / sum(w over valid).
  // Sum: sum(w*ce). None: per-token (0 at ignored positions). A batch with no
  // valid token gives 0, never NaN.
  Reduction reduction = Reduction::Mean;
};
// logits (..., V), targets int64 (...). Through logsumexp: no softmax copy.
inline Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                            const CrossEntropyOptions& opts = {});
// cross_entropy(z - z0, targets): NextQuill's logit-difference loss. On CUDA one
// fused pass over the vocabulary; no gradient to z0 when it needs none.
inline Tensor cross_entropy_diff(const Tensor& z, const Tensor& z0, const Tensor& targets,
                                 const CrossEntropyOptions& opts = {});

// ---- operators ---------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

}  // namespace nq
