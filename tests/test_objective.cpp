// NextQuillObjective on a real CausalLM: the paired forward gathers exactly
// the target rows, its loss equals nextquill_loss on full-sequence logits,
// its gradient (through both passes) matches finite differences in float64,
// context-sft equals the classic masked LM loss, the fixed estimator caches
// per example, and the inspector reports consistent per-token values.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nextquill/causal/causal.hpp>
#include <nextquill/nextquill.hpp>

#include "test_util.hpp"

namespace {

using nq::causal::NextQuillOptions;

std::vector<nq::data::EncodedExample> examples() {
  // Prompts of different lengths; the history prompt is longer than the no-history one.
  std::vector<nq::data::EncodedExample> ex(3);
  ex[0].prompt_h = {3, 5, 7, 9, 11, 2}, ex[0].prompt_0 = {3, 2}, ex[0].target = {4, 6, 1};
  ex[1].prompt_h = {8, 8, 2}, ex[1].prompt_0 = {8, 2}, ex[1].target = {10, 1};
  ex[2].prompt_h = {12, 13, 14, 15, 16, 17, 2}, ex[2].prompt_0 = {17, 2}, ex[2].target = {5, 5, 5, 1};
  return ex;
}

// Full-sequence logits gathered at the batch's rows: the reference for target_logits.
nq::Tensor gathered(const nq::CausalLM& m, const nq::Tensor& ids, const nq::Tensor& mask,
                    const nq::Tensor& rows) {
  nq::ForwardOptions fo;
  fo.attention_mask = mask;
  nq::Tensor logits = m.forward(ids, fo);  // (B,L,V)
  const int64_t V = logits.size(2);
  auto r = rows.to_vector<int64_t>();
  nq::Tensor flat = logits.reshape({-1, V});
  std::vector<nq::Tensor> out;
  for (int64_t k : r) out.push_back(flat.select(0, k));
  return nq::stack(out, 0);
}

double maxdiff(const nq::Tensor& a, const nq::Tensor& b) {
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  double e = 0;
  for (size_t i = 0; i < av.size(); ++i) e = std::max(e, std::abs(av[i] - bv[i]));
  return e;
}

}  // namespace

TEST_CASE("NextQuillObjective: paired target rows, loss and gradient through both passes") {
  for (auto side : {nq::data::PadSide::Right, nq::data::PadSide::Left}) {
    CAPTURE(static_cast<int>(side));
    auto cfg = nq::CausalLMConfig::llama(20, 16, 8, 1, 2, 1);
    nq::CausalLM m(cfg, 3, nq::kFloat64);
    auto b = nq::data::collate_pairs(examples(), 0, side);
    // Rows line up: the token after each row is the target, in both passes.
    auto th = b.ids_h.to_vector<int64_t>(), t0 = b.ids_0.to_vector<int64_t>();
    auto rh = b.rows_h.to_vector<int64_t>(), r0 = b.rows_0.to_vector<int64_t>();
    auto tg = b.targets.to_vector<int64_t>();
    CHECK(tg.size() == 9);

    auto opts = NextQuillOptions::preset("nextquill");
    opts.delta = 0.0;  // the random model's DCE straddles 0: both weights occur
    nq::causal::NextQuillObjective obj(m, opts);
    auto parts = obj.forward(b);
    // Same as gathering full-sequence logits.
    nq::Tensor zh = gathered(m, b.ids_h, b.mask_h, b.rows_h), z0 = gathered(m, b.ids_0, b.mask_0, b.rows_0);
    auto ref = nq::causal::nextquill_loss(zh, z0, b.targets, b.batch_size, opts);
    CHECK(parts.total.item() == doctest::Approx(ref.total.item()).epsilon(1e-12));
    CHECK(parts.n_valid == 9);

    // d loss / d (one weight matrix) vs central differences, weights held fixed
    // (they are constants for autograd: the same rows stay on each side of delta).
    m.zero_grad();
    parts.total.backward();
    nq::Tensor w = m.layers[0]->attn->q_proj->weight;
    auto g = w.grad().to_vector<double>();
    double* wp = w.data_ptr<double>();
    const double h = 1e-6;
    nq::NoGradGuard ng;
    for (int i = 0; i < w.numel(); i += 7) {
      const double keep = wp[i];
      wp[i] = keep + h;
      const double up = obj.forward(b).total.item();
      wp[i] = keep - h;
      const double dn = obj.forward(b).total.item();
      wp[i] = keep;
      CAPTURE(i);
      CHECK(g[i] == doctest::Approx((up - dn) / (2 * h)).epsilon(1e-4).scale(1e-4));
    }
  }
}

TEST_CASE("NextQuillObjective: context-sft is the classic masked LM loss; sft uses the no-history prompt") {
  auto cfg = nq::CausalLMConfig::gpt2(20, 16, 8, 1, 2);
  nq::CausalLM m(cfg, 4);
  auto b = nq::data::collate_pairs(examples(), 0, nq::data::PadSide::Right);
  nq::causal::NextQuillObjective ctx(m, NextQuillOptions::preset("context-sft"));
  nq::causal::NextQuillObjective sft(m, NextQuillOptions::preset("sft"));
  nq::NoGradGuard ng;
  auto lm = [&](const nq::Tensor& ids, const nq::Tensor& mask, const nq::Tensor& labels) {
    nq::ForwardOptions fo;
    fo.attention_mask = mask;
    return nq::cross_entropy(m.forward(ids, fo).reshape({-1, 20}), labels.reshape({-1})).item();
  };
  CHECK(ctx.forward(b).total.item() == doctest::Approx(lm(b.ids_h, b.mask_h, b.labels_h())).epsilon(1e-5));
  CHECK(sft.forward(b).total.item() == doctest::Approx(lm(b.ids_0, b.mask_0, b.labels_0())).epsilon(1e-5));
}

