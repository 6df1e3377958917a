// nextquill study: the whole comparison on one dataset. Pretrains a base
// model once (or takes --base), trains every method for every seed,
// evaluates each on the test split, scores the trivial baselines with the
// same metrics, and writes results.json, results.md and an HTML report.
// Finished runs are reused, so an interrupted study continues where it
// stopped when started again with the same --out.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nextquill/report/report.hpp>
#include <sstream>

#include "args.hpp"
#include "commands.hpp"
#include "dataset.hpp"
#include "evaluator.hpp"
#include "inspector.hpp"
#include "pretrainer.hpp"
#include "run_dir.hpp"
#include "train_options.hpp"

namespace nqcli {

namespace {

const char* kMetrics[] = {"rouge1", "rougeL", "bleu", "meteor", "ppl"};
const char* kMetricNames[] = {"ROUGE-1", "ROUGE-L", "BLEU", "METEOR", "PPL"};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// The metrics of a finished run, read back from its eval-test.json.
void read_eval_metrics(const std::string& path, EvalResult& r) {
  auto j = read_json(path);
  try {
    r.metrics.rouge1 = j.at("rouge1"), r.metrics.rougeL = j.at("rougeL"), r.metrics.bleu = j.at("bleu");
    r.metrics.meteor = j.at("meteor"), r.ppl = j.at("ppl"), r.metrics.n = j.at("n");
  } catch (const nlohmann::json::exception& e) {
    nq::fail("study", path, ": ", e.what(),
             "; remove it and predictions-test.jsonl beside it to evaluate the run again");
  }
}

std::string fmt(double v, int d) {
  if (!std::isfinite(v)) return "—";
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", d, v);
  return b;
}
int decimals(const std::string& metric) { return metric == "bleu" || metric == "ppl" ? 2 : 4; }

}  // namespace

int cmd_study(int argc, char** argv) {
  std::string data, out, base, methods_arg, estimator = "dynamic", tmpl = "auto", weight_rule;
  int64_t seeds = -1, max_train = -1, max_test = -1, epochs = -1, lora = 0, batch_size = 16,
          pretrain_steps = -1;
  int64_t max_new_tokens = 48, min_new_tokens = 0;
  double lr = -1, delta = NAN, lambda = NAN, epsilon = NAN, alpha = NAN;
  bool quick = false, stop_grad_z0 = false;
  int threads = default_threads();
  ArgParser p(
      "nextquill study",
      "Runs a personalization study on DIR (train/valid/test.jsonl): pretrains a base model once\n"
      "(or uses --base), trains every method for every seed, evaluates each on test, scores the\n"
      "trivial baselines, and writes OUT/results.md, OUT/results.json and OUT/report.html. Runs go\n"
      "to OUT/runs/<method>-s<seed>; finished ones are reused when the study is run again (a trained\n"
      "run without eval-test.json is only evaluated).");
  p.add("--data", &data, "DIR", "dataset directory").required();
  p.add("--out", &out, "DIR", "output directory").required();
  p.add("--base", &base, "RUN", "base model (else pretrained into OUT/base)");
  p.add("--seeds", &seeds, "N", "seeds per method (default 3; --quick 1)");
  p.add("--methods", &methods_arg, "LIST", "comma-separated methods (default: all seven)");
  p.flag("--quick", &quick, "small and fast: 1 seed, 800 train and 200 test examples, 1 epoch");
  p.add("--epochs", &epochs, "N", "training epochs (default 2; --quick 1)");
  p.add("--max-train", &max_train, "N", "train on a fixed subset (0: all; --quick 800)");
  p.add("--max-test", &max_test, "N", "evaluate on a fixed subset (0: all; --quick 200)");
  p.add("--lora", &lora, "R", "LoRA rank (0: full fine-tuning)");
  p.add("--batch-size", &batch_size, "B", "examples per step");
  p.add("--lr", &lr, "LR", "peak learning rate (-1: 3e-4 full, 2e-3 LoRA)");
  p.add("--estimator", &estimator, "E",
        "DCE estimator of the weighted methods: dynamic, fixed:context-sft (this study's context-sft run of "
        "the same seed) or fixed:RUN");
  p.add("--delta", &delta, "D", "override δ");
  p.add("--lambda", &lambda, "L", "override λ");
  p.add("--epsilon", &epsilon, "E", "override ε");
  p.add("--alpha", &alpha, "A", "override α");
  p.flag("--stop-grad-z0", &stop_grad_z0, "no gradient into the no-history logits inside L_p");
  p.add("--weight-rule", &weight_rule, "R", "token weights of the weighted methods: threshold (paper) or js");
  p.add("--template", &tmpl, "T", "prompt template (auto: DIR/prompt.json or generic)");
  p.add("--max-new-tokens", &max_new_tokens, "N", "generation length limit");
  p.add("--min-new-tokens", &min_new_tokens, "N", "no EOS before N new tokens (0: off)");
  p.add("--pretrain-steps", &pretrain_steps, "N",
        "steps when pretraining the base here (default 6000; --quick 300)");
  p.add("--threads", &threads, "N", "CPU threads");
  if (!p.parse(argc, argv, 2)) return 0;
  if (seeds < 0) seeds = quick ? 1 : 3;
  if (epochs < 0) epochs = quick ? 1 : 2;
  if (max_train < 0) max_train = quick ? 800 : 0;
  if (max_test < 0) max_test = quick ? 200 : 0;
  require(seeds >= 1, p.prog(), "--seeds must be >= 1");
  require(threads >= 1, p.prog(), "--threads must be >= 1");
  require(max_new_tokens >= 1, p.prog(), "--max-new-tokens must be >= 1");
  check_weight_rule(p.prog(), weight_rule);
  require(min_new_tokens >= 0 && min_new_tokens <= max_new_tokens, p.prog(),
          "--min-new-tokens must be in [0, --max-new-tokens]");
  std::vector<std::string> methods =
      methods_arg.empty() ? nq::causal::NextQuillOptions::preset_names() : split_list(methods_arg);
  require(!methods.empty(), p.prog(), "--methods is empty");
  for (const auto& m : methods) {
    try {
      (void)nq::causal::NextQuillOptions::preset(m);
    } catch (const nq::Error& e) {
      throw UsageError(p.prog() + ": --methods: " + e.what());
    }
  }
  const bool est_csft = estimator == "fixed:context-sft";
  if (est_csft && std::find(methods.begin(), methods.end(), "context-sft") == methods.end())
    methods.insert(methods.begin(), "context-sft");
  if (est_csft) {  // context-sft first: it is the estimator of the others
    std::stable_partition(methods.begin(), methods.end(),
                          [](const std::string& m) { return m == "context-sft"; });
  }
  const std::string command = command_line(argc, argv);
  Stopwatch total;
  // Fail early on a bad dataset, before anything long runs or --out is made.
  const auto test = load_split(data, "test", max_test);
  (void)load_split(data, "train", 1);
  make_out_dir(out);

  // 1. The base model.
  if (base.empty()) {
    base = out + "/base";
    if (!fs::exists(base + "/nextquill.json")) {  // written last: the base is complete
      PretrainArgs pa;
      pa.data = data, pa.out = base, pa.threads = threads;
      pa.resume = fs::exists(base + "/checkpoint.safetensors");
      pa.steps = pretrain_steps >= 0 ? pretrain_steps : quick ? 300 : -1;
      if (quick)  // a small model that pretrains in a few minutes on 2 cores
        pa.overrides = {{"d_model", 256}, {"n_layers", 4},      {"n_heads", 4}, {"n_kv_heads", 4},
                        {"d_ff", 704},    {"num_merges", 4000}, {"warmup", 30}};
      std::printf("== pretraining a base model into %s\n", base.c_str());
      run_pretrain(pa, command + "  (pretraining stage)");
    } else {
      std::printf("== using the base model pretrained earlier in %s\n", base.c_str());
    }
  }

  // 2. Trivial baselines.
  std::map<std::string, EvalResult> baselines;
  for (const char* k : {"latest", "query-similar"}) baselines[k] = evaluate_baseline(test, k);

  // 3. Every method x seed.
  std::map<std::string, std::vector<EvalResult>> results;  // method -> per seed
  std::map<std::string, std::vector<double>> train_seconds;
  const int64_t n_runs = int64_t(methods.size()) * seeds;
  int64_t run_no = 0;
  for (int64_t s = 1; s <= seeds; ++s) {
    for (const auto& m : methods) {
      ++run_no;
      const std::string dir = out + "/runs/" + m + "-s" + std::to_string(s);
      const std::string eval_file = dir + "/eval-test.json", pred_file = dir + "/predictions-test.jsonl";
      std::printf("== [%lld/%lld] %s, seed %lld -> %s\n", static_cast<long long>(run_no),
                  static_cast<long long>(n_runs), m.c_str(), static_cast<long long>(s), dir.c_str());
      std::fflush(stdout);
      if (fs::exists(eval_file) && fs::exists(pred_file) && fs::exists(dir + "/nextquill.json")) {
        EvalResult r;
        read_predictions(pred_file, r, "remove it and eval-test.json beside it to evaluate the run again");
        read_eval_metrics(eval_file, r);
        NQ_CHECK(r.metrics.n == test.size(), "study", dir, " was evaluated on ", r.metrics.n,
                 " test examples, this study uses ", test.size(),
                 "; remove its eval-test.json and predictions-test.jsonl to evaluate it again, or use "
                 "another --out");
        std::printf("   finished earlier: ROUGE-L %.4f\n", r.metrics.rougeL);
        results[m].push_back(std::move(r));
        train_seconds[m].push_back(read_json(dir + "/nextquill.json").value("seconds", 0.0));
        continue;
      }
      TrainOptions t;
      t.data = data, t.method = m, t.base = base, t.out = dir, t.tmpl = tmpl, t.lora = lora,
      t.epochs = epochs;
      t.batch_size = batch_size, t.max_examples = max_train, t.lr = lr, t.seed = uint64_t(s),
      t.threads = threads;
      t.delta = delta, t.lambda = lambda, t.epsilon = epsilon, t.alpha = alpha, t.stop_grad_z0 = stop_grad_z0;
      t.weight_rule = weight_rule;
      t.estimator = estimator;
      if (est_csft)
        t.estimator =
            m == "context-sft" ? "dynamic" : "fixed:" + out + "/runs/context-sft-s" + std::to_string(s);
      t.resume = fs::exists(dir + "/checkpoint.safetensors");
      if (!t.resume && fs::exists(dir + "/nextquill.json")) {
        // Trained earlier but not evaluated (or its evaluation was removed to
        // score it again, e.g. with other decoding settings): evaluate only.
        const nlohmann::json meta = read_json(dir + "/nextquill.json");
        NQ_CHECK(meta.value("method", m) == m, "study", dir, "/nextquill.json: method '",
                 meta.value("method", std::string()), "' where this study expects '", m, "'");
        std::printf("   trained earlier: evaluating only\n");
        train_seconds[m].push_back(meta.value("seconds", 0.0));
      } else {
        const TrainResult tr = run_train(t, command + "  (" + m + ", seed " + std::to_string(s) + ")");
        train_seconds[m].push_back(tr.seconds);
      }
      Run run = load_run(dir);
      EvalOptions eo;
      eo.run = dir, eo.data = data, eo.split = "test", eo.max_examples = max_test, eo.threads = threads;
      eo.max_new_tokens = max_new_tokens, eo.min_new_tokens = min_new_tokens;
      EvalResult r = evaluate_run(run, eo);
      write_predictions(pred_file, r);
      nq::io::write_file_atomic(eval_file, "study", r.summary().dump(2) + "\n");
      std::printf("   ROUGE-1 %.4f ROUGE-L %.4f BLEU %.2f METEOR %.4f PPL %.2f (train %.0f s, eval %.0f s)\n",
                  r.metrics.rouge1, r.metrics.rougeL, r.metrics.bleu, r.metrics.meteor, r.ppl,
                  train_seconds[m].back(), r.seconds);
      results[m].push_back(std::move(r));
    }
  }

  // 4. Aggregate.
  auto metric_of = [](const EvalResult& r, const std::string& k) {
    return k == "rouge1"   ? r.metrics.rouge1
           : k == "rougeL" ? r.metrics.rougeL
           : k == "bleu"   ? r.metrics.bleu
           : k == "meteor" ? r.metrics.meteor
                           : r.ppl;
  };
  nlohmann::json jm = nlohmann::json::object();
  for (const auto& m : methods) {
    for (const char* k : kMetrics) {
      std::vector<double> v;
      for (const auto& r : results[m]) v.push_back(metric_of(r, k));
      jm[m][k] = {{"mean", nq::report::mean(v)}, {"std", nq::report::stddev(v)}, {"values", v}};
    }
    jm[m]["train_seconds"] = nq::report::mean(train_seconds[m]);
  }
  nlohmann::json jb = nlohmann::json::object();
  for (const auto& [k, r] : baselines)
    for (const char* mk : {"rouge1", "rougeL", "bleu", "meteor"}) jb[k][mk] = metric_of(r, mk);

  // Paired bootstrap over test examples of the per-example ROUGE averaged over seeds.
  auto per_example = [&](const std::string& m, bool l) {
    std::vector<double> v(test.size(), 0.0);
    for (const auto& r : results[m])
      for (size_t i = 0; i < v.size(); ++i)
        v[i] += (l ? r.rougeL[i] : r.rouge1[i]) / double(results[m].size());
    return v;
  };
  nlohmann::json jsig = nlohmann::json::object();
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const char* a : {"nextquill", "nextquill-code"})
    if (results.count(a) && results.count("context-sft")) pairs.emplace_back(a, "context-sft");
  if (results.count("context-sft") && results.count("sft")) pairs.emplace_back("context-sft", "sft");
  for (const auto& [a, b] : pairs) {
    for (bool l : {false, true}) {
      const auto r = nq::report::paired_bootstrap(per_example(a, l), per_example(b, l), 10000, 1);
      jsig[a + " vs " + b][l ? "rougeL" : "rouge1"] = {
          {"diff", r.diff}, {"p_value", r.p_value}, {"ci95", {r.ci_low, r.ci_high}}, {"n", r.n}};
    }
  }

