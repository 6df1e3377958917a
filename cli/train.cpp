// nextquill train: personalizes a base run with one method (a NextQuill
// preset) on DIR/train.jsonl; full fine-tuning or LoRA; atomic checkpoints
// and exact resume.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "args.hpp"
#include "commands.hpp"
#include "dataset.hpp"
#include "run_dir.hpp"
#include "train_options.hpp"

namespace nqcli {

int cmd_train(int argc, char** argv) {
  TrainOptions o;
  o.threads = default_threads();
  ArgParser p("nextquill train",
              "Personalizes the base model of --base on DIR/train.jsonl with one method and writes the\n"
              "personalized model to RUN (Hugging Face layout + tokenizer + nextquill.json), its loss log\n"
              "(losses.tsv) and, while training, checkpoint.safetensors (--resume continues from it).");
  add_train_flags(p, o);
  if (!p.parse(argc, argv, 2)) return 0;
  o.check(p.prog());
  const TrainResult r = run_train(o, command_line(argc, argv));
  if (r.stopped) return 0;
  std::printf("trained %s: %lld steps in %.0f s, final loss %.4f; model written to %s\n", o.method.c_str(),
              static_cast<long long>(r.steps), r.seconds, r.final_loss, o.out.c_str());
  if (r.nan_skipped > 0)
    std::printf("note: %lld step(s) had a NaN/Inf loss or gradient and made no update (--nan-policy skip)\n",
                static_cast<long long>(r.nan_skipped));
  return 0;
}

}  // namespace nqcli
