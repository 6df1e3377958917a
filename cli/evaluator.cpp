#include "evaluator.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <set>

#include "dataset.hpp"

namespace nqcli {

namespace {

bool run_uses_history(const Run& run, const std::string& flag) {
  if (flag == "yes") return true;
  if (flag == "no") return false;
  NQ_CHECK(flag == "auto", "eval", "--history must be auto, yes or no, got '", flag, "'");
  return !run.meta.contains("use_history") || run.meta.at("use_history").get<bool>();
}

void score(EvalResult& r) {
  r.metrics = nq::eval::evaluate_texts(r.predictions, r.references);
  const auto rs = nq::eval::rouge_scores(r.predictions, r.references);
  r.rouge1.clear(), r.rougeL.clear();
  for (const auto& s : rs) r.rouge1.push_back(s.rouge1), r.rougeL.push_back(s.rougeL);
}

}  // namespace

nq::data::PromptTemplate run_template(const Run& run, const std::string& data_dir,
                                      const std::string& override) {
  if (!override.empty()) return resolve_template(override, data_dir);
  if (run.meta.contains("template"))
    return nq::data::PromptTemplate::from_json(run.meta.at("template"),
                                               run.dir + "/nextquill.json: template");
  return resolve_template("auto", data_dir);
}

nq::GenerationOptions eval_generation(int32_t eos, int64_t max_new_tokens, double repetition_penalty,
                                      int64_t min_new_tokens) {
  nq::GenerationOptions go;
  go.max_new_tokens = max_new_tokens;
  go.min_new_tokens = min_new_tokens;
  go.sampling.repetition_penalty = repetition_penalty;
  go.penalize_prompt = false;
  go.eos_ids = {eos};
  go.pad_id = eos;
  return go;
}

std::string generated_text(const nq::data::BPETokenizer& tok, const std::vector<int64_t>& ids, int32_t eos) {
  std::vector<int32_t> v;
  for (int64_t t : ids)
    if (t != eos) v.push_back(int32_t(t));
  const std::string s = tok.decode(v);
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

EvalResult evaluate_run(Run& run, const EvalOptions& o) {
  Stopwatch sw;
  nq::set_num_threads(o.threads);
  nq::CausalLM& model = *run.model;
  model.eval();
  const int64_t ctx = model.config().max_seq_len;
  NQ_CHECK(o.max_new_tokens >= 1 && o.max_new_tokens < ctx, "eval", "max_new_tokens must be in [1, ", ctx,
           "), got ", o.max_new_tokens);
  NQ_CHECK(o.min_new_tokens >= 0 && o.min_new_tokens <= o.max_new_tokens, "eval",
           "min_new_tokens must be in [0, ", o.max_new_tokens, "] (max_new_tokens), got ", o.min_new_tokens);
  const bool hist = run_uses_history(run, o.use_history);
  const auto examples = load_split(o.data, o.split, o.max_examples);
  const nq::data::PromptBuilder builder(run.tok, run_template(run, o.data, o.tmpl), ctx);
  const auto enc = builder.encode_all(examples);
  const int64_t N = int64_t(enc.size());
  const int32_t eos = builder.eos_id();

  EvalResult r;
  for (const auto& ex : examples) r.users.push_back(ex.user), r.references.push_back(ex.target);
  r.predictions.assign(size_t(N), "");

  // Teacher-forced perplexity of the gold targets (EOS included) under the
  // prompt the method uses.
  double nll = 0;
  int64_t ntok = 0;
  {
    nq::NoGradGuard ng;
    for (int64_t i = 0; i < N; i += o.batch_size) {
      std::vector<nq::data::EncodedExample> part(enc.begin() + i,
                                                 enc.begin() + std::min(N, i + o.batch_size));
      auto b = nq::data::collate_pairs(part, eos, nq::data::PadSide::Right, ctx);
      nq::Tensor z = hist ? nq::causal::target_logits(model, b.ids_h, b.mask_h, b.rows_h)
                          : nq::causal::target_logits(model, b.ids_0, b.mask_0, b.rows_0);
      const auto lp = nq::causal::gold_logprob(z, b.targets).to_vector<double>();
      for (double v : lp) nll -= v;
      ntok += int64_t(lp.size());
    }
  }
  r.ppl = std::exp(nll / double(std::max<int64_t>(ntok, 1)));

  // Generation: longest prompts first in batches of similar length (less padding).
  std::vector<int64_t> order(static_cast<size_t>(N));
  std::iota(order.begin(), order.end(), int64_t{0});
  auto plen = [&](int64_t i) { return (hist ? enc[size_t(i)].prompt_h : enc[size_t(i)].prompt_0).size(); };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return plen(a) > plen(b); });
  const nq::GenerationOptions go =
      eval_generation(eos, o.max_new_tokens, o.repetition_penalty, o.min_new_tokens);
  std::unique_ptr<nq::ProgressBar> bar;
  if (!o.quiet) bar = std::make_unique<nq::ProgressBar>(N, "generate " + o.split);
  for (int64_t i = 0; i < N; i += o.batch_size) {
    const int64_t n = std::min(o.batch_size, N - i);
    std::vector<nq::data::EncodedExample> part;
    for (int64_t k = 0; k < n; ++k) part.push_back(enc[size_t(order[size_t(i + k)])]);
    // Keep room for the new tokens inside the context.
    auto prompts = nq::data::generation_prompts(part, hist, ctx - o.max_new_tokens);
    auto res = nq::generate(model, prompts, go);
    for (int64_t k = 0; k < n; ++k)
      r.predictions[size_t(order[size_t(i + k)])] = generated_text(run.tok, res.tokens[size_t(k)], eos);
    if (bar) bar->update(i + n, "", 0, "");
  }
  if (bar) bar->finish();
  score(r);
  r.seconds = sw.seconds();
  return r;
}

