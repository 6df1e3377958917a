#pragma once
// Next-token selection for text generation: the Hugging Face logits
// processors (transformers' RepetitionPenaltyLogitsProcessor,
// TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper with
// min_tokens_to_keep = 1 and filter value -inf) on one row of V float scores,
// then sampling or argmax. Everything works in place on the row.
//
//   apply_repetition_penalty  each distinct id in prev_ids: s < 0 ? s * penalty : s / penalty
//   apply_temperature         s / t
//   apply_top_k               s < (k-th largest score) -> -inf; ties with the
//                             k-th value are kept, so more than k may remain
//   apply_top_p               sort ascending, softmax, cumulative sum; tokens
//                             whose cumulative probability is <= 1 - p -> -inf;
//                             the largest score is always kept
//   sample                    softmax over the scores (-inf = probability 0),
//                             inverse CDF at one gen.uniform() draw
//   argmax                    the first index of the largest score
//   next_token                greedy: penalty -> argmax; sampling: penalty ->
//                             temperature -> top-k -> top-p -> sample, each
//                             step only when it is not the identity, as in
//                             transformers' generate()
//
// Scores are float32 and the per-element arithmetic of the penalty and the
// temperature is done in float32 like PyTorch's; the top-p softmax and cumsum
// and the sampling softmax are done in double. A NaN score is an error for
// top-k, top-p, sample and argmax (it has no place in an ordering), as is a
// +inf score for sample.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../core/generator.hpp"

namespace nq::sampling {

struct SamplingOptions {
  bool do_sample = false;         // false: greedy (argmax)
  double temperature = 1;         // > 0; used only when sampling
  int64_t top_k = 0;              // 0: off; used only when sampling
  double top_p = 1;               // in [0, 1]; 1: off; used only when sampling
  double repetition_penalty = 1;  // > 0; 1: off; applies to greedy too
};

namespace detail {

inline void check_row(const float* scores, int64_t V, const char* op) {
  NQ_CHECK(scores != nullptr, op, "null scores");
  NQ_CHECK(V > 0, op, "vocabulary size must be positive, got ", V);
}

inline void check_no_nan(const float* scores, int64_t V, const char* op) {
  for (int64_t i = 0; i < V; ++i)
    if (std::isnan(scores[i])) fail(op, "score of token ", i, " is NaN");
}

}  // namespace detail

// Penalises every distinct id in prev_ids once: s < 0 ? s * penalty : s / penalty.
inline void apply_repetition_penalty(float* scores, int64_t V, std::span<const int64_t> prev_ids,
                                     double penalty) {
  const char* op = "apply_repetition_penalty";
  detail::check_row(scores, V, op);
  NQ_CHECK(penalty > 0 && std::isfinite(penalty), op, "penalty must be positive and finite, got ", penalty);
  std::vector<int64_t> ids(prev_ids.begin(), prev_ids.end());
  for (int64_t id : ids) NQ_CHECK(id >= 0 && id < V, op, "token id ", id, " out of range [0, ", V, ")");
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const float p = static_cast<float>(penalty);
  for (int64_t id : ids) {
    float& s = scores[id];
    s = s < 0 ? s * p : s / p;
  }
}

// Divides every score by t (> 0).
inline void apply_temperature(float* scores, int64_t V, double t) {
  const char* op = "apply_temperature";
  detail::check_row(scores, V, op);
  NQ_CHECK(t > 0 && std::isfinite(t), op, "temperature must be positive and finite, got ", t);
  const float ft = static_cast<float>(t);
  for (int64_t i = 0; i < V; ++i) scores[i] = scores[i] / ft;
}

// Keeps the scores >= the k-th largest (k >= 1, clamped to V); the rest -> -inf.
inline void apply_top_k(float* scores, int64_t V, int64_t k) {
  const char* op = "apply_top_k";
  detail::check_row(scores, V, op);
  NQ_CHECK(k >= 1, op, "k must be at least 1, got ", k);
  detail::check_no_nan(scores, V, op);
  k = std::min(k, V);
  if (k == V) return;
  std::vector<float> tmp(scores, scores + V);
  std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<float>());
  const float kth = tmp[size_t(k - 1)];
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < V; ++i)
    if (scores[i] < kth) scores[i] = kNegInf;
}

