// Logits processors and sampling against Hugging Face transformers, from the
// fixture tools/make_sampling_fixture.py writes
// (tests/fixtures/sampling/processors.safetensors), plus seeded
// reproducibility and the empirical distribution of sample().
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nextquill/core/generator.hpp>
#include <nextquill/generate/sampling.hpp>
#include <nextquill/io/safetensors.hpp>
#include <span>
#include <string>
#include <vector>

#include "test_util.hpp"

#ifndef NQ_TEST_DATA_DIR
#define NQ_TEST_DATA_DIR "tests/fixtures"
#endif

namespace {

namespace smp = nq::sampling;
using nqtest::contains;
using nqtest::error_of;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// -inf exactly where the reference has it; finite values within 1e-6 relative.
void check_row(const std::vector<float>& got, const float* want, const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      CHECK_MESSAGE(got[i] == want[i],
                    what << ": token " << i << " should be " << want[i] << ", got " << got[i]);
    } else {
      CHECK_MESSAGE(std::isfinite(got[i]),
                    what << ": token " << i << " is " << got[i] << ", want " << want[i]);
      CHECK_MESSAGE(std::abs(got[i] - want[i]) <= 1e-6 * std::abs(want[i]),
                    what << ": token " << i << " is " << got[i] << ", want " << want[i]);
    }
  }
}

}  // namespace

TEST_CASE("sampling: logits processors match Hugging Face (fixture)") {
  const auto f = nq::io::read_safetensors(std::string(NQ_TEST_DATA_DIR) + "/sampling/processors.safetensors");
  auto get = [&](const std::string& name) {
    auto it = f.tensors.find(name);
    REQUIRE_MESSAGE(it != f.tensors.end(), "fixture has no tensor '" << name << "'");
    return it->second;
  };
  const double penalty = std::stod(f.metadata.at("repetition_penalty"));
  const double temperature = std::stod(f.metadata.at("temperature"));
  const int64_t top_k = std::stoll(f.metadata.at("top_k"));
  const double top_p = std::stod(f.metadata.at("top_p"));
  CHECK(penalty == 1.3);
  CHECK(temperature == 0.7);
  CHECK(top_k == 5);
  CHECK(top_p == 0.8);
  const auto scores_raw = get("scores");
  REQUIRE(scores_raw.dtype == "F32");
  REQUIRE(scores_raw.shape.size() >= 2);
  const int64_t V = scores_raw.shape.back();
  const int64_t rows = nq::numel_of(scores_raw.shape) / V;
  const auto prev_raw = get("prev_ids");
  REQUIRE(prev_raw.dtype == "I64");
  const int64_t L = prev_raw.shape.back();
  REQUIRE(nq::numel_of(prev_raw.shape) / L == rows);
  const std::vector<float> scores = nq::io::as_f32(scores_raw);
  std::vector<int64_t> prev;
  for (double x : nq::io::as_f64(prev_raw)) prev.push_back(int64_t(x));
  std::map<std::string, std::vector<float>> want;
  for (const char* k : {"rep_penalty", "temperature", "top_k", "top_p", "chain"}) {
    const auto raw = get(k);
    REQUIRE(raw.shape == scores_raw.shape);
    want[k] = nq::io::as_f32(raw);
  }
  for (int64_t r = 0; r < rows; ++r) {
    CAPTURE(r);
    const std::vector<float> row(scores.begin() + r * V, scores.begin() + (r + 1) * V);
    const std::span<const int64_t> ids(prev.data() + r * L, size_t(L));
    auto w = [&](const char* k) { return want[k].data() + r * V; };
    std::vector<float> x = row;
    smp::apply_repetition_penalty(x.data(), V, ids, penalty);
    check_row(x, w("rep_penalty"), "rep_penalty");
    x = row;
    smp::apply_temperature(x.data(), V, temperature);
    check_row(x, w("temperature"), "temperature");
    x = row;
    smp::apply_top_k(x.data(), V, top_k);
    check_row(x, w("top_k"), "top_k");
    x = row;
    smp::apply_top_p(x.data(), V, top_p);
    check_row(x, w("top_p"), "top_p");
    x = row;
    smp::apply_repetition_penalty(x, ids, penalty);  // the span forms
    smp::apply_temperature(x, temperature);
    smp::apply_top_k(x, top_k);
    smp::apply_top_p(x, top_p);
    check_row(x, w("chain"), "chain");
    // next_token: greedy = argmax after the penalty; sampling draws from the chain's survivors.
    smp::SamplingOptions greedy;
    greedy.repetition_penalty = penalty;
    greedy.temperature = 123;  // ignored when greedy
    x = row;
    nq::Generator gen(static_cast<uint64_t>(r));
    const int64_t g = smp::next_token(x.data(), V, ids, greedy, gen);
    CHECK(g == int64_t(std::max_element(w("rep_penalty"), w("rep_penalty") + V) - w("rep_penalty")));
    smp::SamplingOptions so{true, temperature, top_k, top_p, penalty};
    for (int k = 0; k < 20; ++k) {
      x = row;
      const int64_t t = smp::next_token(x, ids, so, gen);
      REQUIRE(t >= 0);
      REQUIRE(t < V);
      CHECK_MESSAGE(std::isfinite(w("chain")[t]), "sampled token " << t << " was filtered out");
      check_row(x, w("chain"), "next_token's processed scores");
    }
  }
}

