#pragma once
// Feed-forward blocks: GPT-2's fc -> GELU -> proj, and Llama's SwiGLU
// down(silu(gate(x)) * up(x)).
#include <memory>

#include "linear.hpp"

namespace nq::nn {

struct MLPConfig {
  int64_t d_model = 0, d_ff = 0;
  bool bias = true;
  GeluApprox approx = GeluApprox::Tanh;
  double dropout = 0.0;
  double init_std = 0.02, out_init_std = 0.02;
  DType dtype = kFloat32;
};

class MLP : public Module {
 public:
  MLP(const MLPConfig& c, Generator& g) : Module("MLP"), c_(c) {
    fc = register_module(
        "fc", std::make_shared<Linear>(LinearOptions{c.d_model, c.d_ff, c.bias, c.dtype, c.init_std}, g));
    proj = register_module("proj", std::make_shared<Linear>(
                                       LinearOptions{c.d_ff, c.d_model, c.bias, c.dtype, c.out_init_std}, g));
  }
  // (B,T,C) -> (B,T,C)
  Tensor forward(const Tensor& x) const {
    Tensor y = proj->forward(gelu(fc->forward(x), c_.approx));
    return c_.dropout > 0 ? dropout(y, c_.dropout, is_training()) : y;
  }
  std::shared_ptr<Linear> fc, proj;

 private:
  MLPConfig c_;
};

class SwiGLU : public Module {
 public:
  SwiGLU(const MLPConfig& c, Generator& g) : Module("SwiGLU"), c_(c) {
    auto lin = [&](int64_t in, int64_t out, double std) {
      return std::make_shared<Linear>(LinearOptions{in, out, c.bias, c.dtype, std}, g);
    };
    gate_proj = register_module("gate_proj", lin(c.d_model, c.d_ff, c.init_std));
    up_proj = register_module("up_proj", lin(c.d_model, c.d_ff, c.init_std));
    down_proj = register_module("down_proj", lin(c.d_ff, c.d_model, c.out_init_std));
  }
  Tensor forward(const Tensor& x) const {
    Tensor y = down_proj->forward(mul(silu(gate_proj->forward(x)), up_proj->forward(x)));
    return c_.dropout > 0 ? dropout(y, c_.dropout, is_training()) : y;
  }
  std::shared_ptr<Linear> gate_proj, up_proj, down_proj;

 private:
  MLPConfig c_;
};

}  // namespace nq::nn
