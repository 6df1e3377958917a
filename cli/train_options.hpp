#pragma once
// What `nextquill train` needs, as one struct: the train command parses it
// from flags, the study command fills it per method and seed, and run_train
// (trainer.cpp) carries it out.
#include <cmath>
#include <nextquill/nextquill.hpp>
#include <string>

#include "args.hpp"
#include "numerics.hpp"

namespace nqcli {

// --weight-rule of train and study: empty (the preset's), threshold or js.
inline void check_weight_rule(const std::string& prog, const std::string& rule) {
  require(rule.empty() || rule == "threshold" || rule == "js", prog,
          "--weight-rule must be 'threshold' or 'js', got '" + rule + "'");
}

struct TrainOptions {
  std::string data, method = "nextquill", base, out, estimator = "dynamic", tmpl = "auto";
  int64_t lora = 0;       // rank; 0 = full fine-tuning
  double lora_alpha = 0;  // 0: 2 * rank
  int64_t epochs = 2, batch_size = 16, max_examples = 0, skip_examples = 0, warmup = -1, ckpt_every = 200,
          stop_after = -1;
  double lr = -1;  // -1: 3e-4 full fine-tuning, 2e-3 LoRA
  double weight_decay = 0.0, grad_clip = 1.0;
  // Method overrides (NaN / -1: the preset's value).
  double delta = NAN, lambda = NAN, epsilon = NAN, alpha = NAN;
  bool stop_grad_z0 = false;
  std::string weight_rule;  // "": the preset's; threshold or js for the weighted methods
  uint64_t seed = 1;
  int threads = 1;
  bool resume = false, quiet = false;
  NanPolicy nan;

  double effective_lr() const { return lr > 0 ? lr : lora > 0 ? 2e-3 : 3e-4; }

  // The method's options with the overrides applied.
  nq::causal::NextQuillOptions method_options() const {
    auto m = nq::causal::NextQuillOptions::preset(method);
    if (!std::isnan(delta)) m.delta = delta;
    if (!std::isnan(lambda)) m.lambda = lambda;
    if (!std::isnan(epsilon)) m.epsilon = epsilon;
    if (!std::isnan(alpha) && m.alpha > 0) m.alpha = alpha;
    if (stop_grad_z0) m.stop_grad_z0 = true;
    if (weight_rule == "js" && m.rule != nq::causal::WeightRule::Uniform) m.rule = nq::causal::WeightRule::JS;
    if (estimator != "dynamic") m.estimator = nq::causal::EstimatorKind::Fixed;
    m.validate();
    return m;
  }

