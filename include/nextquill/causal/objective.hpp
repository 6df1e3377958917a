#pragma once
// NextQuillObjective: one training step of the method on a paired batch.
//
//   with-history pass   ids_h -> hidden (B,Lh,C) -> rows_h -> (N,C) -> z_h (N,V)
//   no-history pass     ids_0 -> hidden (B,L0,C) -> rows_0 -> (N,C) -> z_0 (N,V)
//   estimator           dynamic: z_h, z_0 (detached) | fixed: a frozen model's two passes
//   loss                nextquill_loss(z_h, z_0, y, ...)   (causal/loss.hpp)
//
// Only target rows go through the output layer. One backward covers both
// passes. Presets that need one pass (sft, context-sft, or a fixed estimator
// without L_p) run one.
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../data/batch.hpp"
#include "../models/causal_lm.hpp"
#include "loss.hpp"

namespace nq::causal {

// Logits (N,V) of `model` at the flat positions `rows` (N) of a (B,L) batch.
inline Tensor target_logits(const CausalLM& model, const Tensor& ids, const Tensor& mask,
                            const Tensor& rows) {
  ForwardOptions fo;
  fo.attention_mask = mask;
  Tensor h = model.hidden_states(ids, fo);  // (B,L,C)
  const int64_t C = h.size(2);
  Tensor hr =
      embedding(h.reshape({h.size(0) * h.size(1), C}), rows);  // (N,C): row gather, scatter-add backward
  return model.logits_from_hidden(hr);                         // (N,V)
}

// A frozen model that supplies DCE (and JS values) computed once per example
// and cached by the example's tokens, so a dataset is estimated once per run.
class FixedEstimator {
 public:
  explicit FixedEstimator(std::shared_ptr<CausalLM> model) : model_(std::move(model)) {
    NQ_CHECK(model_, "FixedEstimator", "null model");
    model_->requires_grad_(false);
    model_->flatten_parameters();  // frozen: drop its gradient buffer
    model_->eval();
  }
  const CausalLM& model() const { return *model_; }
  size_t cached_examples() const { return cache_.size(); }

  EstimatorOutput operator()(const data::PairedBatch& b, WeightRule rule) {
    const auto tgt = b.targets.to_vector<int64_t>();
    const auto ex = b.example.to_vector<int64_t>();
    const auto keys = example_keys(b);
    bool all = true;
    for (auto k : keys) all = all && cache_.count(k) && (rule != WeightRule::JS || !cache_[k].js.empty());
    if (!all) {
      NoGradGuard ng;
      Tensor zh = target_logits(*model_, b.ids_h, b.mask_h, b.rows_h);
      Tensor z0 = target_logits(*model_, b.ids_0, b.mask_0, b.rows_0);
      EstimatorOutput e = estimate(zh, z0, b.targets, rule);
      auto d = e.dce.to_vector<double>();
      std::vector<double> j = e.js.defined() ? e.js.to_vector<double>() : std::vector<double>();
      for (size_t r = 0; r < keys.size(); ++r) cache_[keys[r]] = {};
      for (size_t k = 0; k < d.size(); ++k) {
        auto& c = cache_[keys[ex[k]]];
        c.dce.push_back(d[k]);
        if (!j.empty()) c.js.push_back(j[k]);
      }
    }
    std::vector<double> dce(tgt.size()), js(tgt.size());
    std::vector<size_t> pos(keys.size(), 0);
    for (size_t k = 0; k < tgt.size(); ++k) {
      const auto& c = cache_.at(keys[ex[k]]);
      const size_t i = pos[ex[k]]++;
      NQ_CHECK(i < c.dce.size(), "FixedEstimator", "cached example has ", c.dce.size(),
               " target tokens, batch has more");
      dce[k] = c.dce[i];
      if (rule == WeightRule::JS) js[k] = c.js[i];
    }
    EstimatorOutput out;
    out.dce = from_vector(dce, {static_cast<int64_t>(dce.size())}, kFloat32);
    if (rule == WeightRule::JS) out.js = from_vector(js, {static_cast<int64_t>(js.size())}, kFloat32);
    return out;
  }

 private:
  struct Entry {
    std::vector<double> dce, js;
  };
  // FNV-1a over an example's real tokens in both passes and its targets.
  static std::vector<uint64_t> example_keys(const data::PairedBatch& b) {
    const int64_t B = b.batch_size;
    std::vector<uint64_t> keys(B, 1469598103934665603ull);
    auto mix = [](uint64_t& h, int64_t v) {
      for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ static_cast<uint64_t>(v & 0xff)) * 1099511628211ull;
    };
    for (const auto* pr : {&b.ids_h, &b.ids_0}) {
      const Tensor& ids = *pr;
      const Tensor& mask = pr == &b.ids_h ? b.mask_h : b.mask_0;
      auto iv = ids.to_vector<int64_t>();
      auto mv = mask.to_vector<int64_t>();
      const int64_t L = ids.size(1);
      for (int64_t r = 0; r < B; ++r) {
        for (int64_t t = 0; t < L; ++t)
          if (mv[r * L + t]) mix(keys[r], iv[r * L + t]);
        mix(keys[r], -1);
      }
    }
    auto tg = b.targets.to_vector<int64_t>();
    auto ex = b.example.to_vector<int64_t>();
    for (size_t k = 0; k < tg.size(); ++k) mix(keys[ex[k]], tg[k]);
    return keys;
  }
  std::shared_ptr<CausalLM> model_;
  std::unordered_map<uint64_t, Entry> cache_;
};

