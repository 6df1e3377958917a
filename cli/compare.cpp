// nextquill compare: is run A better than run B on the same examples? A paired
// bootstrap over the per-example ROUGE scores that `eval` (or `study`) wrote,
// the same test the study reports for nextquill vs context-sft.
#include <cstdio>
#include <filesystem>
#include <nextquill/report/stats.hpp>

#include "args.hpp"
#include "commands.hpp"
#include "evaluator.hpp"

namespace nqcli {

namespace {

// A run directory (its predictions-<split>.jsonl) or a predictions file.
EvalResult load_scores(const std::string& what, const std::string& split, const std::string& flag) {
  namespace fs = std::filesystem;
  const std::string path =
      fs::is_directory(what) ? (fs::path(what) / ("predictions-" + split + ".jsonl")).string() : what;
  if (!fs::exists(what)) nq::fail("compare", flag, " ", what, ": no such run directory or predictions file");
  if (!fs::exists(path))
    nq::fail("compare", flag, " ", what, ": no ", path, " (run `nextquill eval --run ", what, " --split ",
             split, "` first)");
  EvalResult r;
  read_predictions(path, r, "evaluate the run again to rewrite it");
  if (r.predictions.empty()) nq::fail("compare", path, ": no predictions");
  return r;
}

}  // namespace

int cmd_compare(int argc, char** argv) {
  std::string a, b, split = "test";
  int64_t iterations = 10000, seed = 1;
  bool json = false;
  ArgParser p("nextquill compare",
              "Paired bootstrap of two evaluations on the same examples: run A's per-example ROUGE-1 and\n"
              "ROUGE-L against run B's (from RUN/predictions-<split>.jsonl, written by eval and study).\n"
              "Prints the mean difference A - B, its 95% interval, and the one-sided p-value for \"A is\n"
              "better\". The two files must hold the same references in the same order.");
  p.add("--a", &a, "RUN|FILE", "run directory or predictions file of system A").required();
  p.add("--b", &b, "RUN|FILE", "run directory or predictions file of system B").required();
  p.add("--split", &split, "S", "valid or test (for run directories)");
  p.add("--iterations", &iterations, "N", "bootstrap resamples");
  p.add("--seed", &seed, "S", "resampling seed");
  p.flag("--json", &json, "print one JSON object on stdout");
  if (!p.parse(argc, argv, 2)) return 0;
  require(split == "valid" || split == "test", p.prog(),
          "--split must be valid or test, got '" + split + "'");
  require(iterations >= 100, p.prog(), "--iterations must be >= 100");
  require(seed >= 0, p.prog(), "--seed must be >= 0");

  const EvalResult ra = load_scores(a, split, "--a"), rb = load_scores(b, split, "--b");
  NQ_CHECK(ra.references.size() == rb.references.size(), "compare", "--a has ", ra.references.size(),
           " examples but --b has ", rb.references.size(), ": not the same evaluation set");
  for (size_t i = 0; i < ra.references.size(); ++i)
    NQ_CHECK(ra.references[i] == rb.references[i] && ra.users[i] == rb.users[i], "compare", "example ", i + 1,
             " differs (user '", ra.users[i], "' vs '", rb.users[i],
             "'): not the same examples in the same order");

  nlohmann::json out = {{"a", a}, {"b", b}, {"n", ra.references.size()}};
  for (bool l : {false, true}) {
    const auto& va = l ? ra.rougeL : ra.rouge1;
    const auto& vb = l ? rb.rougeL : rb.rouge1;
    const auto r = nq::report::paired_bootstrap(va, vb, iterations, uint64_t(seed));
    out[l ? "rougeL" : "rouge1"] = {{"a", nq::report::mean(va)},
                                    {"b", nq::report::mean(vb)},
                                    {"diff", r.diff},
                                    {"ci95", {r.ci_low, r.ci_high}},
                                    {"p_value", r.p_value}};
  }
  if (json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("A = %s\nB = %s\n%zu paired examples, %lld bootstrap resamples\n\n", a.c_str(), b.c_str(),
              ra.references.size(), static_cast<long long>(iterations));
  std::printf("%-8s %8s %8s %9s %22s %8s\n", "metric", "A", "B", "A - B", "95% interval", "p(A>B)");
  for (const char* k : {"rouge1", "rougeL"}) {
    const auto& e = out[k];
    std::printf("%-8s %8.4f %8.4f %+9.4f   [%+8.4f, %+8.4f] %8.4f\n",
                k == std::string("rouge1") ? "ROUGE-1" : "ROUGE-L", double(e["a"]), double(e["b"]),
                double(e["diff"]), double(e["ci95"][0]), double(e["ci95"][1]), double(e["p_value"]));
  }
  return 0;
}

}  // namespace nqcli
