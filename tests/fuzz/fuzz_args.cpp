// Fuzzes the CLI argument parser (cli/args.hpp). The input is split into
// argv at NUL bytes and newlines. Two parsers run on it: one with a flag of
// every supported type plus a switch and a required flag, and the real
// `nextquill train` parser (add_train_flags + TrainOptions::check, the part of
// the command that runs before any work). Only nqcli::UsageError may escape;
// an accepted integer must be exactly the decimal text given for it, and an
// accepted double a finite number.
#include <cmath>
#include <cstdlib>

#include "fuzz_common.hpp"
#include "train_options.hpp"

namespace {

struct Values {
  std::string s = "default";
  int64_t i64 = -1;
  int i32 = 7;
  uint64_t u64 = 1;
  double d = NAN;
  bool sw = false;
};

// The canonical decimal form of an integer text: no sign for zero, no
// leading zeros; "" when it is not decimal digits after an optional '+' (or
// '-' when allowed).
std::string canonical(std::string_view v, bool allow_minus) {
  bool neg = false;
  if (!v.empty() && (v[0] == '+' || (allow_minus && v[0] == '-'))) neg = v[0] == '-', v.remove_prefix(1);
  if (v.empty()) return "";
  for (char c : v)
    if (c < '0' || c > '9') return "";
  while (v.size() > 1 && v[0] == '0') v.remove_prefix(1);
  if (v == "0") return "0";
  return (neg ? "-" : "") + std::string(v);
}

// The text given for `name` (as "--name=V" or "--name V") in an argv that parsed.
std::optional<std::string> given(const std::vector<std::string>& args, const std::string& name) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind(name + "=", 0) == 0) return args[i].substr(name.size() + 1);
    if (args[i] == name && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind("--", 0) == 0 && args[i].find('=') == std::string::npos && args[i] != "--sw") ++i;
  }
  return std::nullopt;
}

void check_int(const std::vector<std::string>& args, const std::string& name, const std::string& value,
               bool allow_minus) {
  if (auto v = given(args, name))
    NQ_FUZZ_CHECK(canonical(*v, allow_minus) == value, name + " '" + *v + "' parsed as " + value);
}

void own_parser(const std::vector<std::string>& args, std::vector<char*>& argv) {
  Values v;
  nqcli::ArgParser p("fuzz", "every flag type");
  p.add("--s", &v.s, "S", "a string");
  p.add("--i64", &v.i64, "N", "an int64").required();
  p.add("--i32", &v.i32, "N", "an int");
  p.add("--u64", &v.u64, "N", "a uint64");
  p.add("--d", &v.d, "X", "a double");
  p.flag("--sw", &v.sw, "a switch");
  bool ok = false;
  try {
    ok = p.parse(int(argv.size()), argv.data());
  } catch (const nqcli::UsageError& e) {
    NQ_FUZZ_CHECK(std::string(e.what()).rfind("fuzz: ", 0) == 0, e.what());
    return;
  }
  if (!ok) return;  // --help
  NQ_FUZZ_CHECK(p.seen("--i64"), "required flag");
  check_int(args, "--i64", std::to_string(v.i64), true);
  check_int(args, "--i32", std::to_string(v.i32), true);
  check_int(args, "--u64", std::to_string(v.u64), false);
  if (p.seen("--d")) NQ_FUZZ_CHECK(std::isfinite(v.d), "--d accepted a non-finite value");
}

void train_parser(std::vector<char*> argv) {
  static char cmd[] = "train";
  argv.insert(argv.begin() + 1, cmd);
  nqcli::TrainOptions o;
  nqcli::ArgParser p("nextquill train", "fuzz");
  nqcli::add_train_flags(p, o);
  try {
    if (!p.parse(int(argv.size()), argv.data(), 2)) return;
    o.check(p.prog());
  } catch (const nqcli::UsageError&) {
    return;
  }
  NQ_FUZZ_CHECK(!o.data.empty() || p.seen("--data"), "required --data");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0 || data[i] == '\n') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += char(data[i]);
    }
  }
  if (size) args.push_back(cur);
  if (args.size() > 64) return 0;  // enough for every flag twice
  static char prog[] = "nextquill";
  std::vector<char*> argv = {prog};
  for (std::string& a : args) argv.push_back(a.data());
  own_parser(args, argv);
  train_parser(argv);
  return 0;
}
