#pragma once
// The subcommands of the nextquill executable; each parses argv[2..] itself.
#include <thread>

namespace nqcli {

int cmd_pretrain(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_study(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_compare(int argc, char** argv);

// All hardware threads by default (2 on the CI machine).
inline int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

}  // namespace nqcli
