#pragma once
// Small helpers shared by the test files.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
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

// max |a - b| / max |b| over all elements: the "max relative error" the
// fixture tests state their tolerances in.
inline double max_rel_err(const nq::Tensor& a, const nq::Tensor& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    num = std::max(num, std::abs(av[i] - bv[i]));
    den = std::max(den, std::abs(bv[i]));
  }
  return num / std::max(den, 1e-30);
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// A fresh path in the temporary directory (not created), unique per call.
inline std::string temp_path(const std::string& name) {
  static int counter = 0;
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  return (std::filesystem::temp_directory_path() /
          ("nqtest_" + std::to_string(stamp) + "_" + std::to_string(++counter) + "_" + name))
      .string();
}

}  // namespace nqtest
