#pragma once
// Small helpers shared by the test files.
#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

namespace nqtest {

using V = std::vector<double>;

inline V values(const nq::Tensor& t) { return t.to_vector<double>(); }

// The nq::Error message thrown by f, or "" when nothing is thrown.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const nq::Error& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace nqtest