  void check(const std::string& prog) const {
    require(epochs >= 1, prog, "--epochs must be >= 1");
    require(batch_size >= 1, prog, "--batch-size must be >= 1");
    require(lora >= 0, prog, "--lora must be >= 0 (0 = full fine-tuning)");
    require(std::isfinite(lora_alpha) && lora_alpha >= 0, prog, "--lora-alpha must be >= 0 (0: 2 x rank)");
    require(threads >= 1 && threads <= 4096, prog, "--threads must be in 1..4096");
    require(ckpt_every >= 1, prog, "--ckpt-every must be >= 1");
    require(stop_after == -1 || stop_after >= 1, prog, "--stop-after must be >= 1");
    require(max_examples >= 0, prog, "--max-examples must be >= 0 (0: all)");
    require(skip_examples >= 0, prog, "--skip-examples must be >= 0");
    require(warmup >= -1, prog, "--warmup must be >= 0 (or -1: 5% of the steps)");
    require(lr == -1 || (std::isfinite(lr) && lr > 0), prog, "--lr must be a finite number > 0 (or -1)");
    require(std::isfinite(weight_decay) && weight_decay >= 0, prog, "--weight-decay must be >= 0");
    require(std::isnan(delta) || std::isfinite(delta), prog, "--delta must be finite");
    const std::pair<double, const char*> overrides[] = {
        {lambda, "--lambda"}, {epsilon, "--epsilon"}, {alpha, "--alpha"}};
    for (const auto& [v, f] : overrides)
      require(std::isnan(v) || (std::isfinite(v) && v >= 0), prog,
              std::string(f) + " must be finite and >= 0");
    require(estimator == "dynamic" || estimator.rfind("fixed:", 0) == 0, prog,
            "--estimator must be 'dynamic' or 'fixed:RUN', got '" + estimator + "'");
    require(estimator == "dynamic" || estimator.size() > 6, prog,
            "--estimator fixed:RUN needs a run directory");
    check_weight_rule(prog, weight_rule);
    nan.check(prog);
    try {
      (void)method_options();
    } catch (const nq::Error& e) {
      throw UsageError(prog + ": --method " + method + ": " + e.what());
    }
  }
};

inline void add_train_flags(ArgParser& p, TrainOptions& o) {
  p.add("--data", &o.data, "DIR", "dataset directory (train.jsonl)").required();
  p.add("--method", &o.method, "M",
        "sft, context-sft, mce-only, dce-only, mce-dce, nextquill, nextquill-code");
  p.add("--base", &o.base, "RUN", "base run (from pretrain) or Hugging Face model directory").required();
  p.add("--out", &o.out, "RUN", "output run directory").required();
  p.add("--lora", &o.lora, "R", "LoRA rank on q/k/v/o projections; 0 = full fine-tuning");
  p.add("--lora-alpha", &o.lora_alpha, "A", "LoRA alpha (0: 2 x rank)");
  p.add("--epochs", &o.epochs, "N", "passes over the training examples");
  p.add("--seed", &o.seed, "S", "seed (data order, LoRA init)");
  p.add("--estimator", &o.estimator, "E", "DCE estimator: dynamic (the model being trained) or fixed:RUN");
  p.add("--batch-size", &o.batch_size, "B", "examples per step");
  p.add("--lr", &o.lr, "LR", "peak learning rate (-1: 3e-4 full, 2e-3 LoRA)");
  p.add("--weight-decay", &o.weight_decay, "WD", "AdamW weight decay");
  p.add("--warmup", &o.warmup, "N", "warmup steps (-1: 5% of the steps)");
  p.add("--max-examples", &o.max_examples, "N", "train on a fixed subset of N examples (0: all)");
  p.add(
      "--skip-examples", &o.skip_examples, "K",
      "skip the first K examples of that fixed order (a disjoint subset: K = another run's --max-examples)");
  p.add("--template", &o.tmpl, "T",
        "prompt template: auto (DIR/prompt.json or generic), a preset, or a file");
  p.add("--delta", &o.delta, "D", "override the method's DCE threshold");
  p.add("--lambda", &o.lambda, "L", "override the weight of preference-bearing tokens");
  p.add("--epsilon", &o.epsilon, "E", "override the weight of other tokens");
  p.add("--alpha", &o.alpha, "A", "override the weight of L_p (methods that have it)");
  p.flag("--stop-grad-z0", &o.stop_grad_z0, "no gradient into the no-history logits inside L_p");
  p.add("--weight-rule", &o.weight_rule, "R",
        "token weights of the weighted methods: threshold (paper: lambda if DCE > delta, else epsilon) or "
        "js (older public code: 2 x Jensen-Shannon divergence of the estimator's two distributions)");
  p.add("--threads", &o.threads, "N", "CPU threads");
  p.add("--ckpt-every", &o.ckpt_every, "N", "checkpoint every N steps");
  p.add("--stop-after", &o.stop_after, "N", "checkpoint and stop at step N (as if interrupted)");
  p.flag("--resume", &o.resume, "continue from RUN/checkpoint.safetensors");
  add_nan_flags(p, o.nan);
}

struct TrainResult {
  int64_t steps = 0;
  double seconds = 0, final_loss = 0;
  bool stopped = false;     // --stop-after hit
  int64_t nan_skipped = 0;  // steps skipped under --nan-policy skip
};

// Trains and writes the run; throws nq::Error on bad input.
TrainResult run_train(const TrainOptions& o, const std::string& command);

}  // namespace nqcli