TEST_CASE("FixedEstimator: DCE from a frozen model, computed once per example") {
  auto cfg = nq::CausalLMConfig::gpt2(20, 16, 8, 1, 2);
  auto frozen = std::make_shared<nq::CausalLM>(cfg, 9);
  nq::CausalLM m(cfg, 4);
  nq::causal::FixedEstimator est(frozen);
  auto b = nq::data::collate_pairs(examples(), 0);
  auto opts = NextQuillOptions::preset("nextquill");
  opts.estimator = nq::causal::EstimatorKind::Fixed;
  nq::causal::NextQuillObjective obj(m, opts, &est);
  auto p1 = obj.forward(b);
  CHECK(est.cached_examples() == 3);
  // DCE is the frozen model's, not the trained model's.
  nq::NoGradGuard ng;
  auto e = nq::causal::estimate(gathered(*frozen, b.ids_h, b.mask_h, b.rows_h),
                                gathered(*frozen, b.ids_0, b.mask_0, b.rows_0), b.targets,
                                nq::causal::WeightRule::Threshold);
  CHECK(maxdiff(p1.dce, e.dce) < 1e-6);
  // A second pass over the same examples in another order hits the cache.
  auto ex = examples();
  std::swap(ex[0], ex[2]);
  auto b2 = nq::data::collate_pairs(ex, 0);
  auto p2 = obj.forward(b2);
  CHECK(est.cached_examples() == 3);
  auto d1 = p1.dce.to_vector<double>(), d2 = p2.dce.to_vector<double>();
  CHECK(d2.front() == doctest::Approx(d1[5]));  // example 2's first token now comes first
  CHECK(frozen->flat().grad.defined() == false);
  // Asking for the fixed estimator without one is an error.
  CHECK(nqtest::contains(nqtest::error_of([&] { nq::causal::NextQuillObjective bad(m, opts); }),
                         "asks for the fixed estimator"));
}

TEST_CASE("FixedEstimator: the cache on disk round-trips, checks its tag and rejects damaged files") {
  auto cfg = nq::CausalLMConfig::gpt2(20, 16, 8, 1, 2);
  auto frozen = std::make_shared<nq::CausalLM>(cfg, 9);
  auto b = nq::data::collate_pairs(examples(), 0);
  nq::causal::FixedEstimator est(frozen);
  const auto rule = nq::causal::WeightRule::JS;  // caches JS values too
  const auto want = est(b, rule);
  const std::string path = nqtest::temp_path("estimator-cache.bin");
  est.save_cache(path, "tag A");

  // A second estimator over *other* weights: values come from the file, not its model.
  nq::causal::FixedEstimator other(std::make_shared<nq::CausalLM>(cfg, 10));
  CHECK(other.load_cache(path, "tag B") == 0);  // another tag: ignored
  CHECK(other.cached_examples() == 0);
  CHECK(other.load_cache(path, "tag A") == 3);
  const auto got = other(b, rule);
  CHECK(got.dce.to_vector<double>() == want.dce.to_vector<double>());
  CHECK(got.js.to_vector<double>() == want.js.to_vector<double>());

  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto load_bytes = [&](const std::string& data) {
    {
      std::ofstream o(path, std::ios::binary | std::ios::trunc);
      o.write(data.data(), std::streamsize(data.size()));
    }
    nq::causal::FixedEstimator e(frozen);
    return nqtest::error_of([&] { e.load_cache(path, "tag A"); });
  };
  CHECK(nqtest::contains(load_bytes(bytes.substr(0, 12)), "truncated at byte 8 (tag length)"));
  CHECK(nqtest::contains(load_bytes(bytes.substr(0, bytes.size() - 3)), "exceeds the file"));
  CHECK(nqtest::contains(load_bytes(bytes + "xy"), "2 trailing bytes"));
  CHECK(nqtest::contains(load_bytes("NOTACACHE-------"), "bad magic"));
  std::string huge = bytes;  // the first entry's DCE count (after magic, tag, entry count, key)
  const size_t at = 8 + 8 + 5 + 8 + 8;
  for (size_t i = 0; i < 8; ++i) huge[at + i] = '\x7f';
  CHECK(nqtest::contains(load_bytes(huge), "exceeds the file"));
  CHECK(nqtest::contains(load_bytes(bytes), path) == false);  // intact again: no error
  std::remove(path.c_str());
}

TEST_CASE("inspect: per-token DCE, weight and MCE at the gold token") {
  auto cfg = nq::CausalLMConfig::gpt2(20, 16, 8, 1, 2);
  nq::CausalLM m(cfg, 5);
  auto b = nq::data::collate_pairs(examples(), 0);
  auto opts = NextQuillOptions::preset("nextquill");
  auto rows = nq::causal::inspect(m, b, opts);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].size() == 3);
  CHECK(rows[2].size() == 4);
  CHECK(rows[1][0].token == 10);
  for (auto& ex : rows)
    for (auto& t : ex) {
      CHECK(t.dce == doctest::Approx(t.p_h - t.p_0));
      CHECK(t.weight == doctest::Approx(t.dce > opts.delta ? opts.lambda : opts.epsilon));
      CHECK(t.p_h > 0);
      CHECK(t.p_h < 1);
    }
}
