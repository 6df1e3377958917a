#pragma once
// A small declarative argument parser for the nextquill CLI: each subcommand
// declares its flags (name, destination, help); parse() fills them, prints
// --help, and reports bad input as a UsageError naming the flag.
//
//   ArgParser p("nextquill pretrain", "Trains a base language model ...");
//   p.add("--data", &data, "DIR", "dataset directory").required();
//   p.add("--steps", &steps, "N", "optimizer steps");
//   if (!p.parse(argc, argv)) return 0;   // --help was printed
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace nqcli {

// Bad command line: main() prints it with the usage hint and exits with 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ArgParser {
 public:
  struct Flag {
    std::string name, metavar, help, def;
    bool is_switch = false, is_required = false, seen = false;
    std::function<void(const std::string&)> set;  // parses and stores a value
    Flag& required() {
      is_required = true;
      return *this;
    }
  };

  ArgParser(std::string prog, std::string summary) : prog_(std::move(prog)), summary_(std::move(summary)) {}

  // A flag with a value. T: std::string, int64_t, int, uint64_t or double.
  // The destination's current value is the default shown in --help.
  template <typename T>
  Flag& add(const std::string& name, T* dst, const std::string& metavar, const std::string& help) {
    Flag f;
    f.name = name, f.metavar = metavar, f.help = help;
    f.def = show(*dst);
    f.set = [this, dst, name](const std::string& v) { *dst = convert<T>(name, v); };
    flags_.push_back(std::move(f));
    return flags_.back();
  }
  // A switch without a value.
  Flag& flag(const std::string& name, bool* dst, const std::string& help) {
    Flag f;
    f.name = name, f.help = help, f.is_switch = true;
    f.set = [dst](const std::string&) { *dst = true; };
    flags_.push_back(std::move(f));
    return flags_.back();
  }
  void epilog(std::string text) { epilog_ = std::move(text); }

  // Parses argv[first..argc). Returns false when --help was printed.
  bool parse(int argc, char** argv, int first = 1) {
    for (int i = first; i < argc; ++i) {
      std::string k = argv[i], v;
      bool has_inline = false;
      if (k == "--help" || k == "-h") {
        std::fputs(help().c_str(), stdout);
        return false;
      }
      if (const char* eq = std::strchr(argv[i], '='); eq && k.rfind("--", 0) == 0) {
        v.assign(eq + 1);
        k.assign(argv[i], size_t(eq - argv[i]));
        has_inline = true;
      }
      Flag* f = find(k);
      if (!f) {
        if (k.rfind("-", 0) != 0) throw UsageError(prog_ + ": unexpected argument '" + k + "'");
        throw UsageError(prog_ + ": unknown option '" + k + "'" + suggestion(k));
      }
      if (f->seen) throw UsageError(prog_ + ": " + k + " given twice");
      f->seen = true;
      if (f->is_switch) {
        if (has_inline) throw UsageError(prog_ + ": " + k + " takes no value");
      } else if (!has_inline) {
        if (i + 1 >= argc) throw UsageError(prog_ + ": " + k + " needs a value (" + f->metavar + ")");
        v = argv[++i];
      }
      f->set(v);
    }
    for (const Flag& f : flags_)
      if (f.is_required && !f.seen) throw UsageError(prog_ + ": missing required option " + f.name);
    return true;
  }
  bool seen(const std::string& name) const {
    for (const Flag& f : flags_)
      if (f.name == name) return f.seen;
    return false;
  }

  std::string help() const {
    // Built by appending only: GCC 12 reports false overflows on chains of
    // string operator+ here (-Wstringop-overflow, GCC bug 105329).
    std::string s = "usage: ";
    s.append(prog_);
    const size_t indent = s.size();
    size_t col = s.size();
    for (const Flag& f : flags_) {
      std::string one;
      if (!f.is_required) one.push_back('[');
      one.append(f.name);
      if (!f.is_switch) one.append(" ").append(f.metavar);
      if (!f.is_required) one.push_back(']');
      if (col + 1 + one.size() > 100) {
        s.push_back('\n');
        s.append(indent, ' ');
        col = indent;
      }
      s.push_back(' ');
      s.append(one);
      col += 1 + one.size();
    }
    s.append("\n\n").append(summary_).append("\n\noptions:\n");
    for (const Flag& f : flags_) {
      std::string left = "  ";
      left.append(f.name);
      if (!f.is_switch) left.append(" ").append(f.metavar);
      if (left.size() < 26) {
        left.resize(26, ' ');
      } else {
        left.push_back('\n');
        left.append(26, ' ');
      }
      s.append(left).append(f.help);
      if (f.is_required)
        s.append(" (required)");
      else if (!f.is_switch && !f.def.empty() && f.def != "nan" && f.def != "-nan")
        s.append(" [default: ").append(f.def).append("]");
      s.push_back('\n');
    }
    s.append("  -h, --help              show this help\n");
    if (!epilog_.empty()) s.append("\n").append(epilog_).append("\n");
    return s;
  }
  const std::string& prog() const { return prog_; }

 private:
  std::string prog_, summary_, epilog_;
  std::vector<Flag> flags_;

  Flag* find(const std::string& name) {
    for (Flag& f : flags_)
      if (f.name == name) return &f;
    return nullptr;
  }
  std::string suggestion(const std::string& k) const {
    // The closest flag by edit distance, if it is close.
    size_t best = 3;
    std::string bn;
    for (const Flag& f : flags_) {
      const std::string& a = f.name;
      std::vector<size_t> prev(k.size() + 1), cur(k.size() + 1);
      for (size_t j = 0; j <= k.size(); ++j) prev[j] = j;
      for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= k.size(); ++j)
          cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == k[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
      }
      if (prev[k.size()] < best) best = prev[k.size()], bn = a;
    }
    return bn.empty() ? " (see " + prog_ + " --help)" : " (did you mean " + bn + "?)";
  }

  template <typename T>
  static std::string show(const T& v) {
    if constexpr (std::is_same_v<T, std::string>)
      return v;
    else if constexpr (std::is_floating_point_v<T>) {
      char b[32];
      std::snprintf(b, sizeof b, "%g", v);
      return b;
    } else
      return std::to_string(v);
  }
  template <typename T>
  T convert(const std::string& name, const std::string& v) {
    if constexpr (std::is_same_v<T, std::string>) {
      return v;
    } else {
      const char* b = v.c_str();
      char* e = nullptr;
      errno = 0;
      // strto* skip leading whitespace, and strtoull negates "-5" (even after a
      // space) into a huge value: the text must start with the number itself.
      const bool starts_ok = !v.empty() && !std::isspace(static_cast<unsigned char>(v[0]));
      if constexpr (std::is_floating_point_v<T>) {
        const double d = std::strtod(b, &e);
        if (!starts_ok || *e || errno == ERANGE || !std::isfinite(d))
          throw UsageError(prog_ + ": " + name + ": expected a finite number, got '" + v + "'");
        return static_cast<T>(d);
      } else {
        if constexpr (std::is_unsigned_v<T>) {
          const unsigned long long x = std::strtoull(b, &e, 10);
          if (!starts_ok || v[0] == '-' || *e || errno == ERANGE || x > std::numeric_limits<T>::max())
            throw UsageError(prog_ + ": " + name + ": expected a non-negative integer, got '" + v + "'");
          return static_cast<T>(x);
        } else {
          const long long x = std::strtoll(b, &e, 10);
          if (!starts_ok || *e || errno == ERANGE ||
              x < static_cast<long long>(std::numeric_limits<T>::min()) ||
              x > static_cast<long long>(std::numeric_limits<T>::max()))
            throw UsageError(prog_ + ": " + name + ": expected an integer, got '" + v + "'");
          return static_cast<T>(x);
        }
      }
    }
  }
};

// Range checks for parsed values, as UsageErrors naming the flag.
inline void require(bool ok, const std::string& prog, const std::string& msg) {
  if (!ok) throw UsageError(prog + ": " + msg);
}

}  // namespace nqcli
