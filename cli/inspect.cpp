// nextquill inspect: a self-contained HTML page of token-level preference
// effects for sampled users, with SVG plots of the training loss and of the
// DCE distribution written beside it.
#include <cstdio>

#include "args.hpp"
#include "commands.hpp"
#include "inspector.hpp"

namespace nqcli {

int cmd_inspect(int argc, char** argv) {
  InspectArgs a;
  a.threads = default_threads();
  ArgParser p(
      "nextquill inspect",
      "Writes OUT.html: for sampled users of the split, the gold target with every token coloured by\n"
      "its data-side effect DCE (from the run's estimator) and marked where it is preference-bearing\n"
      "(DCE > delta), with its weight and model-side effect in a tooltip, next to the model's\n"
      "generations with and without the user's history. OUT-loss.svg (training loss) and OUT-dce.svg\n"
      "(DCE histogram) are written beside it and embedded in the page.");
  p.add("--run", &a.run, "RUN", "a run from nextquill train").required();
  p.add("--data", &a.data, "DIR", "dataset directory").required();
  p.add("--split", &a.split, "S", "train, valid or test");
  p.add("--html", &a.html, "OUT.html", "output page").required();
  p.add("--users", &a.users, "N", "users to show");
  p.add("--estimator", &a.estimator, "RUN", "DCE estimator run (default: the run's own estimator)");
  p.add("--dce-examples", &a.dce_examples, "N",
        "examples whose target tokens feed the DCE histogram and the cross-entropy split");
  p.add("--seed", &a.seed, "S", "which users are sampled");
  p.add("--threads", &a.threads, "N", "CPU threads");
  if (!p.parse(argc, argv, 2)) return 0;
  require(a.users >= 1, p.prog(), "--users must be >= 1");
  require(a.dce_examples >= 1, p.prog(), "--dce-examples must be >= 1");
  require(a.threads >= 1, p.prog(), "--threads must be >= 1");
  const InspectResult r = run_inspect(a);
  std::printf(
      "%.1f%% of %lld target tokens are preference-bearing\n"
      "cross-entropy of the run (with history): %.4f nats on preference-bearing tokens, %.4f on "
      "the others\nreport: %s\nplots:  %s, %s\n",
      100 * r.frac_preference, static_cast<long long>(r.tokens), r.ce_preference, r.ce_other, r.html.c_str(),
      r.loss_svg.c_str(), r.dce_svg.c_str());
  return 0;
}

}  // namespace nqcli
