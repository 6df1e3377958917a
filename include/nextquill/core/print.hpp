#pragma once
// Printing, numpy/PyTorch style: nested brackets, long dims summarised with
// "...", then dtype and autograd state.
#include <iomanip>
#include <ostream>

#include "../autograd/node.hpp"
#include "../ops/data.hpp"

namespace nq {

namespace detail {
inline void print_rec(std::ostream& os, const std::vector<double>& v, const Shape& s, const Strides& st,
                      size_t d, int64_t off, int indent) {
  const int64_t n = s[d];
  const int64_t edge = 3;
  const bool cut = n > 2 * edge + 1;
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (cut && i == edge) {
      os << (d + 1 == s.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - edge;
    }
    if (d + 1 == s.size())
      os << std::setw(10) << v[off + i * st[d]];
    else
      print_rec(os, v, s, st, d + 1, off + i * st[d], indent + 1);
    if (i + 1 < n) os << (d + 1 == s.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << ']';
}
}  // namespace detail

inline std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  std::vector<double> v = t.to_vector<double>();
  auto flags = os.flags();
  auto prec = os.precision();
  os << std::setprecision(4) << "tensor(";
  if (t.dim() == 0)
    os << v[0];
  else
    detail::print_rec(os, v, t.shape(), contiguous_strides(t.shape()), 0, 0, 7);
  os << ", shape=" << shape_str(t.shape()) << ", dtype=" << dtype_name(t.dtype());
  if (t.requires_grad()) os << (t.grad_fn() ? ", grad_fn=" : ", requires_grad=true");
  if (t.requires_grad() && t.grad_fn()) os << t.grad_fn()->name;
  os << ')';
  os.flags(flags);
  os.precision(prec);
  return os;
}

inline std::string to_string(const Tensor& t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

}  // namespace nq