TEST_CASE("sampling: processor details (ties, clamping, distinct ids, edge values)") {
  // Repetition penalty: each distinct id once, by sign.
  std::vector<float> s = {2.0f, -2.0f, 1.0f, 0.0f};
  std::vector<int64_t> ids = {0, 1, 1, 1, 3, 0};
  smp::apply_repetition_penalty(s.data(), 4, ids, 2.0);
  CHECK(s == std::vector<float>{1.0f, -4.0f, 1.0f, 0.0f});
  // Top-k: ties with the k-th value are all kept; k beyond V keeps everything.
  s = {1, 2, 2, 2, 0};
  smp::apply_top_k(s.data(), 5, 2);
  CHECK(s == std::vector<float>{kNegInf, 2, 2, 2, kNegInf});
  s = {1, 3, 2};
  smp::apply_top_k(s.data(), 3, 10);
  CHECK(s == std::vector<float>{1, 3, 2});
  s = {1, 3, 2};
  smp::apply_top_k(s.data(), 3, 1);
  CHECK(s == std::vector<float>{kNegInf, 3, kNegInf});
  // Top-p: probabilities 0.5, 0.3, 0.15, 0.05.
  const std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  s = base;
  smp::apply_top_p(s.data(), 4, 0.7);  // cumulative from the bottom: .05 .20 .50 1 -> drop <= 0.3
  CHECK(s == std::vector<float>{base[0], base[1], kNegInf, kNegInf});
  s = base;
  smp::apply_top_p(s.data(), 4, 0.0);  // only the largest survives
  CHECK(s == std::vector<float>{base[0], kNegInf, kNegInf, kNegInf});
  s = base;
  smp::apply_top_p(s.data(), 4, 1.0);  // nothing removed
  CHECK(s == base);
  s = {kNegInf, 1.0f, kNegInf, 1.0f};
  smp::apply_top_p(s.data(), 4, 0.3);  // a tied pair: the first in sorted order has cum 0.5 <= 0.7 and goes
  CHECK(s == std::vector<float>{kNegInf, kNegInf, kNegInf, 1.0f});
  s = {kNegInf, kNegInf};
  smp::apply_top_p(s.data(), 2, 0.5);  // nothing to do
  CHECK(s == std::vector<float>{kNegInf, kNegInf});
  // argmax: the first maximum.
  s = {1, 5, 5, -1};
  CHECK(smp::argmax(s.data(), 4) == 1);
  CHECK(smp::argmax(std::span<const float>(s)) == 1);
}