  // 5. Report: token-level inspection of the nextquill run (or the last
  // method's) of the first seed whose weights are still there, with every
  // method's loss curve of that seed. A study resumed from pruned runs (results
  // kept, weights deleted to save disk) may have none: it then says so.
  const std::string show = results.count("nextquill") ? "nextquill" : methods.back();
  int64_t show_seed = 0;
  for (int64_t s = 1; s <= seeds && show_seed == 0; ++s)
    if (fs::exists(out + "/runs/" + show + "-s" + std::to_string(s) + "/model.safetensors")) show_seed = s;
  InspectResult ir;
  ir.frac_preference = NAN;
  if (show_seed > 0) {
    const std::string sfx = "-s" + std::to_string(show_seed);
    InspectArgs ia;
    ia.run = out + "/runs/" + show + sfx;
    ia.data = data, ia.split = "test", ia.html = out + "/report.html", ia.threads = threads;
    ia.title = "nextquill study: " + data;
    for (const auto& m : methods)
      if (fs::exists(out + "/runs/" + m + sfx + "/losses.tsv"))
        ia.loss_logs.emplace_back(m, out + "/runs/" + m + sfx + "/losses.tsv");
    ir = run_inspect(ia);
  } else {
    std::printf("no token-level report: no %s run of this study has its weights (model.safetensors)\n",
                show.c_str());
  }

