// run_train: the personalization training loop behind `nextquill train` and
// `nextquill study`. One NextQuillObjective step per batch (paired passes,
// effects, weights, loss, one backward), AdamW with warmup + cosine, gradient
// clipping, a checkpoint every ckpt_every steps (model, optimizer, schedule,
// loader position) written atomically, and exact resume.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "dataset.hpp"
#include "numerics.hpp"
#include "run_dir.hpp"
#include "train_options.hpp"

namespace nqcli {

namespace {

// Methods with causal effects compare each target token's probability with and
// without the user's history: with no history anywhere every effect is 0 and
// the method silently degenerates, so that is an error; users without any
// history only get a warning (their examples still train the model).
void check_history(const TrainOptions& o, const nq::causal::NextQuillOptions& m,
                   const std::vector<nq::data::Example>& examples,
                   const std::vector<nq::data::EncodedExample>& encoded, int64_t context) {
  if (!m.use_history) return;
  const bool effects = m.needs_weights() || m.alpha > 0;
  std::map<std::string, bool> user_has;  // user -> some example of theirs has history in its prompt
  int64_t with = 0, raw = 0;
  for (size_t i = 0; i < encoded.size(); ++i) {
    const bool h = encoded[i].history_used > 0;
    with += h, raw += !examples[i].history.empty();
    user_has[encoded[i].user] |= h;
  }
  const std::string train = (fs::path(o.data) / "train.jsonl").string();
  if (with == 0) {
    const std::string why = raw == 0 ? "no training example has any history"
                                     : "every history item was dropped to fit the model's context of " +
                                           std::to_string(context) + " tokens";
    if (effects)
      nq::fail("train", train, ": ", why, ", so every causal effect of --method ", o.method,
               " would be 0; use --method sft or context-sft, or a dataset with history");
    std::fprintf(stderr, "warning: %s: %s; --method %s then trains like sft\n", train.c_str(), why.c_str(),
                 o.method.c_str());
    return;
  }
  int64_t users_without = 0;
  for (const auto& [u, h] : user_has) users_without += !h;
  if (users_without > 0 && !o.quiet)
    std::fprintf(stderr, "warning: %s: %lld of %zu users have no history in any training example%s\n",
                 train.c_str(), static_cast<long long>(users_without), user_has.size(),
                 effects ? " (their causal effects are all 0)" : "");
}

}  // namespace

TrainResult run_train(const TrainOptions& o, const std::string& command) {
  nq::set_num_threads(o.threads);
  const nq::causal::NextQuillOptions mopt = o.method_options();
  // Every input is read and checked before --out is touched (OutDir below).
  const std::string ckpt = o.out + "/checkpoint.safetensors";
  if (!o.resume && fs::exists(ckpt))
    nq::fail("train", o.out,
             " holds an unfinished run (checkpoint.safetensors); pass --resume to continue it, "
             "or choose another --out");
  if (o.resume && !fs::exists(ckpt)) nq::fail("train", "--resume: no checkpoint at '", ckpt, "'");

  Run base = load_run(o.base);
  nq::CausalLM& model = *base.model;
  const nq::CausalLMConfig mc = model.config();
  const nq::data::PromptTemplate tpl = resolve_template(o.tmpl, o.data);
  const auto examples = load_split(o.data, "train", o.max_examples, o.skip_examples);
  const nq::data::PromptBuilder builder(base.tok, tpl, mc.max_seq_len);
  const auto encoded = builder.encode_all(examples);
  int64_t overflow = 0, dropped = 0, targets = 0, tokens_h = 0, tokens_0 = 0;
  for (const auto& e : encoded) {
    overflow += e.overflow, dropped += e.history_dropped, targets += int64_t(e.target.size());
    tokens_h += int64_t(e.prompt_h.size() + e.target.size()),
        tokens_0 += int64_t(e.prompt_0.size() + e.target.size());
  }
  check_history(o, mopt, examples, encoded, mc.max_seq_len);

  // LoRA: adapters on the attention projections; the base stays frozen and
  // gets no gradient buffer.
  std::vector<std::string> wrapped;
  if (o.lora > 0) {
    nq::nn::LoRAConfig lc;
    lc.r = o.lora;
    lc.alpha = o.lora_alpha > 0 ? o.lora_alpha : 2.0 * double(o.lora);
    lc.targets = mc.fused_qkv ? std::vector<std::string>{"qkv_proj", "o_proj"}
                              : std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj"};
    nq::Generator lg(o.seed * 31 + 7);
    wrapped = nq::nn::apply_lora(model, lc, lg);
  }
  model.train();

  std::unique_ptr<nq::causal::FixedEstimator> est;
  std::string est_dir, est_cache, est_tag;
  size_t est_cached = 0;
  if (o.estimator != "dynamic") {
    est_dir = o.estimator.substr(6);
    Run er = load_run(est_dir);
    NQ_CHECK(er.tok.vocab_size() == base.tok.vocab_size() && er.model->config().vocab_size == mc.vocab_size,
             "train", "--estimator ", est_dir, ": its tokenizer/vocabulary differs from the base model's");
    est = std::make_unique<nq::causal::FixedEstimator>(er.model);
    // Its DCE values, shared on disk by every run that uses this estimator
    // with the same weights and thread count (the values are then bit-identical).
    est_cache = (fs::path(est_dir) / "estimator-cache.bin").string();
    const fs::path w = fs::path(est_dir) / "model.safetensors";
    est_tag = "weights " + std::to_string(fs::file_size(w)) + " bytes, mtime " +
              std::to_string(fs::last_write_time(w).time_since_epoch().count()) + ", threads " +
              std::to_string(o.threads) + ", cpu";
    if (fs::exists(est_cache)) {
      try {
        const size_t n = est->load_cache(est_cache, est_tag);
        if (!o.quiet)
          std::printf(n ? "estimator: %zu examples' DCE loaded from %s\n"
                        : "estimator: %zu examples loaded; %s was made by other weights or threads\n",
                      n, est_cache.c_str());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "warning: ignoring the estimator cache: %s\n", e.what());
      }
    }
    est_cached = est->cached_examples();
  }
  nq::causal::NextQuillObjective objective(model, mopt, est.get());

