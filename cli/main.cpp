// nextquill: the command-line tool. One subcommand per job of a
// personalization study; `nextquill <command> --help` documents each.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <nextquill/version.hpp>
#include <string>

#include "args.hpp"
#include "commands.hpp"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"pretrain", nqcli::cmd_pretrain, "train a tokenizer and a base language model on a text corpus"},
    {"train", nqcli::cmd_train,
     "personalize a base model with one method (sft, context-sft, nextquill, ...)"},
    {"eval", nqcli::cmd_eval, "generate for a split and score ROUGE-1/L, BLEU, METEOR and perplexity"},
    {"study", nqcli::cmd_study, "train every method for every seed, evaluate, and write the report"},
    {"inspect", nqcli::cmd_inspect, "an HTML page of token-level preference effects, plus plots"},
    {"compare", nqcli::cmd_compare,
     "paired bootstrap: is run A's ROUGE better than run B's on the same examples"},
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: nextquill <command> [options]\n\n"
               "Causal preference modeling for personalizing language models (nextquill %s).\n\n"
               "commands:\n",
               nq::version_string);
  for (const auto& c : kCommands) std::fprintf(f, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(f, "\n`nextquill <command> --help` lists each command's options; docs/cli.md has examples.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage(stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("nextquill %s\n", nq::version_string);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (cmd != c.name) continue;
    try {
      return c.run(argc, argv);
    } catch (const nqcli::UsageError& e) {
      std::fprintf(stderr, "error: %s\n(see nextquill %s --help)\n", e.what(), c.name);
      return 2;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "error: out of memory (a size in the input files or the flags is too large)\n");
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "error: unknown command '%s'\n\n", cmd.c_str());
  usage(stderr);
  return 2;
}
