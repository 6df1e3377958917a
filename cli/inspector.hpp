#pragma once
// The inspector behind `nextquill inspect` and the study's report: for
// sampled users, each target token's data-side effect (DCE), weight and
// model-side effect at the gold token, the model's generations with and
// without history, and SVG plots of training losses and of the DCE
// distribution, in one self-contained HTML page.
#include <string>
#include <utility>
#include <vector>

namespace nqcli {

struct InspectArgs {
  std::string run, data, split = "test", html;
  // DCE estimator: empty = the run's own (its fixed estimator if it was
  // trained with one, else the run itself, as the dynamic estimator sees it
  // at the end of training).
  std::string estimator;
  int64_t users = 8, dce_examples = 300, max_new_tokens = 48;
  int threads = 1;
  uint64_t seed = 1;
  // Loss curves to plot: (label, losses.tsv path). Empty: the run's own.
  std::vector<std::pair<std::string, std::string>> loss_logs;
  std::string title;
  bool quiet = false;
};

struct InspectResult {
  std::string html, loss_svg, dce_svg;  // written files
  double frac_preference = 0;           // of the DCE sample's target tokens
  // The run's mean cross-entropy (with history, nats) on the sample's
  // preference-bearing tokens and on the others; NaN where there are none.
  double ce_preference = 0, ce_other = 0;
  int64_t tokens = 0;
};

InspectResult run_inspect(const InspectArgs& a);

}  // namespace nqcli