  nq::data::PairedLoader loader(encoded, o.batch_size, true, o.seed * 1000003 + 11, nq::data::PadSide::Right,
                                builder.eos_id(), mc.max_seq_len);
  const int64_t per_epoch = loader.batches_per_epoch(), total = per_epoch * o.epochs;
  const int64_t warmup = std::min(o.warmup >= 0 ? o.warmup : total / 20, total - 1);
  nq::optim::AdamWOptions ao;
  ao.lr = o.effective_lr(), ao.beta1 = 0.9, ao.beta2 = 0.999;
  nq::optim::AdamW opt(nq::optim::make_param_groups(model.named_trainable_parameters(), o.weight_decay), ao);
  nq::optim::LRScheduler sched(
      opt, nq::optim::Warmup(nq::optim::CosineLR(total, 0.1), std::max<int64_t>(warmup, 0)));

  NanGuard guard("train", o.nan, model.named_trainable_parameters());
  int64_t step = 0, ckpt_step = 0;
  double last = 0;
  if (o.resume) {
    auto st = nq::io::load_checkpoint(ckpt, model, &opt, &sched);
    step = ckpt_step = st.step;
    auto it = st.extra.find("loader");
    NQ_CHECK(it != st.extra.end(), "train", ckpt, ": no loader position in the checkpoint");
    loader.set_position(nq::data::LoaderPosition::parse(it->second));
    if (auto l = st.extra.find("loss"); l != st.extra.end()) last = std::strtod(l->second.c_str(), nullptr);
    if (auto n = st.extra.find("nan_skipped"); n != st.extra.end())
      guard.set_skipped(std::strtoll(n->second.c_str(), nullptr, 10));
    if (!o.quiet) std::printf("resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(step));
  }
  if (!o.quiet)
    std::printf(
        "train %s on %s: %zu examples (%lld target tokens; mean tokens per example %.0f with history, "
        "%.0f without; %lld history items dropped to fit %lld tokens), %lld steps of %lld, %s, lr %.2g, "
        "estimator %s, %d thread(s)\n",
        o.method.c_str(), o.data.c_str(), encoded.size(), static_cast<long long>(targets),
        double(tokens_h) / double(encoded.size()), double(tokens_0) / double(encoded.size()),
        static_cast<long long>(dropped), static_cast<long long>(mc.max_seq_len),
        static_cast<long long>(total), static_cast<long long>(o.batch_size),
        o.lora > 0 ? ("LoRA r " + std::to_string(o.lora)).c_str() : "full fine-tuning", o.effective_lr(),
        o.estimator.c_str(), o.threads);
  if (overflow && !o.quiet)
    std::printf(
        "note: %lld examples exceed %lld tokens even without history; their prompts are cut from the left\n",
        static_cast<long long>(overflow), static_cast<long long>(mc.max_seq_len));

  auto save_ckpt = [&] {
    nq::io::TrainState st;
    st.step = step;
    st.extra["loader"] = loader.position().str();
    st.extra["method"] = o.method;
    char l[32];
    std::snprintf(l, sizeof l, "%.17g", last);
    st.extra["loss"] = l;
    st.extra["nan_skipped"] = std::to_string(guard.skipped());
    nq::io::save_checkpoint(ckpt, model, &opt, &sched, st, mc.to_json().dump());
    ckpt_step = step;
  };

  // From here on the run writes; a failure that leaves no checkpoint removes
  // what it wrote.
  OutDir out_dir(o.out);
  out_dir.create();
  const std::string log_path = o.out + "/losses.tsv";
  if (o.resume) {
    truncate_log(log_path, step);
  } else {
    // A finished run's marker goes first, so that a killed retraining never
    // looks finished (nextquill.json is written last).
    fs::remove(o.out + "/nextquill.json");
  }
  std::ofstream log(log_path, o.resume ? std::ios::app : std::ios::trunc);
  if (!o.resume) log << "step\tepoch\tloss\tl_n\tl_p\tfrac_preference\tmean_dce\tlr\tgrad_norm\n";
  auto flush_log = [&] {
    log.flush();
    if (!log) nq::fail("train", log_path, ": write failed (disk full?)");
  };
  Stopwatch sw;
  std::unique_ptr<nq::ProgressBar> bar;
  if (!o.quiet) bar = std::make_unique<nq::ProgressBar>(total, "train " + o.method, step);
  double ema = -1;
  nq::data::PairedBatch b;
  while (step < total) {
    if (!loader.next(b)) {
      loader.reset_epoch();
      continue;
    }
    model.zero_grad();
    nq::causal::StepStats s = objective.step(b);
    guard.inject(step + 1, s.loss);
    const double norm = nq::optim::clip_grad_norm(opt.parameters(), o.grad_clip);
    const bool skip = guard.bad_step(step + 1, s.loss, norm, ckpt_step > 0 ? ckpt : "", ckpt_step);
    const double lr = opt.lr();
    if (!skip) opt.step();
    sched.step();
    ++step;
    if (!skip) {
      last = s.loss;
      ema = ema < 0 ? s.loss : 0.95 * ema + 0.05 * s.loss;
    }
    log << step << '\t' << loader.epoch() << '\t' << s.loss << '\t' << s.l_n << '\t' << s.l_p << '\t'
        << s.frac_preference << '\t' << s.mean_dce << '\t' << lr << '\t' << norm << '\n';
    if (step % o.ckpt_every == 0 || step == o.stop_after) {
      flush_log();
      save_ckpt();
    }
    if (bar) {
      char f[96];
      if (mopt.needs_weights())
        std::snprintf(f, sizeof f, "loss %.3f pref %.2f", ema, s.frac_preference);
      else
        std::snprintf(f, sizeof f, "loss %.3f", ema);
      bar->update(step, f, double(s.n_targets), "target tok");
    }
    if (step == o.stop_after) {
      if (bar) bar->finish("stopped at step " + std::to_string(step) + " (checkpoint " + ckpt + ")");
      return {step, sw.seconds(), last, true, guard.skipped()};
    }
  }
  if (bar) bar->finish();
  flush_log();
  log.close();
  if (est && est->cached_examples() > est_cached) {
    try {  // a cache only: a read-only estimator directory costs time, not results
      est->save_cache(est_cache, est_tag);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: estimator cache not saved: %s\n", e.what());
    }
  }

  // The personalized model, LoRA merged into the weights so that eval and
  // Hugging Face see one plain model; the adapters alone go to adapter.safetensors.
  if (o.lora > 0) {
    nq::nn::save_lora(model, o.out + "/adapter.safetensors", {{"base", o.base}});
    nq::nn::merge_lora(model);
  }
  nlohmann::json meta = {{"kind", "personalized"},
                         {"command", command},
                         {"finished", now_utc()},
                         {"method", o.method},
                         {"use_history", mopt.use_history},
                         {"method_options",
                          {{"delta", mopt.delta},
                           {"lambda", mopt.lambda},
                           {"epsilon", mopt.epsilon},
                           {"alpha", mopt.alpha},
                           {"weighted_ln", mopt.weighted_ln},
                           {"weighted_lp", mopt.weighted_lp},
                           {"rule", nq::causal::to_string(mopt.rule)},
                           {"normalization", nq::causal::to_string(mopt.norm)},
                           {"stop_grad_z0", mopt.stop_grad_z0}}},
                         {"estimator", o.estimator},
                         {"base", o.base},
                         {"data", o.data},
                         {"template", tpl.to_json()},
                         {"lora", o.lora},
                         {"epochs", o.epochs},
                         {"batch_size", o.batch_size},
                         {"lr", o.effective_lr()},
                         {"examples", encoded.size()},
                         {"max_examples", o.max_examples},
                         {"skip_examples", o.skip_examples},
                         {"steps", step},
                         {"seed", o.seed},
                         {"final_loss", last},
                         {"nan_skipped_steps", guard.skipped()},
                         {"seconds", sw.seconds()}};
  save_run(o.out, model, base.tok, meta);
  fs::remove(ckpt);  // finished: the run directory now holds the model itself
  return {step, sw.seconds(), last, false, guard.skipped()};
}

}  // namespace nqcli
