#pragma once
// Evaluation behind `nextquill eval` and `nextquill study`: generate for a
// split (greedy, repetition penalty on generated tokens), score ROUGE-1/L,
// BLEU, METEOR, and the teacher-forced perplexity of the gold targets.
#include <nextquill/nextquill.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "run_dir.hpp"

namespace nqcli {

struct EvalOptions {
  std::string run, data, split = "test", tmpl;  // tmpl empty: the run's own template
  int64_t max_examples = 0, max_new_tokens = 48, min_new_tokens = 0, batch_size = 32;
  double repetition_penalty = 1.2;
  int threads = 1;
  bool quiet = false;
  std::string use_history = "auto";  // auto (the run's method), yes, no
};

struct EvalResult {
  nq::eval::MetricReport metrics;
  double ppl = 0;
  std::vector<std::string> users, predictions, references;
  std::vector<double> rouge1, rougeL;  // per example
  double seconds = 0;

  nlohmann::json summary() const {
    return {{"rouge1", metrics.rouge1},
            {"rougeL", metrics.rougeL},
            {"bleu", metrics.bleu},
            {"meteor", metrics.meteor},
            {"ppl", ppl},
            {"n", metrics.n}};
  }
};

// The prompt template a run was trained with (its nextquill.json), unless
// `override` names one (a preset or file); a plain model directory gets the
// dataset's (resolve_template "auto").
nq::data::PromptTemplate run_template(const Run& run, const std::string& data_dir,
                                      const std::string& override = "");

// How eval decodes: greedy, repetition penalty on generated tokens only
// (the prompt's history and file names are meant to be reused), EOS stops
// (not before min_new_tokens).
nq::GenerationOptions eval_generation(int32_t eos, int64_t max_new_tokens, double repetition_penalty = 1.2,
                                      int64_t min_new_tokens = 0);

// Generated ids as text: EOS dropped, surrounding whitespace trimmed.
std::string generated_text(const nq::data::BPETokenizer& tok, const std::vector<int64_t>& ids, int32_t eos);

// Evaluates an already loaded run (the study keeps models in memory).
EvalResult evaluate_run(Run& run, const EvalOptions& o);

// Trivial predictors scored with the same metrics: "latest" (the user's most
// recent history item) and "query-similar" (the history item sharing most
// words with the query).
EvalResult evaluate_baseline(const std::vector<nq::data::Example>& examples, const std::string& kind);

// Per-example predictions with their scores, one JSON object per line.
void write_predictions(const std::string& path, const EvalResult& r);
// Reads them back (users, predictions, references, per-example ROUGE); a
// damaged line is named, followed by `hint` (what to do about it).
void read_predictions(const std::string& path, EvalResult& r, const std::string& hint);

}  // namespace nqcli
