#pragma once
// Errors: every failure throws nq::Error whose message names the op and the
// shapes involved, e.g. "nq::add: shapes [2,3] and [4] cannot be broadcast".
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace nq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// Throws nq::Error("nq::<op>: <message parts...>").
template <typename... Args>
[[noreturn]] void fail(const char* op, Args&&... args) {
  throw Error(detail::concat("nq::", op, ": ", std::forward<Args>(args)...));
}

}  // namespace nq

// NQ_CHECK(cond, "op", parts...) throws nq::Error when cond is false.
#define NQ_CHECK(cond, op, ...)    \
  do {                             \
    if (!(cond)) {                 \
      ::nq::fail(op, __VA_ARGS__); \
    }                              \
  } while (0)