  // 6. results.json and results.md.
  nlohmann::json settings = {{"data", data},
                             {"base", base},
                             {"seeds", seeds},
                             {"epochs", epochs},
                             {"max_train", max_train},
                             {"max_test", max_test},
                             {"n_test", test.size()},
                             {"lora", lora},
                             {"batch_size", batch_size},
                             {"lr", lr},
                             {"estimator", estimator},
                             {"quick", quick},
                             {"threads", threads},
                             {"command", command}};
  if (!std::isnan(delta)) settings["delta"] = delta;
  if (!std::isnan(alpha)) settings["alpha"] = alpha;
  if (!std::isnan(lambda)) settings["lambda"] = lambda;
  if (!std::isnan(epsilon)) settings["epsilon"] = epsilon;
  settings["stop_grad_z0"] = stop_grad_z0;
  if (!weight_rule.empty()) settings["weight_rule"] = weight_rule;
  settings["max_new_tokens"] = max_new_tokens;
  settings["min_new_tokens"] = min_new_tokens;
  nlohmann::json j = {{"methods", jm},
                      {"baselines", jb},
                      {"significance", jsig},
                      {"settings", settings},
                      {"report", show_seed > 0 ? nlohmann::json(ir.html) : nlohmann::json()},
                      {"frac_preference_tokens", ir.frac_preference},
                      {"seconds", total.seconds()},
                      {"finished", now_utc()}};

