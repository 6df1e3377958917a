#pragma once
// LayerNorm (weight and optional bias) and RMSNorm over the last dim.
#include "module.hpp"

namespace nq::nn {

struct NormOptions {
  int64_t dim = 0;
  double eps = 1e-5;
  bool bias = true;  // LayerNorm only
  DType dtype = kFloat32;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(const NormOptions& o) : Module("LayerNorm"), opts_(o) {
    NQ_CHECK(o.dim > 0, "LayerNorm", "dim must be positive, got ", o.dim);
    weight = register_parameter("weight", ones({o.dim}, o.dtype));
    if (o.bias) bias = register_parameter("bias", zeros({o.dim}, o.dtype));
  }
  Tensor forward(const Tensor& x) const { return layer_norm(x, weight, bias, opts_.eps); }
  Tensor operator()(const Tensor& x) const { return forward(x); }
  const NormOptions& options() const { return opts_; }
  Tensor weight, bias;

 private:
  NormOptions opts_;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(const NormOptions& o) : Module("RMSNorm"), opts_(o) {
    NQ_CHECK(o.dim > 0, "RMSNorm", "dim must be positive, got ", o.dim);
    weight = register_parameter("weight", ones({o.dim}, o.dtype));
  }
  Tensor forward(const Tensor& x) const { return rms_norm(x, weight, opts_.eps); }
  Tensor operator()(const Tensor& x) const { return forward(x); }
  const NormOptions& options() const { return opts_; }
  Tensor weight;

 private:
  NormOptions opts_;
};

// Dropout as a module: active in train mode only.
class Dropout : public Module {
 public:
  Dropout(double p, Generator& g) : Module("Dropout"), p_(p), gen_(&g) {
    NQ_CHECK(p >= 0.0 && p < 1.0, "Dropout", "p must be in [0, 1), got ", p);
  }
  Tensor forward(const Tensor& x) const { return dropout(x, p_, is_training(), gen_); }
  Tensor operator()(const Tensor& x) const { return forward(x); }
  double p() const { return p_; }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace nq::nn
