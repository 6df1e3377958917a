// Subcommands still being written (this file goes away as each lands).
#include <cstdio>

#include "commands.hpp"
namespace nqcli {
static int todo(const char* name) {
  std::fprintf(stderr, "error: nextquill %s is not available in this build yet\n", name);
  return 1;
}
int cmd_train(int, char**) { return todo("train"); }
int cmd_eval(int, char**) { return todo("eval"); }
int cmd_study(int, char**) { return todo("study"); }
int cmd_inspect(int, char**) { return todo("inspect"); }
}  // namespace nqcli
