#pragma once
// Parameter initialisers, seeded through an nq::Generator so that a model
// built twice from the same seed is identical.
#include "../core/generator.hpp"
#include "../ops/api.hpp"
#include "../ops/factory.hpp"

namespace nq::nn::init {

// While a SkipInitGuard lives, the random initialisers hand out uninitialised
// tensors: a loader that overwrites every parameter (GGUF, safetensors) then
// does not pay for drawing 100 M+ random numbers. (transformers' no_init_weights.)
inline bool& skip_init_flag() {
  thread_local bool skip = false;
  return skip;
}
struct SkipInitGuard {
  bool prev = skip_init_flag();
  SkipInitGuard() { skip_init_flag() = true; }
  ~SkipInitGuard() { skip_init_flag() = prev; }
  SkipInitGuard(const SkipInitGuard&) = delete;
  SkipInitGuard& operator=(const SkipInitGuard&) = delete;
};

inline Tensor normal(const Shape& shape, double std, Generator& g, DType dt = kFloat32) {
  if (skip_init_flag()) return empty(shape, TensorOptions(dt));
  return mul(randn(shape, dt, &g), std).detach();
}
inline Tensor constant(const Shape& shape, double v, DType dt = kFloat32) { return full(shape, v, dt); }
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear's default for weights and biases.
inline Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Generator& g, DType dt = kFloat32) {
  if (skip_init_flag()) return empty(shape, TensorOptions(dt));
  const double b = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  return uniform(shape, -b, b, dt, &g);
}

}  // namespace nq::nn::init
