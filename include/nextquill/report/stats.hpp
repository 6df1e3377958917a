#pragma once
// Summary statistics for study reports: mean, sample standard deviation and a
// paired bootstrap test of "system A scores higher than system B" on the same
// examples. Deterministic from a seed (own PRNG, not <random>'s
// implementation-defined distributions), so reports are reproducible.
//
//   auto r = nq::report::paired_bootstrap(rouge_nextquill, rouge_sft);
//   // r.diff = mean(a) - mean(b); r.p_value small => A is better; [r.ci_low, r.ci_high]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nextquill/core/error.hpp"

namespace nq::report {

// Arithmetic mean. Empty input is an error: a mean of nothing has no value to
// report and 0 or NaN would silently enter a table.
inline double mean(const std::vector<double>& v) {
  NQ_CHECK(!v.empty(), "report::mean", "empty input");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

// Sample standard deviation (divides by n - 1); 0 for fewer than 2 values,
// since one seed has no spread to report.
inline double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

namespace detail {

// xoshiro256** (Blackman & Vigna) seeded through splitmix64: small, fast, and
// the same sequence on every platform.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (auto& s : s_) s = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform integer in [0, n), n > 0, without modulo bias (rejects the top
  // partial block of 2^64).
  uint64_t below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t r = next();
      if (r >= threshold) return r % n;
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

// q-quantile of sorted values, linear interpolation between order statistics
// at position q * (n - 1) (numpy's default "linear" method).
inline double quantile_sorted(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= sorted.size()) return sorted.back();
  const double f = pos - static_cast<double>(i);
  return sorted[i] + f * (sorted[i + 1] - sorted[i]);
}

}  // namespace detail

struct BootstrapResult {
  double diff = 0;                 // mean(a) - mean(b) on the original examples
  double p_value = 1;              // one-sided, for "a is better than b" (see paired_bootstrap)
  double ci_low = 0, ci_high = 0;  // 95% percentile interval of the resampled differences
  int64_t n = 0, iterations = 0;   // examples, bootstrap resamples
};

// Paired bootstrap over examples. a[i] and b[i] are the scores of systems A
// and B on example i (higher is better). Each of `iterations` resamples draws
// n example indices uniformly with replacement and computes
// d* = mean over the drawn indices of (a[i] - b[i]). Then
//   p_value = (1 + #{resamples with d* <= 0}) / (1 + iterations),
// the one-sided p for "A is better than B" (the +1 keeps it a valid p-value,
// never 0), and [ci_low, ci_high] = the 2.5th and 97.5th percentiles of d*
// (linear interpolation between order statistics).
inline BootstrapResult paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b,
                                        int64_t iterations = 10000, uint64_t seed = 1) {
  NQ_CHECK(a.size() == b.size(), "report::paired_bootstrap", "a has ", a.size(), " scores but b has ",
           b.size(), "; both systems must be scored on the same examples");
  NQ_CHECK(!a.empty(), "report::paired_bootstrap", "no examples");
  NQ_CHECK(iterations >= 1, "report::paired_bootstrap", "iterations must be >= 1, got ", iterations);
  const size_t n = a.size();
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) {
    // A NaN score would make every resample containing it NaN and the count silently wrong.
    NQ_CHECK(std::isfinite(a[i]) && std::isfinite(b[i]), "report::paired_bootstrap",
             "non-finite score at example ", i, " (a=", a[i], ", b=", b[i], ")");
    d[i] = a[i] - b[i];
  }

  BootstrapResult r;
  r.diff = mean(a) - mean(b);
  r.n = static_cast<int64_t>(n);
  r.iterations = iterations;

  detail::Xoshiro256 rng(seed);
  std::vector<double> boot(static_cast<size_t>(iterations));
  int64_t not_better = 0;
  for (auto& m : boot) {
    double s = 0;
    for (size_t k = 0; k < n; ++k) s += d[rng.below(n)];
    m = s / static_cast<double>(n);
    not_better += m <= 0;
  }
  r.p_value = static_cast<double>(1 + not_better) / static_cast<double>(1 + iterations);
  std::sort(boot.begin(), boot.end());
  r.ci_low = detail::quantile_sorted(boot, 0.025);
  r.ci_high = detail::quantile_sorted(boot, 0.975);
  return r;
}

}  // namespace nq::report