// What one step computed, for logs and progress bars.
struct StepStats {
  double loss = 0, l_n = 0, l_p = 0, frac_preference = 0, mean_dce = 0;
  int64_t n_targets = 0;
};

class NextQuillObjective {
 public:
  NextQuillObjective(CausalLM& model, NextQuillOptions opts, FixedEstimator* estimator = nullptr)
      : model_(model), opts_(std::move(opts)), est_(estimator) {
    opts_.validate();
    NQ_CHECK(opts_.estimator != EstimatorKind::Fixed || est_ || !opts_.needs_weights(), "NextQuillObjective",
             "method '", opts_.name, "' asks for the fixed estimator but none was given");
  }
  const NextQuillOptions& options() const { return opts_; }

  // Both passes and the loss, with the graph (call .total.backward()).
  LossParts forward(const data::PairedBatch& b) {
    Tensor z_h, z_0;
    if (opts_.use_history) z_h = target_logits(model_, b.ids_h, b.mask_h, b.rows_h);
    if (!opts_.use_history || opts_.needs_counterfactual())
      z_0 = target_logits(model_, b.ids_0, b.mask_0, b.rows_0);
    EstimatorOutput fixed;
    const bool use_fixed =
        opts_.use_history && opts_.estimator == EstimatorKind::Fixed && est_ && opts_.needs_weights();
    if (use_fixed) fixed = (*est_)(b, opts_.rule);
    return nextquill_loss(z_h, z_0, b.targets, b.batch_size, opts_, use_fixed ? &fixed : nullptr);
  }

  // forward + backward; the optimizer step is the caller's.
  StepStats step(const data::PairedBatch& b) {
    LossParts p = forward(b);
    const double loss = p.total.item();
    NQ_CHECK(std::isfinite(loss), "NextQuillObjective", "loss is ", loss, " (l_n ", p.l_n.item(), ", l_p ",
             p.l_p.item(), ")");
    p.total.backward();
    StepStats s;
    s.loss = loss, s.l_n = p.l_n.item(), s.l_p = p.l_p.item(), s.frac_preference = p.frac_preference;
    s.n_targets = p.n_valid;
    auto d = p.dce.to_vector<double>();
    for (double v : d) s.mean_dce += v;
    s.mean_dce = d.empty() ? 0 : s.mean_dce / static_cast<double>(d.size());
    return s;
  }

 private:
  CausalLM& model_;
  NextQuillOptions opts_;
  FixedEstimator* est_;
};

// Per-token view of what the method does on a batch: for each example its
// target tokens with DCE, weight, MCE at the gold token and both gold
// probabilities, from the given model (the estimator: the current model for
// the dynamic variant, a frozen one for the fixed variant).
struct TokenEffect {
  int64_t token = 0;
  double p_h = 0, p_0 = 0, dce = 0, weight = 0, mce_gold = 0;
  bool preference = false;  // DCE > delta
};
inline std::vector<std::vector<TokenEffect>> inspect(const CausalLM& model, const data::PairedBatch& b,
                                                     const NextQuillOptions& opts) {
  NoGradGuard ng;
  Tensor zh = target_logits(model, b.ids_h, b.mask_h, b.rows_h);
  Tensor z0 = target_logits(model, b.ids_0, b.mask_0, b.rows_0);
  auto ph = exp(gold_logprob(zh, b.targets)).to_vector<double>();
  auto p0 = exp(gold_logprob(z0, b.targets)).to_vector<double>();
  auto mce = model_effect_at_gold(zh, z0, b.targets);
  EstimatorOutput e = estimate(zh, z0, b.targets, opts.rule);
  Tensor w = opts.rule == WeightRule::Threshold
                 ? threshold_weights(e.dce, b.targets, opts.delta, opts.lambda, opts.epsilon)
             : opts.rule == WeightRule::JS ? e.js
                                           : uniform_weights(b.targets, kFloat32);
  auto wv = w.to_vector<double>();
  auto tg = b.targets.to_vector<int64_t>();
  auto ex = b.example.to_vector<int64_t>();
  std::vector<std::vector<TokenEffect>> out(b.batch_size);
  for (size_t k = 0; k < tg.size(); ++k) {
    TokenEffect t;
    t.token = tg[k], t.p_h = ph[k], t.p_0 = p0[k], t.dce = ph[k] - p0[k], t.weight = wv[k],
    t.mce_gold = mce[k];
    t.preference = t.dce > opts.delta;
    out[ex[k]].push_back(t);
  }
  return out;
}

}  // namespace nq::causal
