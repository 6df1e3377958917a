#pragma once
// Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)).
#include <memory>

#include "../models/config.hpp"
#include "attention.hpp"
#include "mlp.hpp"
#include "norm.hpp"

namespace nq::nn {

// LayerNorm or RMSNorm behind one call, as the config asks; parameters sit
// directly under this module's name ("norm.weight", "norm.bias").
class Norm : public Module {
 public:
  Norm(NormKind kind, const NormOptions& o) : Module("Norm"), kind_(kind), o_(o) {
    NQ_CHECK(o.dim > 0, "Norm", "dim must be positive, got ", o.dim);
    weight = register_parameter("weight", ones({o.dim}, o.dtype));
    if (kind == NormKind::LayerNorm && o.bias) bias = register_parameter("bias", zeros({o.dim}, o.dtype));
  }
  Tensor forward(const Tensor& x) const {
    return kind_ == NormKind::LayerNorm ? layer_norm(x, weight, bias, o_.eps) : rms_norm(x, weight, o_.eps);
  }
  NormKind kind() const { return kind_; }
  Tensor weight, bias;

 private:
  NormKind kind_;
  NormOptions o_;
};

class Block : public Module {
 public:
  Block(const CausalLMConfig& c, Generator& g, DType dt = kFloat32) : Module("Block") {
    const NormOptions no{c.d_model, c.norm_eps, c.norm_bias, dt};
    // GPT-2: residual projections start smaller, std / sqrt(2 * n_layers).
    const double out_std = c.init_std / std::sqrt(2.0 * static_cast<double>(c.n_layers));
    attn_norm = register_module("attn_norm", std::make_shared<Norm>(c.norm, no));
    AttentionConfig ac{c.d_model,   c.n_heads, c.kv_heads(), c.hdim(), c.qkv_bias, c.attn_out_bias,
                       c.fused_qkv, c.dropout, c.init_std,   out_std,  dt};
    attn = register_module("attn", std::make_shared<CausalSelfAttention>(ac, g));
    mlp_norm = register_module("mlp_norm", std::make_shared<Norm>(c.norm, no));
    MLPConfig mc{c.d_model, c.ff(), c.mlp_bias, c.gelu_approx, c.dropout, c.init_std, out_std, dt};
    if (c.mlp == MLPKind::GELU)
      mlp = register_module("mlp", std::make_shared<MLP>(mc, g));
    else
      swiglu = register_module("mlp", std::make_shared<SwiGLU>(mc, g));
  }
  // (B,T,C) -> (B,T,C). The residual stream keeps x's dtype (fp32): under
  // bf16 autocast the attention and MLP outputs come back in bf16 and are cast
  // up before the add, so the norms always see fp32 (a no-op without autocast).
  Tensor forward(const Tensor& x, const AttentionInputs& in, LayerKV* cache = nullptr) const {
    Tensor h = add(x, attn->forward(attn_norm->forward(x), in, cache).to(x.dtype()));
    Tensor m = mlp_norm->forward(h);
    return add(h, (mlp ? mlp->forward(m) : swiglu->forward(m)).to(x.dtype()));
  }

  std::shared_ptr<Norm> attn_norm, mlp_norm;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<SwiGLU> swiglu;
};

}  // namespace nq::nn
