#pragma once
// Seeded random numbers that are identical on every platform: mt19937_64 is
// fully specified by the standard, and we derive uniform/normal ourselves
// because std::normal_distribution is implementation-defined.
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>

namespace nq {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { manual_seed(seed); }

  void manual_seed(uint64_t seed) {
    seed_ = seed;
    engine_.seed(seed);
    has_spare_ = false;
  }
  uint64_t seed() const { return seed_; }

  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Standard normal by Box-Muller (pairs cached).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0.0;
    while (u1 <= 0.0) u1 = uniform();
    double u2 = uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    double th = 6.283185307179586476925286766559 * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }

  // Whole state as text, so training checkpoints can resume bit for bit.
  std::string state() const {
    std::ostringstream os;
    os << seed_ << ' ' << has_spare_ << ' ';
    os.precision(17);
    os << std::hexfloat << spare_ << ' ' << engine_;
    return os.str();
  }
  void set_state(const std::string& s) {
    std::istringstream is(s);
    is >> seed_ >> has_spare_;
    std::string spare;
    is >> spare;
    spare_ = std::strtod(spare.c_str(), nullptr);
    is >> engine_;
  }

 private:
  std::mt19937_64 engine_;
  uint64_t seed_ = 0;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// The process-wide default generator used when an op is given none.
inline Generator& default_generator() {
  static Generator g;
  return g;
}
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace nq
