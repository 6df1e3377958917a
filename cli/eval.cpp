// nextquill eval: generates for every example of a split with a trained run
// and reports ROUGE-1, ROUGE-L, BLEU, METEOR and the target perplexity.
#include <cstdio>

#include "args.hpp"
#include "commands.hpp"
#include "evaluator.hpp"

namespace nqcli {

int cmd_eval(int argc, char** argv) {
  EvalOptions o;
  o.threads = default_threads();
  bool json = false;
  ArgParser p("nextquill eval",
              "Generates a target for every example of DIR/<split>.jsonl with the model of RUN (greedy,\n"
              "repetition penalty on generated tokens) and scores it against the gold target: ROUGE-1 and\n"
              "ROUGE-L F (rouge-score semantics, 0-1), corpus BLEU (sacrebleu, 0-100), METEOR (nltk, 0-1),\n"
              "and the teacher-forced perplexity of the gold target. The prompt holds the user's history\n"
              "unless the run's method is sft. Predictions go to RUN/predictions-<split>.jsonl and the\n"
              "scores to RUN/eval-<split>.json.");
  p.add("--run", &o.run, "RUN", "a run from nextquill train (or pretrain, or a HF model directory)")
      .required();
  p.add("--data", &o.data, "DIR", "dataset directory").required();
  p.add("--split", &o.split, "S", "valid or test");
  p.flag("--json", &json, "print one JSON object {rouge1, rougeL, bleu, meteor, ppl, n} on stdout");
  p.add("--max-examples", &o.max_examples, "N", "evaluate a fixed subset of N examples (0: all)");
  p.add("--max-new-tokens", &o.max_new_tokens, "N", "generation length limit");
  p.add("--min-new-tokens", &o.min_new_tokens, "N", "no EOS before N new tokens (0: off)");
  p.add("--repetition-penalty", &o.repetition_penalty, "P", "1 = off");
  p.add("--batch-size", &o.batch_size, "B", "examples generated together");
  p.add("--template", &o.tmpl, "T", "override the run's prompt template (preset name or file)");
  p.add("--history", &o.use_history, "H", "auto (as trained), yes or no: history in the prompt");
  p.add("--threads", &o.threads, "N", "CPU threads");
  if (!p.parse(argc, argv, 2)) return 0;
  require(o.split == "valid" || o.split == "test", p.prog(),
          "--split must be valid or test, got '" + o.split + "'");
  require(o.min_new_tokens >= 0 && o.min_new_tokens <= o.max_new_tokens, p.prog(),
          "--min-new-tokens must be in [0, --max-new-tokens]");
  require(o.batch_size >= 1, p.prog(), "--batch-size must be >= 1");
  require(o.repetition_penalty > 0, p.prog(), "--repetition-penalty must be > 0");
  require(o.threads >= 1, p.prog(), "--threads must be >= 1");
  o.quiet = json;

  Run run = load_run(o.run);
  const EvalResult r = evaluate_run(run, o);
  write_predictions(o.run + "/predictions-" + o.split + ".jsonl", r);
  nlohmann::json s = r.summary();
  nq::io::write_file_atomic(o.run + "/eval-" + o.split + ".json", "eval", s.dump(2) + "\n");
  if (json) {
    std::printf("%s\n", s.dump().c_str());
    return 0;
  }
  std::printf("\n%s on %s/%s (%zu examples, %.0f s):\n", o.run.c_str(), o.data.c_str(), o.split.c_str(),
              r.metrics.n, r.seconds);
  std::printf("  ROUGE-1 %.4f  ROUGE-L %.4f  BLEU %.2f  METEOR %.4f%s  perplexity %.2f\n", r.metrics.rouge1,
              r.metrics.rougeL, r.metrics.bleu, r.metrics.meteor, r.metrics.wordnet ? "" : " (no WordNet)",
              r.ppl);
  std::printf("predictions: %s/predictions-%s.jsonl\n", o.run.c_str(), o.split.c_str());
  return 0;
}

}  // namespace nqcli
