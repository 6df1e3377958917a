#pragma once
// Linear: y = x W^T + b with W (out, in), as torch.nn.Linear. A LoRA adapter
// (nn/lora.hpp) attaches to a Linear as two child Linears, lora_A (r, in) and
// lora_B (out, r): y = x W^T + b + scale * B(A(dropout(x))). Merging folds
// scale * B A into W.
#include <cmath>
#include <memory>

#include "init.hpp"
#include "module.hpp"

namespace nq::nn {

struct LinearOptions {
  int64_t in_features = 0, out_features = 0;
  bool bias = true;
  DType dtype = kFloat32;
  // Weight init: normal(0, init_std) when > 0, else torch's kaiming-uniform.
  double init_std = 0.0;
};

class Linear : public Module {
 public:
  Linear(const LinearOptions& o, Generator& g) : Module("Linear"), opts_(o) {
    NQ_CHECK(o.in_features > 0 && o.out_features > 0, "Linear",
             "features must be positive, got in=", o.in_features, " out=", o.out_features);
    const Shape ws{o.out_features, o.in_features};
    weight =
        register_parameter("weight", o.init_std > 0 ? init::normal(ws, o.init_std, g, o.dtype)
                                                    : init::kaiming_uniform(ws, o.in_features, g, o.dtype));
    if (o.bias)
      bias = register_parameter(
          "bias", o.init_std > 0 ? zeros({o.out_features}, o.dtype)
                                 : init::kaiming_uniform({o.out_features}, o.in_features, g, o.dtype));
  }

  // (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const {
    NQ_CHECK(x.size(-1) == opts_.in_features, "Linear", "input ", shape_str(x.shape()), " has last dim ",
             x.size(-1), ", expected in_features=", opts_.in_features);
    Tensor y = linear(x, weight, bias);
    if (lora_ && !merged_) y = add(y, lora_forward(x));
    return y;
  }
  Tensor operator()(const Tensor& x) const { return forward(x); }

  const LinearOptions& options() const { return opts_; }

  // ---- LoRA hooks (see nn/lora.hpp) --------------------------------------------
  struct LoRAState {
    int64_t r = 0;
    double alpha = 0.0, dropout = 0.0;
    std::shared_ptr<Linear> A, B;
    Generator* gen = nullptr;
  };
  bool has_lora() const { return static_cast<bool>(lora_); }
  const LoRAState* lora() const { return lora_.get(); }
  double lora_scale() const { return lora_ ? lora_->alpha / static_cast<double>(lora_->r) : 0.0; }
  bool lora_merged() const { return merged_; }
  void attach_lora(int64_t r, double alpha, double dropout, Generator& g) {
    NQ_CHECK(!lora_, "Linear", "a LoRA adapter is already attached");
    NQ_CHECK(r > 0, "LoRA", "rank must be positive, got ", r);
    auto st = std::make_unique<LoRAState>();
    st->r = r, st->alpha = alpha, st->dropout = dropout, st->gen = &g;
    // A: kaiming-uniform like peft; B: zeros, so the wrapped layer starts
    // exactly equal to the base layer.
    st->A = register_module(
        "lora_A", std::make_shared<Linear>(LinearOptions{opts_.in_features, r, false, opts_.dtype, 0.0}, g));
    st->B = register_module(
        "lora_B", std::make_shared<Linear>(LinearOptions{r, opts_.out_features, false, opts_.dtype, 0.0}, g));
    {
      NoGradGuard ng;
      Tensor bw = st->B->weight;
      bw.zero_();
    }
    // Drawn on the host like every initialiser, then moved next to the base
    // weight (a model already on the GPU gets its adapters there).
    if (weight.device() != st->A->weight.device()) {
      st->A->to(weight.device());
      st->B->to(weight.device());
    }
    lora_ = std::move(st);
  }
  // W += scale * B A (forward then skips the adapter); unmerge undoes it.
  void merge_lora() {
    NQ_CHECK(lora_, "Linear", "merge_lora: no LoRA adapter attached");
    if (merged_) return;
    NoGradGuard ng;
    weight.add_(lora_delta(1.0));
    merged_ = true;
  }
  void unmerge_lora() {
    NQ_CHECK(lora_, "Linear", "unmerge_lora: no LoRA adapter attached");
    if (!merged_) return;
    NoGradGuard ng;
    weight.add_(lora_delta(-1.0));
    merged_ = false;
  }

  Tensor weight, bias;

 private:
  // sign * scale * B A, the weight-shaped update merge/unmerge apply in place.
  Tensor lora_delta(double sign) const {
    return mul(matmul(lora_->B->weight, lora_->A->weight), sign * lora_scale());
  }
  Tensor lora_forward(const Tensor& x) const {
    Tensor h = dropout(x, lora_->dropout, is_training(), lora_->gen);
    return mul(lora_->B->forward(lora_->A->forward(h)), lora_scale());
  }
  LinearOptions opts_;
  std::unique_ptr<LoRAState> lora_;
  bool merged_ = false;
};

}  // namespace nq::nn
