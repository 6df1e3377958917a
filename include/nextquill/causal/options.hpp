#pragma once
// NextQuillOptions: every switch of the NextQuill objective, and the named
// presets compared in a study. See docs/nextquill.md for the method.
//
//   total = L_n + alpha * L_p
//   L_n   = norm( sum_t w_n,t * CE(z_h,t, y_t) )            next-token loss, with history
//   L_p   = norm( sum_t w_p,t * CE(z_h,t - z_0,t, y_t) )    causal preference alignment
//   w_t   = lambda if DCE_t > delta else epsilon              (threshold rule)
//   DCE_t = p(y_t | x, h, y<t) - p(y_t | x, no history, y<t) from the estimator
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace nq::causal {

// How token weights are derived from the estimator's two distributions.
enum class WeightRule {
  Threshold,  // lambda if DCE > delta else epsilon (paper Eq. 4, public code)
  JS,         // KL(p_h || m) + KL(p_0 || m), m = (p_h + p_0)/2: 2 * Jensen-Shannon (older public code)
  Uniform,    // 1 for every target token
};

// How a batch's weighted sum is turned into a loss.
enum class Normalization {
  WeightedMean,  // sum(w * ce) / sum(w)      (public code, per micro-batch)
  PerExample,    // sum(w * ce) / #examples   (paper: (1/|D|) sum over examples and tokens)
  TokenMean,     // sum(w * ce) / #target tokens
};

// Where DCE comes from.
enum class EstimatorKind {
  Dynamic,  // the model being trained, at its current parameters (public code)
  Fixed,    // a frozen model (e.g. the base or a context-sft model), computed without gradient
};

struct NextQuillOptions {
  std::string name = "nextquill";
  // Which prompts the model sees: false = no-history prompt only (sft).
  bool use_history = true;
  // Whether the no-history pass runs at all (needed by L_p and by the dynamic estimator).
  bool counterfactual_pass = true;
  WeightRule rule = WeightRule::Threshold;
  double delta = 0.05, lambda = 0.9, epsilon = 0.1;
  bool weighted_ln = true;  // L_n uses the token weights (else plain CE)
  bool weighted_lp = true;  // L_p uses the token weights (paper) or not (public code)
  double alpha = 0.1;       // 0: no L_p term
  Normalization norm = Normalization::WeightedMean;
  // Beyond the reference: cut the gradient into the no-history logits inside
  // L_p, so L_p cannot be lowered by making the no-history pass worse (the
  // failure mode of ../shared/method/reference-study.md).
  bool stop_grad_z0 = false;
  EstimatorKind estimator = EstimatorKind::Dynamic;

  // The named presets of a study (Table 2 layout plus baselines):
  //   sft            no history in the prompt, plain CE
  //   context-sft    history in the prompt, plain CE
  //   mce-only       CE + alpha * unweighted L_p           (public code's older CustomTrainer2)
  //   dce-only       weighted L_n only
  //   mce-dce        plain L_n + alpha * weighted L_p      (MCE-DCE alignment)
  //   nextquill      weighted L_n + alpha * weighted L_p   (paper Eq. 6-8)
  //   nextquill-code weighted L_n + alpha * unweighted L_p (public code's CustomTrainer3)
  static NextQuillOptions preset(const std::string& name) {
    NextQuillOptions o;
    o.name = name;
    if (name == "sft") {
      o.use_history = false, o.counterfactual_pass = false, o.rule = WeightRule::Uniform, o.alpha = 0;
    } else if (name == "context-sft") {
      o.counterfactual_pass = false, o.rule = WeightRule::Uniform, o.alpha = 0;
    } else if (name == "mce-only") {
      o.rule = WeightRule::Uniform, o.weighted_ln = false, o.weighted_lp = false;
    } else if (name == "dce-only") {
      o.alpha = 0;
    } else if (name == "mce-dce") {
      o.weighted_ln = false;
    } else if (name == "nextquill") {
      // defaults
    } else if (name == "nextquill-code") {
      o.weighted_lp = false;
    } else {
      fail("NextQuillOptions", "unknown method '", name, "' (one of: ", preset_list(), ")");
    }
    return o;
  }
  static std::string preset_list() {
    std::string s;
    for (const auto& n : preset_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }
  static std::vector<std::string> preset_names() {
    return {"sft", "context-sft", "mce-only", "dce-only", "mce-dce", "nextquill", "nextquill-code"};
  }

  // Whether token weights / the DCE estimator are needed at all.
  bool needs_weights() const {
    return rule != WeightRule::Uniform && ((weighted_ln) || (alpha > 0 && weighted_lp));
  }
  bool needs_counterfactual() const {
    return counterfactual_pass && use_history &&
           (alpha > 0 || (needs_weights() && estimator == EstimatorKind::Dynamic));
  }

  void validate() const {
    NQ_CHECK(alpha >= 0, "NextQuillOptions", "alpha must be >= 0, got ", alpha);
    NQ_CHECK(lambda >= 0 && epsilon >= 0, "NextQuillOptions", "lambda and epsilon must be >= 0, got ", lambda,
             " and ", epsilon);
    NQ_CHECK(use_history || alpha == 0, "NextQuillOptions", "L_p (alpha > 0) needs the history prompt");
    NQ_CHECK(!(alpha > 0 || (needs_weights() && estimator == EstimatorKind::Dynamic)) ||
                 counterfactual_pass || !use_history,
             "NextQuillOptions", "L_p and the dynamic estimator need the no-history pass");
  }
};

inline const char* to_string(WeightRule r) {
  return r == WeightRule::Threshold ? "threshold" : r == WeightRule::JS ? "js" : "uniform";
}
inline const char* to_string(Normalization n) {
  return n == Normalization::WeightedMean ? "weighted_mean"
         : n == Normalization::PerExample ? "per_example"
                                          : "token_mean";
}

}  // namespace nq::causal