TEST_CASE("sampling: argument and score errors name the function") {
  std::vector<float> s = {1, 2, 3};
  nq::Generator gen(1);
  CHECK(contains(error_of([&] { smp::apply_temperature(s.data(), 3, 0.0); }),
                 "nq::apply_temperature: temperature must be positive"));
  CHECK(
      contains(error_of([&] { smp::apply_top_k(s.data(), 3, 0); }), "nq::apply_top_k: k must be at least 1"));
  CHECK(contains(error_of([&] { smp::apply_top_p(s.data(), 3, 1.5); }),
                 "nq::apply_top_p: p must be in [0, 1]"));
  const std::vector<int64_t> bad = {0, 3};
  CHECK(contains(error_of([&] { smp::apply_repetition_penalty(s.data(), 3, bad, 1.2); }),
                 "token id 3 out of range [0, 3)"));
  CHECK(contains(error_of([&] { smp::apply_repetition_penalty(s.data(), 3, {}, 0.0); }),
                 "penalty must be positive"));
  CHECK(contains(error_of([&] { smp::sample(s.data(), 0, gen); }), "vocabulary size must be positive"));
  std::vector<float> nan = {1, std::nanf(""), 0};
  CHECK(contains(error_of([&] { smp::argmax(nan.data(), 3); }), "nq::argmax: score of token 1 is NaN"));
  CHECK(contains(error_of([&] { smp::sample(nan.data(), 3, gen); }), "score of token 1 is NaN"));
  std::vector<float> dead = {kNegInf, kNegInf};
  CHECK(contains(error_of([&] { smp::sample(dead.data(), 2, gen); }), "every score is -inf"));
  smp::SamplingOptions o;
  o.do_sample = true;
  o.temperature = -1;
  CHECK(contains(error_of([&] { smp::next_token(s.data(), 3, {}, o, gen); }), "nq::next_token: temperature"));
  o.temperature = 1;
  o.top_k = -2;
  CHECK(contains(error_of([&] { smp::next_token(s.data(), 3, {}, o, gen); }), "top_k must be >= 0"));
}

TEST_CASE("sampling: seeded draws are reproducible and follow the distribution") {
  const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05, 0.0};
  std::vector<float> logits;
  for (double p : probs) logits.push_back(p > 0 ? float(std::log(p)) : kNegInf);
  const int64_t V = int64_t(logits.size());
  // Same seed, same tokens; one uniform per draw.
  auto draw = [&](uint64_t seed, int n, smp::SamplingOptions o) {
    nq::Generator gen(seed);
    std::vector<int64_t> out;
    for (int i = 0; i < n; ++i) {
      std::vector<float> x = logits;
      out.push_back(smp::next_token(x.data(), V, {}, o, gen));
    }
    return out;
  };
  smp::SamplingOptions o;
  o.do_sample = true;
  CHECK(draw(42, 200, o) == draw(42, 200, o));
  CHECK(draw(42, 200, o) != draw(43, 200, o));
  {
    nq::Generator a(9), b(9);
    smp::sample(logits.data(), V, a);
    b.uniform();
    CHECK(a.state() == b.state());
  }
  // Empirical frequencies: 40000 draws, standard error <= 0.0025.
  const int n = 40000;
  auto freq = [&](const std::vector<int64_t>& toks) {
    std::vector<double> f(size_t(V), 0.0);
    for (int64_t t : toks) f[size_t(t)] += 1.0 / double(toks.size());
    return f;
  };
  std::vector<double> f = freq(draw(1234, n, o));
  for (int64_t i = 0; i < V; ++i) CHECK(std::abs(f[size_t(i)] - probs[size_t(i)]) < 0.015);
  CHECK(f[4] == 0.0);  // -inf is never drawn
  // Temperature 0.5 squares the probabilities (then renormalises).
  o.temperature = 0.5;
  f = freq(draw(99, n, o));
  double z = 0;
  for (double p : probs) z += p * p;
  for (int64_t i = 0; i < V; ++i)
    CHECK(std::abs(f[size_t(i)] - probs[size_t(i)] * probs[size_t(i)] / z) < 0.015);
  // Top-k 2: only the two best, renormalised 0.625 / 0.375.
  o.temperature = 1;
  o.top_k = 2;
  f = freq(draw(7, n, o));
  CHECK(std::abs(f[0] - 0.625) < 0.015);
  CHECK(std::abs(f[1] - 0.375) < 0.015);
  CHECK(f[2] + f[3] + f[4] == 0.0);
  // Top-p 0.6: 0.5 alone is not enough (cum from below .05 .2 .5 1 -> keep the two best).
  o.top_k = 0;
  o.top_p = 0.6;
  f = freq(draw(8, n, o));
  CHECK(std::abs(f[0] - 0.625) < 0.015);
  CHECK(f[2] + f[3] + f[4] == 0.0);
  // The repetition penalty lowers a repeated token's share.
  o.top_p = 1;
  o.repetition_penalty = 3.0;
  const std::vector<int64_t> prev = {0};
  nq::Generator gen(5);
  int zeros = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<float> x = logits;
    zeros += smp::next_token(x.data(), V, prev, o, gen) == 0;
  }
  // log 0.5 * 3: p0 = 0.125 / (0.125 + 0.5) of the original mass ratio.
  const double p0 = std::pow(0.5, 3) / (std::pow(0.5, 3) + 0.5);
  CHECK(std::abs(double(zeros) / n - p0) < 0.015);
}
