// The NextQuill objective against the reference formulas in PyTorch
// (tools/make_nextquill_fixtures.py): DCE, weights, L_n, L_p, total loss and
// the gradients with respect to both logit sets, for every preset and switch,
// in float64 (<= 1e-6) and float32 (<= 1e-5), plus the edge cases.
#include <doctest/doctest.h>

#include <cmath>
#include <nextquill/causal/causal.hpp>
#include <nextquill/nextquill.hpp>
#include <string>

#include "test_util.hpp"

namespace {

const std::string kDir = std::string(NQ_TEST_DATA_DIR) + "/nextquill/";

nq::causal::NextQuillOptions options_from(const std::map<std::string, std::string>& m) {
  using namespace nq::causal;
  NextQuillOptions o = NextQuillOptions::preset(m.at("preset"));
  o.alpha = std::stod(m.at("alpha"));
  o.delta = std::stod(m.at("delta"));
  o.lambda = std::stod(m.at("lambda"));
  o.epsilon = std::stod(m.at("epsilon"));
  const std::string rule = m.at("rule"), norm = m.at("norm");
  o.rule = rule == "threshold" ? WeightRule::Threshold : rule == "js" ? WeightRule::JS : WeightRule::Uniform;
  o.norm = norm == "weighted_mean" ? Normalization::WeightedMean
           : norm == "per_example" ? Normalization::PerExample
                                   : Normalization::TokenMean;
  o.weighted_ln = m.at("weighted_ln") == "1";
  o.weighted_lp = m.at("weighted_lp") == "1";
  o.stop_grad_z0 = m.at("stop_grad_z0") == "1";
  o.estimator = m.at("estimator") == "fixed" ? EstimatorKind::Fixed : EstimatorKind::Dynamic;
  return o;
}

// max |a - b| relative to max(|b|, 1) (the fixture values are O(1)).
double err(const nq::Tensor& a, const nq::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  double e = 0, s = 1;
  for (size_t i = 0; i < av.size(); ++i) {
    REQUIRE(std::isfinite(av[i]));
    e = std::max(e, std::abs(av[i] - bv[i]));
    s = std::max(s, std::abs(bv[i]));
  }
  return e / s;
}

void run_case(const std::string& name, nq::DType dt, double tol) {
  CAPTURE(name);
  CAPTURE(nq::dtype_name(dt));
  auto f = nq::io::load_tensors(kDir + name + ".safetensors", nq::kFloat64);
  auto& t = f.tensors;
  const auto opt = options_from(f.metadata);
  nq::Tensor z_h = t.at("z_h").to(dt).detach().requires_grad_(),
             z_0 = t.at("z_0").to(dt).detach().requires_grad_();
  const nq::Tensor y = t.at("y");
  const int64_t B = static_cast<int64_t>(t.at("B").item());
  nq::causal::EstimatorOutput est;
  const bool fixed = t.count("ze_h") > 0;
  if (fixed) est = nq::causal::estimate(t.at("ze_h").to(dt), t.at("ze_0").to(dt), y, opt.rule);
  auto parts = nq::causal::nextquill_loss(z_h, z_0, y, B, opt, fixed ? &est : nullptr);
  CHECK(err(parts.dce, t.at("dce")) <= tol);
  CHECK(err(parts.weights, t.at("w")) <= tol);
  CHECK(err(parts.l_n, t.at("l_n")) <= tol);
  CHECK(err(parts.l_p, t.at("l_p")) <= tol);
  CHECK(err(parts.total, t.at("loss")) <= tol);
  if (t.count("code_loss")) CHECK(err(parts.total, t.at("code_loss")) <= tol);
  parts.total.backward();
  auto grad = [&](const nq::Tensor& z) { return z.grad().defined() ? z.grad() : nq::zeros(z.shape(), dt); };
  CHECK(err(grad(z_h), t.at("grad_z_h")) <= tol);
  CHECK(err(grad(z_0), t.at("grad_z_0")) <= tol);
}

const char* kCases[] = {"sft",
                        "context_sft",
                        "mce_only",
                        "dce_only",
                        "mce_dce",
                        "nextquill",
                        "nextquill_code",
                        "nextquill_stopgrad",
                        "nextquill_per_example",
                        "nextquill_token_mean",
                        "nextquill_fixed",
                        "nextquill_js",
                        "nextquill_lambda_eps",
                        "nextquill_alpha1",
                        "dce_only_delta0",
                        "all_masked",
                        "delta_hit",
                        "single_token",
                        "empty_history"};

}  // namespace

TEST_CASE("NextQuill loss: every preset, switch and edge case matches the PyTorch reference") {
  for (const char* c : kCases) {
    run_case(c, nq::kFloat64, 1e-6);
    run_case(c, nq::kFloat32, 1e-5);
  }
}

TEST_CASE("NextQuill loss: all targets masked gives a finite zero loss and zero gradients") {
  auto f = nq::io::load_tensors(kDir + "all_masked.safetensors", nq::kFloat64);
  nq::Tensor z_h = f.tensors.at("z_h").detach().requires_grad_(),
             z_0 = f.tensors.at("z_0").detach().requires_grad_();
  for (const auto& name : nq::causal::NextQuillOptions::preset_names()) {
    CAPTURE(name);
    auto p = nq::causal::nextquill_loss(z_h, z_0, f.tensors.at("y"), 3,
                                        nq::causal::NextQuillOptions::preset(name));
    CHECK(p.total.item() == 0.0);
    CHECK(p.n_valid == 0);
  }
}

TEST_CASE("NextQuill options: presets and errors") {
  using nq::causal::NextQuillOptions;
  CHECK(NextQuillOptions::preset_names().size() == 7);
  CHECK(nqtest::contains(nqtest::error_of([] { NextQuillOptions::preset("nextqill"); }),
                         "unknown method 'nextqill' (one of: sft, context-sft"));
  auto o = NextQuillOptions::preset("context-sft");
  CHECK_FALSE(o.needs_counterfactual());
  o = NextQuillOptions::preset("nextquill");
  CHECK(o.needs_counterfactual());
  o.alpha = -1;
  CHECK(nqtest::contains(nqtest::error_of([&] { o.validate(); }), "alpha must be >= 0"));
}
