#pragma once
// Shapes, strides and broadcasting rules (numpy semantics).
#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "error.hpp"

namespace nq {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

inline std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

inline Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

// Normalises a possibly negative dim index against rank `ndim`.
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  NQ_CHECK(d >= 0 && d < ndim, op, "dim ", dim, " out of range for a tensor of rank ", ndim);
  return d;
}

// numpy broadcasting of two shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    NQ_CHECK(da == db || da == 1 || db == 1, op, "shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Strides that read a tensor of shape `s` (strides `st`) as if it had the
// larger broadcast shape `target`: broadcast dims get stride 0.
inline Strides broadcast_strides(const Shape& s, const Strides& st, const Shape& target) {
  Strides out(target.size(), 0);
  size_t off = target.size() - s.size();
  for (size_t i = 0; i < s.size(); ++i) out[off + i] = (s[i] == 1 && target[off + i] != 1) ? 0 : st[i];
  return out;
}

}  // namespace nq
