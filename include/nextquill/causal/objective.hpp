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
//
// Devices: the objective runs where the model is (Module::to). A batch may
// stay on the CPU or be moved with PairedBatch::to: the model moves ids and
// masks, target_logits moves the rows, and the loss runs on the logits'
// device. Logits are fp32 (also under CausalLM::set_autocast(kBFloat16)), so
// the effects, weights and losses are fp32 math. Host reads per step: the
// weight rule's N values and the statistics step() reports, in one copy.
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../data/batch.hpp"
#include "../io/atomic_file.hpp"
#include "../models/causal_lm.hpp"
#include "../ops/join.hpp"
#include "loss.hpp"

namespace nq::causal {

// Logits (N,V) of `model` at the flat positions `rows` (N) of a (B,L) batch.
// On the model's device, in the model's dtype.
inline Tensor target_logits(const CausalLM& model, const Tensor& ids, const Tensor& mask,
                            const Tensor& rows) {
  ForwardOptions fo;
  fo.attention_mask = mask;
  Tensor h = model.hidden_states(ids, fo);  // (B,L,C)
  return model.logits_at_rows(h, rows);     // (N,C) row gather (scatter-add backward) -> (N,V)
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

  // The cache on disk, so that runs sharing a frozen estimator (a study's five
  // weighted methods of one seed) estimate the dataset once. `tag` names what
  // the values depend on (the estimator's weights, the thread count); load
  // returns 0 and keeps nothing when the file's tag differs, and throws, naming
  // the file and the byte offset, when the file is malformed.
  void save_cache(const std::string& path, const std::string& tag) const {
    io::write_file_atomic(path, "FixedEstimator::save_cache", [&](std::ostream& out) {
      auto u64 = [&](uint64_t v) { out.write(reinterpret_cast<const char*>(&v), sizeof v); };
      auto vec = [&](const std::vector<double>& v) {
        u64(v.size());
        out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(double)));
      };
      out.write(kCacheMagic, sizeof kCacheMagic);
      u64(tag.size());
      out.write(tag.data(), std::streamsize(tag.size()));
      u64(cache_.size());
      for (const auto& [key, e] : cache_) {
        u64(key);
        vec(e.dce);
        vec(e.js);
      }
    });
  }
  size_t load_cache(const std::string& path, const std::string& tag) {
    std::ifstream in(path, std::ios::binary);
    NQ_CHECK(in, "FixedEstimator::load_cache", "cannot open '", path, "'");
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t off = 0;
    auto need = [&](size_t n, const char* what) {
      NQ_CHECK(n <= bytes.size() - off, "FixedEstimator::load_cache", path, ": truncated at byte ", off, " (",
               what, ")");
    };
    auto u64 = [&](const char* what) {
      need(sizeof(uint64_t), what);
      uint64_t v;
      std::memcpy(&v, bytes.data() + off, sizeof v);
      off += sizeof v;
      return v;
    };
    auto vec = [&](const char* what) {
      const uint64_t n = u64(what);
      NQ_CHECK(n <= (bytes.size() - off) / sizeof(double), "FixedEstimator::load_cache", path, ": ", what,
               " count ", n, " at byte ", off - sizeof n, " exceeds the file");
      std::vector<double> v(n);
      if (n > 0) std::memcpy(v.data(), bytes.data() + off, n * sizeof(double));  // v.data() may be null
      off += n * sizeof(double);
      return v;
    };
    need(sizeof kCacheMagic, "magic");
    NQ_CHECK(std::memcmp(bytes.data(), kCacheMagic, sizeof kCacheMagic) == 0, "FixedEstimator::load_cache",
             path, ": not an estimator cache (bad magic)");
    off += sizeof kCacheMagic;
    const uint64_t tag_len = u64("tag length");
    need(tag_len, "tag");
    if (bytes.compare(off, tag_len, tag) != 0 || tag_len != tag.size()) return 0;
    off += tag_len;
    const uint64_t n = u64("entry count");
    std::unordered_map<uint64_t, Entry> loaded;
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t key = u64("key");
      Entry e;
      e.dce = vec("dce");
      e.js = vec("js");
      NQ_CHECK(e.js.empty() || e.js.size() == e.dce.size(), "FixedEstimator::load_cache", path, ": entry ", i,
               " has ", e.dce.size(), " DCE values but ", e.js.size(), " JS values");
      loaded[key] = std::move(e);
    }
    NQ_CHECK(off == bytes.size(), "FixedEstimator::load_cache", path, ": ", bytes.size() - off,
             " trailing bytes after ", n, " entries");
    for (auto& [k, e] : loaded) cache_[k] = std::move(e);
    return size_t(n);
  }

  // Values on the device of b.targets (the cache lives on the host).
  EstimatorOutput operator()(const data::PairedBatch& b, WeightRule rule) {
    const auto tgt = b.targets.cpu().to_vector<int64_t>();
    const auto ex = b.example.cpu().to_vector<int64_t>();
    const auto keys = example_keys(b);
    bool all = true;
    for (auto k : keys) all = all && cache_.count(k) && (rule != WeightRule::JS || !cache_[k].js.empty());
    if (!all) {
      NoGradGuard ng;
      Tensor zh = target_logits(*model_, b.ids_h, b.mask_h, b.rows_h);
      Tensor z0 = target_logits(*model_, b.ids_0, b.mask_0, b.rows_0);
      EstimatorOutput e = estimate(zh, z0, b.targets, rule);
      auto d = e.dce.cpu().to_vector<double>();
      std::vector<double> j = e.js.defined() ? e.js.cpu().to_vector<double>() : std::vector<double>();
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
    const Device dev = b.targets.device();
    out.dce = from_vector(dce, {static_cast<int64_t>(dce.size())}, kFloat32).to(dev);
    if (rule == WeightRule::JS) out.js = from_vector(js, {static_cast<int64_t>(js.size())}, kFloat32).to(dev);
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
      auto iv = ids.cpu().to_vector<int64_t>();
      auto mv = mask.cpu().to_vector<int64_t>();
      const int64_t L = ids.size(1);
      for (int64_t r = 0; r < B; ++r) {
        for (int64_t t = 0; t < L; ++t)
          if (mv[r * L + t]) mix(keys[r], iv[r * L + t]);
        mix(keys[r], -1);
      }
    }
    auto tg = b.targets.cpu().to_vector<int64_t>();
    auto ex = b.example.cpu().to_vector<int64_t>();
    for (size_t k = 0; k < tg.size(); ++k) mix(keys[ex[k]], tg[k]);
    return keys;
  }
  static constexpr char kCacheMagic[8] = {'N', 'Q', 'E', 'S', 'T', 'C', '1', '\n'};
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
    // Targets and estimator values next to the logits (no-ops on the CPU).
    const Device dev = model_.embed->weight.device();
    if (use_fixed) {
      fixed = (*est_)(b, opts_.rule);
      if (fixed.dce.defined()) fixed.dce = fixed.dce.to(dev);
      if (fixed.js.defined()) fixed.js = fixed.js.to(dev);
    }
    return nextquill_loss(z_h, z_0, b.targets.to(dev), b.batch_size, opts_, use_fixed ? &fixed : nullptr);
  }

  // forward + backward; the optimizer step is the caller's.
  // The statistics (loss, l_n, l_p, DCE) reach the host in one copy.
  StepStats step(const data::PairedBatch& b) {
    LossParts p = forward(b);
    std::vector<double> host;
    {
      NoGradGuard ng;
      const Device dev = p.total.device();
      const DType dt = p.total.dtype();
      auto one = [&](const Tensor& t) { return t.detach().to(dev).to(dt).reshape({-1}); };
      host = concat({one(p.total), one(p.l_n), one(p.l_p), one(p.dce)}, 0).cpu().to_vector<double>();
    }
    const double loss = host[0];
    NQ_CHECK(std::isfinite(loss), "NextQuillObjective", "loss is ", loss, " (l_n ", host[1], ", l_p ",
             host[2], ")");
    p.total.backward();
    StepStats s;
    s.loss = loss, s.l_n = host[1], s.l_p = host[2], s.frac_preference = p.frac_preference;
    s.n_targets = p.n_valid;
    const size_t nd = host.size() - 3;
    for (size_t k = 0; k < nd; ++k) s.mean_dce += host[3 + k];
    s.mean_dce = nd == 0 ? 0 : s.mean_dce / static_cast<double>(nd);
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
  const Tensor y = b.targets.to(zh.device());
  auto ph = exp(gold_logprob(zh, y)).cpu().to_vector<double>();
  auto p0 = exp(gold_logprob(z0, y)).cpu().to_vector<double>();
  auto mce = model_effect_at_gold(zh, z0, y);
  EstimatorOutput e = estimate(zh, z0, y, opts.rule);
  Tensor w = opts.rule == WeightRule::Threshold
                 ? threshold_weights(e.dce, y, opts.delta, opts.lambda, opts.epsilon)
             : opts.rule == WeightRule::JS ? e.js
                                           : uniform_weights(y, kFloat32);
  auto wv = w.cpu().to_vector<double>();
  auto tg = b.targets.cpu().to_vector<int64_t>();
  auto ex = b.example.cpu().to_vector<int64_t>();
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
