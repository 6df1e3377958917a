#include "inspector.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nextquill/report/report.hpp>
#include <set>
#include <sstream>

#include "dataset.hpp"
#include "evaluator.hpp"
#include "run_dir.hpp"

namespace nqcli {

namespace {

// The "loss" column of a losses.tsv (pretrain or train), smoothed with an EMA.
nq::report::Series read_loss_curve(const std::string& label, const std::string& path) {
  nq::report::Series s;
  s.name = label;
  std::ifstream in(path);
  if (!in) return s;
  std::string line;
  std::getline(in, line);
  std::vector<std::string> cols;
  {
    std::stringstream h(line);
    std::string c;
    while (std::getline(h, c, '\t')) cols.push_back(c);
  }
  const auto it = std::find(cols.begin(), cols.end(), "loss");
  if (it == cols.end()) return s;
  const size_t li = size_t(it - cols.begin());
  double ema = NAN;
  while (std::getline(in, line)) {
    std::stringstream ls(line);
    std::string c;
    std::vector<std::string> v;
    while (std::getline(ls, c, '\t')) v.push_back(c);
    if (v.size() <= li) continue;
    const double step = std::atof(v[0].c_str()), loss = std::atof(v[li].c_str());
    if (!std::isfinite(loss)) continue;  // a step skipped by --nan-policy skip
    ema = std::isnan(ema) ? loss : 0.9 * ema + 0.1 * loss;
    s.x.push_back(step);
    s.y.push_back(ema);
  }
  return s;
}

}  // namespace

InspectResult run_inspect(const InspectArgs& a) {
  nq::set_num_threads(a.threads);
  Run run = load_run(a.run);
  nq::CausalLM& model = *run.model;
  model.eval();
  const int64_t ctx = model.config().max_seq_len;

  // The method's weighting rule; runs without one (sft, context-sft) are
  // shown with the default threshold rule so the page still marks tokens.
  const std::string method = run.meta.value("method", std::string("nextquill"));
  nq::causal::NextQuillOptions opts = nq::causal::NextQuillOptions::preset(
      nq::causal::NextQuillOptions::preset(method).rule == nq::causal::WeightRule::Uniform ? "nextquill"
                                                                                           : method);
  if (run.meta.contains("method_options")) {
    const auto& mo = run.meta.at("method_options");
    opts.delta = mo.value("delta", opts.delta);
    if (opts.rule != nq::causal::WeightRule::Uniform) {
      opts.lambda = mo.value("lambda", opts.lambda);
      opts.epsilon = mo.value("epsilon", opts.epsilon);
    }
  }
  std::string est_dir = a.estimator;
  const std::string run_est = run.meta.value("estimator", std::string("dynamic"));
  if (est_dir.empty() && run_est.rfind("fixed:", 0) == 0) est_dir = run_est.substr(6);
  Run est_run;
  nq::CausalLM* est = &model;
  if (!est_dir.empty() && est_dir != a.run) {
    est_run = load_run(est_dir);
    NQ_CHECK(est_run.tok.vocab_size() == run.tok.vocab_size(), "inspect", "estimator ", est_dir,
             " has a different tokenizer from ", a.run);
    est = est_run.model.get();
    est->eval();
  }

  const nq::data::PromptTemplate tpl = run_template(run, a.data);
  const auto examples = load_split(a.data, a.split, 0);
  const nq::data::PromptBuilder builder(run.tok, tpl, ctx);
  const int32_t eos = builder.eos_id();

  // DCE over a fixed sample of the split, for the histogram.
  const auto sample = subset(examples, a.dce_examples);
  const auto enc_sample = builder.encode_all(sample);
  // On the same tokens, the run's own cross-entropy (with history) split by
  // the estimator's mark: does a weighted method learn the preference-bearing
  // tokens better than the others, and at what cost?
  std::vector<double> dce_all;
  int64_t pref = 0;
  double nll_pref = 0, nll_other = 0;
  for (size_t i = 0; i < enc_sample.size(); i += 32) {
    std::vector<nq::data::EncodedExample> part(
        enc_sample.begin() + int64_t(i), enc_sample.begin() + int64_t(std::min(enc_sample.size(), i + 32)));
    auto b = nq::data::collate_pairs(part, eos, nq::data::PadSide::Right, ctx);
    const auto est_rows = nq::causal::inspect(*est, b, opts);
    std::vector<std::vector<nq::causal::TokenEffect>> own_rows;  // only when the estimator is another model
    if (est != &model) own_rows = nq::causal::inspect(model, b, opts);
    const auto& run_rows = est == &model ? est_rows : own_rows;
    for (size_t r = 0; r < est_rows.size(); ++r)
      for (size_t k = 0; k < est_rows[r].size(); ++k) {
        const auto& t = est_rows[r][k];
        dce_all.push_back(t.dce);
        pref += t.preference;
        (t.preference ? nll_pref : nll_other) += -std::log(std::max(run_rows[r][k].p_h, 1e-300));
      }
  }
  const int64_t n_other = int64_t(dce_all.size()) - pref;
  const double ce_pref = pref > 0 ? nll_pref / double(pref) : NAN,
               ce_other = n_other > 0 ? nll_other / double(n_other) : NAN;

  // Sampled users: the first test example of `users` distinct users.
  std::vector<std::string> user_order;
  {
    std::set<std::string> seen;
    for (const auto& ex : examples)
      if (seen.insert(ex.user).second) user_order.push_back(ex.user);
    nq::Generator g(a.seed);
    for (size_t i = user_order.size(); i > 1; --i) std::swap(user_order[i - 1], user_order[g.next_u64() % i]);
    if (int64_t(user_order.size()) > a.users) user_order.resize(size_t(a.users));
  }
  std::vector<nq::data::Example> shown;
  for (const auto& u : user_order)
    for (const auto& ex : examples)
      if (ex.user == u) {
        shown.push_back(ex);
        break;
      }

  nq::report::InspectPage page;
  page.title = a.title.empty() ? "nextquill inspect: " + a.run : a.title;
  page.subtitle =
      "Target tokens coloured by the data-side causal preference effect DCE = p(y_t | x, h, y<t) - "
      "p(y_t | x, no history, y<t); tokens with DCE > delta are preference-bearing.";
  page.delta = opts.delta;
  page.info = {
      {"run", a.run},
      {"method", method},
      {"estimator", est_dir.empty() ? a.run + " (the run itself)" : est_dir},
      {"data", a.data + " (" + a.split + ")"},
      {"weights", "threshold: lambda " + nq::report::fmt(opts.lambda, 2) + " if DCE > " +
                      nq::report::fmt(opts.delta, 3) + ", else epsilon " + nq::report::fmt(opts.epsilon, 2)},
      {"preference-bearing",
       nq::report::fmt(100.0 * double(pref) / double(std::max<size_t>(1, dce_all.size())), 1) + "% of " +
           std::to_string(dce_all.size()) + " target tokens of " + std::to_string(sample.size()) +
           " examples"},
      {"cross-entropy of the run (with history)", "preference-bearing tokens " + nq::report::fmt(ce_pref, 3) +
                                                      ", other tokens " + nq::report::fmt(ce_other, 3) +
                                                      " nats (same sample)"}};
  if (!shown.empty()) {
    const auto enc = builder.encode_all(shown);
    auto b = nq::data::collate_pairs(enc, eos, nq::data::PadSide::Right, ctx);
    const auto effects = nq::causal::inspect(*est, b, opts);
    const nq::GenerationOptions go = eval_generation(eos, std::min<int64_t>(a.max_new_tokens, ctx / 2));
    auto gen_h = nq::generate(model, nq::data::generation_prompts(enc, true, ctx - go.max_new_tokens), go);
    auto gen_0 = nq::generate(model, nq::data::generation_prompts(enc, false, ctx - go.max_new_tokens), go);
    for (size_t i = 0; i < shown.size(); ++i) {
      nq::report::InspectExample e;
      e.user = shown[i].user;
      e.query = shown[i].query;
      e.history = shown[i].history;
      for (const auto& t : effects[i]) {
        nq::report::TokenCell c;
        c.text = t.token == eos ? "⏎EOS" : run.tok.decode(std::vector<int32_t>{int32_t(t.token)});
        c.dce = t.dce, c.weight = t.weight, c.mce = t.mce_gold, c.preference_bearing = t.preference;
        e.target.push_back(std::move(c));
      }
      e.generated_with_history = generated_text(run.tok, gen_h.tokens[i], eos);
      e.generated_without_history = generated_text(run.tok, gen_0.tokens[i], eos);
      page.examples.push_back(std::move(e));
    }
  }

  // Plots, written beside the page and embedded in it.
  const fs::path html(a.html);
  const fs::path dir = html.has_parent_path() ? html.parent_path() : fs::path(".");
  make_out_dir(dir.string());
  const std::string stem = html.stem().string();
  std::vector<nq::report::Series> curves;
  if (a.loss_logs.empty())
    curves.push_back(read_loss_curve(method, a.run + "/losses.tsv"));
  else
    for (const auto& [label, path] : a.loss_logs) curves.push_back(read_loss_curve(label, path));
  nq::report::PlotOptions lp;
  lp.title = "Training loss (EMA 0.9)";
  lp.xlabel = "step";
  lp.ylabel = "loss";
  const std::string loss_svg = nq::report::line_plot_svg(curves, lp);
  nq::report::PlotOptions hp;
  hp.title = "DCE of target tokens (" + std::to_string(dce_all.size()) + " tokens)";
  hp.xlabel = "DCE = p(y|x,h) - p(y|x,no history)";
  hp.ylabel = "tokens";
  const std::string dce_svg = nq::report::histogram_svg({{"target tokens", dce_all}}, 50, hp, opts.delta,
                                                        "delta = " + nq::report::fmt(opts.delta, 3));
  InspectResult r;
  r.loss_svg = (dir / (stem + "-loss.svg")).string();
  r.dce_svg = (dir / (stem + "-dce.svg")).string();
  nq::io::write_file_atomic(r.loss_svg, "inspect", loss_svg);
  nq::io::write_file_atomic(r.dce_svg, "inspect", dce_svg);
  page.figures = {
      {"Training loss per step (exponential moving average)", loss_svg},
      {"Distribution of the data-side effect over target tokens; the dashed line is delta", dce_svg}};
  nq::io::write_file_atomic(a.html, "inspect", nq::report::inspect_html(page));
  r.html = a.html;
  r.tokens = int64_t(dce_all.size());
  r.frac_preference = dce_all.empty() ? 0 : double(pref) / double(dce_all.size());
  r.ce_preference = ce_pref, r.ce_other = ce_other;
  return r;
}

}  // namespace nqcli
