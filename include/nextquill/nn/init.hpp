#pragma once
// Parameter initialisers, seeded through an nq::Generator so that a model
// built twice from the same seed is identical.
#include "../core/generator.hpp"
#include "../ops/api.hpp"
#include "../ops/factory.hpp"

namespace nq::nn::init {

inline Tensor normal(const Shape& shape, double std, Generator& g, DType dt = kFloat32) {
  return mul(randn(shape, dt, &g), std).detach();
}
inline Tensor constant(const Shape& shape, double v, DType dt = kFloat32) { return full(shape, v, dt); }
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear's default for weights and biases.
inline Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Generator& g, DType dt = kFloat32) {
  const double b = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  return uniform(shape, -b, b, dt, &g);
}

}  // namespace nq::nn::init