// Nucleus filtering with p in [0, 1] (see the top of the file). Leaves a row
// whose scores are all -inf unchanged.
inline void apply_top_p(float* scores, int64_t V, double p) {
  const char* op = "apply_top_p";
  detail::check_row(scores, V, op);
  NQ_CHECK(p >= 0 && p <= 1, op, "p must be in [0, 1], got ", p);
  detail::check_no_nan(scores, V, op);
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  const double mx = scores[order.back()];
  if (std::isinf(mx)) return;  // all -inf (nothing to filter), or +inf (no distribution)
  std::vector<double> w(static_cast<size_t>(V));
  double total = 0;
  for (int64_t j = 0; j < V; ++j) total += w[size_t(j)] = std::exp(double(scores[order[size_t(j)]]) - mx);
  const double cut = 1.0 - p;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  double cum = 0;
  for (int64_t j = 0; j + 1 < V; ++j) {  // the last (largest) is always kept
    cum += w[size_t(j)];
    if (cum / total > cut) break;  // cumulative probabilities only grow
    scores[order[size_t(j)]] = kNegInf;
  }
}

// Index of the first largest score.
inline int64_t argmax(const float* scores, int64_t V) {
  const char* op = "argmax";
  detail::check_row(scores, V, op);
  detail::check_no_nan(scores, V, op);
  return int64_t(std::max_element(scores, scores + V) - scores);
}

// Draws a token from softmax(scores) with one gen.uniform() draw (inverse
// CDF), so a seeded generator gives the same token sequence everywhere.
inline int64_t sample(const float* scores, int64_t V, Generator& gen) {
  const char* op = "sample";
  detail::check_row(scores, V, op);
  detail::check_no_nan(scores, V, op);
  const float mx = *std::max_element(scores, scores + V);
  NQ_CHECK(!(mx == std::numeric_limits<float>::infinity()), op, "a score is +inf");
  NQ_CHECK(std::isfinite(mx), op, "every score is -inf: nothing to sample");
  std::vector<double> w(static_cast<size_t>(V));
  double total = 0;
  for (int64_t i = 0; i < V; ++i) total += w[size_t(i)] = std::exp(double(scores[i]) - double(mx));
  const double u = gen.uniform() * total;
  double cum = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (w[size_t(i)] == 0) continue;
    cum += w[size_t(i)];
    last = i;
    if (u < cum) return i;
  }
  return last;  // u landed on the rounding error at the top end
}

// Span forms of the above.
inline void apply_repetition_penalty(std::span<float> scores, std::span<const int64_t> prev_ids,
                                     double penalty) {
  apply_repetition_penalty(scores.data(), int64_t(scores.size()), prev_ids, penalty);
}
inline void apply_temperature(std::span<float> scores, double t) {
  apply_temperature(scores.data(), int64_t(scores.size()), t);
}
inline void apply_top_k(std::span<float> scores, int64_t k) {
  apply_top_k(scores.data(), int64_t(scores.size()), k);
}
inline void apply_top_p(std::span<float> scores, double p) {
  apply_top_p(scores.data(), int64_t(scores.size()), p);
}
inline int64_t argmax(std::span<const float> scores) { return argmax(scores.data(), int64_t(scores.size())); }
inline int64_t sample(std::span<const float> scores, Generator& gen) {
  return sample(scores.data(), int64_t(scores.size()), gen);
}

// The next token for one row of scores (modified in place): see the top of
// the file. prev_ids are the ids so far (prompt and generated), for the
// repetition penalty. The generator is used only when sampling.
inline int64_t next_token(float* scores, int64_t V, std::span<const int64_t> prev_ids,
                          const SamplingOptions& o, Generator& gen) {
  const char* op = "next_token";
  detail::check_row(scores, V, op);
  NQ_CHECK(o.repetition_penalty > 0 && std::isfinite(o.repetition_penalty), op,
           "repetition_penalty must be positive and finite, got ", o.repetition_penalty);
  if (o.do_sample) {
    NQ_CHECK(o.temperature > 0 && std::isfinite(o.temperature), op,
             "temperature must be positive and finite, got ", o.temperature);
    NQ_CHECK(o.top_k >= 0, op, "top_k must be >= 0 (0 = off), got ", o.top_k);
    NQ_CHECK(o.top_p >= 0 && o.top_p <= 1, op, "top_p must be in [0, 1] (1 = off), got ", o.top_p);
  }
  if (o.repetition_penalty != 1) apply_repetition_penalty(scores, V, prev_ids, o.repetition_penalty);
  if (!o.do_sample) return argmax(scores, V);
  if (o.temperature != 1) apply_temperature(scores, V, o.temperature);
  if (o.top_k > 0) apply_top_k(scores, V, o.top_k);
  if (o.top_p < 1) apply_top_p(scores, V, o.top_p);
  return sample(scores, V, gen);
}
inline int64_t next_token(std::span<float> scores, std::span<const int64_t> prev_ids,
                          const SamplingOptions& o, Generator& gen) {
  return next_token(scores.data(), int64_t(scores.size()), prev_ids, o, gen);
}

}  // namespace nq::sampling