EvalResult evaluate_baseline(const std::vector<nq::data::Example>& examples, const std::string& kind) {
  NQ_CHECK(kind == "latest" || kind == "query-similar", "baseline", "unknown baseline '", kind, "'");
  EvalResult r;
  for (const auto& ex : examples) {
    std::string pred;
    if (!ex.history.empty()) {
      if (kind == "latest") {
        pred = ex.history.back();
      } else {
        // Most shared (distinct, lowercase alphanumeric) words with the query;
        // ties go to the most recent item.
        const auto qt = nq::eval::rouge_tokenize(ex.query);
        const std::set<std::string> q(qt.begin(), qt.end());
        size_t best = 0;
        pred = ex.history.back();
        for (size_t i = ex.history.size(); i-- > 0;) {
          const auto ht = nq::eval::rouge_tokenize(ex.history[i]);
          const std::set<std::string> h(ht.begin(), ht.end());
          size_t c = 0;
          for (const auto& w : h) c += q.count(w);
          if (c > best) best = c, pred = ex.history[i];
        }
      }
    }
    r.users.push_back(ex.user);
    r.predictions.push_back(pred);
    r.references.push_back(ex.target);
  }
  score(r);
  r.ppl = NAN;
  return r;
}

void write_predictions(const std::string& path, const EvalResult& r) {
  std::string out;
  for (size_t i = 0; i < r.predictions.size(); ++i) {
    nlohmann::json j = {{"user", r.users[i]},
                        {"prediction", r.predictions[i]},
                        {"reference", r.references[i]},
                        {"rouge1", r.rouge1[i]},
                        {"rougeL", r.rougeL[i]}};
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  nq::io::write_file_atomic(path, "eval", out);
}

void read_predictions(const std::string& path, EvalResult& r, const std::string& hint) {
  std::ifstream in(path);
  if (!in) nq::fail("predictions", "cannot read '", path, "'");
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    try {
      auto j = nlohmann::json::parse(line);
      r.users.push_back(j.at("user"));
      r.predictions.push_back(j.at("prediction"));
      r.references.push_back(j.at("reference"));
      r.rouge1.push_back(j.at("rouge1"));
      r.rougeL.push_back(j.at("rougeL"));
    } catch (const nlohmann::json::exception& e) {
      nq::fail("predictions", path, " line ", line_no, ": ", e.what(), "; ", hint);
    }
  }
}

}  // namespace nqcli