  std::vector<std::vector<std::string>> rows;
  for (const auto& m : methods) {
    std::vector<std::string> row = {m};
    for (const char* k : kMetrics)
      row.push_back(seeds > 1 ? nq::report::fmt_mean_std(jm[m][k]["mean"], jm[m][k]["std"], decimals(k))
                              : fmt(jm[m][k]["mean"], decimals(k)));
    rows.push_back(row);
  }
  const char* bnames[][2] = {{"latest", "trivial: latest history item"},
                             {"query-similar", "trivial: most query-similar history item"}};
  for (const auto& [k, name] : bnames) {
    std::vector<std::string> row = {name};
    for (const char* mk : {"rouge1", "rougeL", "bleu", "meteor"}) row.push_back(fmt(jb[k][mk], decimals(mk)));
    row.push_back("—");
    rows.push_back(row);
  }
  std::vector<std::string> header = {"method"};
  for (const char* n : kMetricNames) header.push_back(n);
  const std::string table = nq::report::markdown_table(header, rows, {'l', 'r', 'r', 'r', 'r', 'r'});

  std::string md = "# nextquill study: " + data + "\n\n";
  md +=
      (seeds > 1 ? "Mean ± std over " + std::to_string(seeds) + " seeds; " : std::string("One seed; ")) +
      std::to_string(test.size()) +
      " test examples. ROUGE-1/L and METEOR are 0–1, BLEU 0–100 (corpus), PPL is the teacher-forced "
      "perplexity of the gold target (per token, EOS included) under the prompt the method trains with.\n\n";
  md += table + "\n";
  if (!jsig.empty()) {
    md +=
        "Paired bootstrap over test examples (10,000 resamples; per-example ROUGE averaged over seeds; "
        "one-sided p for \"the first is better\"):\n\n";
    std::vector<std::vector<std::string>> srows;
    for (auto it = jsig.begin(); it != jsig.end(); ++it)
      for (const char* mk : {"rouge1", "rougeL"}) {
        const auto& e = it.value()[mk];
        srows.push_back({it.key(), mk == std::string("rouge1") ? "ROUGE-1" : "ROUGE-L", fmt(e["diff"], 4),
                         "[" + fmt(e["ci95"][0], 4) + ", " + fmt(e["ci95"][1], 4) + "]",
                         fmt(e["p_value"], 4)});
      }
    md += nq::report::markdown_table({"comparison", "metric", "difference", "95% CI", "p"}, srows,
                                     {'l', 'l', 'r', 'r', 'r'}) +
          "\n";
  }
  // Ablation in the layout of the paper's Table 2 (relative improvement over SFT).
  const std::vector<std::pair<std::string, std::string>> abl = {
      {"sft", "Base model (SFT, no history)"},
      {"context-sft", "Context-SFT (history in prompt)"},
      {"mce-only", "+ MCE only"},
      {"mce-dce", "+ MCE-DCE alignment"},
      {"dce-only", "+ DCE only"},
      {"nextquill", "+ Full (NextQuill)"},
      {"nextquill-code", "NextQuill (public code's loss)"}};
  if (results.count("sft")) {
    std::vector<std::vector<std::string>> arows;
    nlohmann::json jabl = nlohmann::json::array();
    const double s1 = jm["sft"]["rouge1"]["mean"], sl = jm["sft"]["rougeL"]["mean"];
    auto ri = [](double v, double b) {
      if (b <= 0) return std::string("");
      char t[32];
      std::snprintf(t, sizeof t, " (%+.1f%%)", 100.0 * (v - b) / b);
      return std::string(t);
    };
    for (const auto& [m, label] : abl) {
      if (!results.count(m)) continue;
      const double v1 = jm[m]["rouge1"]["mean"], vl = jm[m]["rougeL"]["mean"];
      arows.push_back({label, fmt(v1, 4) + (m == "sft" ? " (–)" : ri(v1, s1)),
                       fmt(vl, 4) + (m == "sft" ? " (–)" : ri(vl, sl))});
      jabl.push_back({{"method", m}, {"label", label}, {"rouge1", v1}, {"rougeL", vl}});
    }
    j["ablation"] = jabl;
    md += "Ablation (layout of the paper's Table 2; relative improvement over SFT):\n\n" +
          nq::report::markdown_table({"variant", "ROUGE-1 (RI)", "ROUGE-L (RI)"}, arows, {'l', 'r', 'r'}) +
          "\n";
  }
  md += "Settings: base `" + base + "`, " +
        (lora > 0 ? "LoRA r " + std::to_string(lora) : "full fine-tuning") + ", " + std::to_string(epochs) +
        " epoch(s), batch " + std::to_string(batch_size) + ", estimator " + estimator +
        (max_train > 0 ? ", " + std::to_string(max_train) + " train examples" : "") +
        "; greedy decoding, repetition penalty 1.2, " +
        (min_new_tokens > 0 ? std::to_string(min_new_tokens) + " to " : "at most ") +
        std::to_string(max_new_tokens) + " new tokens.\n\n";
  if (show_seed > 0)
    md += "Token-level report: `" + ir.html + "` (" + fmt(100 * ir.frac_preference, 1) +
          "% of sampled test " + "target tokens are preference-bearing under " + show + " seed " +
          std::to_string(show_seed) + ").\n\n";
  else
    md += "No token-level report: no " + show + " run of this study has its weights.\n\n";
  md += "Command: `" + command + "` (" + fmt(total.seconds() / 60, 1) + " min).\n";
  nq::io::write_file_atomic(out + "/results.json", "study", j.dump(2) + "\n");
  nq::io::write_file_atomic(out + "/results.md", "study", md);

  std::printf("\n%s\n", table.c_str());
  for (auto it = jsig.begin(); it != jsig.end(); ++it)
    std::printf("%s: ROUGE-L %+.4f (p = %.4f), ROUGE-1 %+.4f (p = %.4f)\n", it.key().c_str(),
                double(it.value()["rougeL"]["diff"]), double(it.value()["rougeL"]["p_value"]),
                double(it.value()["rouge1"]["diff"]), double(it.value()["rouge1"]["p_value"]));
  std::printf("\nresults: %s/results.md, %s/results.json\nreport:  %s\n(%.1f min)\n", out.c_str(),
              out.c_str(), show_seed > 0 ? ir.html.c_str() : "(none: no run with weights)",
              total.seconds() / 60);
  return 0;
}

}  // namespace nqcli
