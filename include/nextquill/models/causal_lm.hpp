#pragma once
// CausalLM: a decoder-only language model, GPT-2 or Llama/Qwen2 layout by
// config. Parameter names:
//   embed.weight (V,C), pos_embed.weight (max_seq_len,C) [learned positions],
//   layers.N.{attn_norm,mlp_norm}.{weight,bias},
//   layers.N.attn.{qkv_proj | q_proj,k_proj,v_proj}.{weight,bias}, layers.N.attn.o_proj.*,
//   layers.N.mlp.{fc,proj}.* (GELU) or layers.N.mlp.{gate_proj,up_proj,down_proj}.weight (SwiGLU),
//   norm.{weight,bias}, lm_head.weight (V,C) [untied only].
// After construction the parameters are flattened (nn/module.hpp).
#include <memory>
#include <vector>

#include "../nn/block.hpp"
#include "../nn/embedding.hpp"
#include "config.hpp"

namespace nq {

struct ForwardOptions {
  // (B, past+T): 1 for real tokens, 0 for padding (left or right). Positions
  // default to cumsum(mask)-1, so left-padded prompts start at position 0.
  Tensor attention_mask;
  Tensor position_ids;  // (B,T) int64, overrides the default
  nn::KVCache* cache = nullptr;
};

class CausalLM : public nn::Module {
 public:
  explicit CausalLM(const CausalLMConfig& c, uint64_t seed = 0, DType dt = kFloat32)
      : Module("CausalLM"), c_(c), dtype_(dt) {
    c.validate();
    Generator g(seed);
    embed = register_module("embed", std::make_shared<nn::Embedding>(
                                         nn::EmbeddingOptions{c.vocab_size, c.d_model, dt, c.init_std}, g));
    if (c.pos == PosKind::Learned)
      pos_embed = register_module("pos_embed",
                                  std::make_shared<nn::Embedding>(
                                      nn::EmbeddingOptions{c.max_seq_len, c.d_model, dt, c.init_std / 2}, g));
    auto list = std::make_shared<nn::Module>("ModuleList");
    for (int64_t i = 0; i < c.n_layers; ++i)
      layers.push_back(list->register_module(std::to_string(i), std::make_shared<nn::Block>(c, g, dt)));
    register_module("layers", list);
    norm = register_module(
        "norm", std::make_shared<nn::Norm>(c.norm, nn::NormOptions{c.d_model, c.norm_eps, c.norm_bias, dt}));
    if (!c.tie_embeddings)
      lm_head = register_module(
          "lm_head",
          std::make_shared<nn::Linear>(nn::LinearOptions{c.d_model, c.vocab_size, false, dt, c.init_std}, g));
    flatten_parameters();
  }

  const CausalLMConfig& config() const { return c_; }
  DType dtype() const { return dtype_; }

  // ids (B,T) int64 -> final hidden states (B,T,C), after the last norm.
  Tensor hidden_states(const Tensor& ids, const ForwardOptions& o = {}) const {
    NQ_CHECK(ids.dim() == 2 && ids.dtype() == kInt64, "CausalLM", "ids must be int64 (B,T), got ",
             ids.brief());
    const int64_t B = ids.size(0), T = ids.size(1);
    const int64_t past = o.cache ? o.cache->length() : 0;
    NQ_CHECK(!o.cache || o.cache->batch == B, "CausalLM", "KV cache was made for batch ", o.cache->batch,
             ", got ids ", shape_str(ids.shape()));
    Tensor mask = o.attention_mask;
    if (mask.defined())
      NQ_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == past + T, "CausalLM",
               "attention_mask ", shape_str(mask.shape()), " must be [", B, ",", past + T,
               "] (batch, cached + new tokens)");
    Tensor pos = o.position_ids.defined() ? o.position_ids : default_positions(B, T, past, mask);
    NQ_CHECK(pos.dim() == 2 && pos.size(0) == B && pos.size(1) == T && pos.dtype() == kInt64, "CausalLM",
             "position_ids must be int64 [", B, ",", T, "], got ", pos.brief());
    Tensor x = embed->forward(ids);  // (B,T,C)
    nn::AttentionInputs in;
    in.key_padding_mask = mask;
    if (c_.pos == PosKind::Learned) {
      check_positions(pos);
      x = add(x, pos_embed->forward(pos));
    } else {
      std::tie(in.cos, in.sin) = rope_tables(pos, c_.hdim(), c_.rope_theta, dtype_);
    }
    for (size_t i = 0; i < layers.size(); ++i)
      x = layers[i]->forward(x, in, o.cache ? &o.cache->layers[i] : nullptr);
    return norm->forward(x);
  }

  // Hidden states (..., C) -> logits (..., V). Callers that need only some
  // positions (the NextQuill losses) gather those rows first.
  Tensor logits_from_hidden(const Tensor& h) const {
    return lm_head ? lm_head->forward(h) : linear(h, embed->weight);
  }
  // The output-layer weight (V, C): the tied embedding or lm_head.
  Tensor output_weight() const { return lm_head ? lm_head->weight : embed->weight; }

  // ids (B,T) -> logits (B,T,V)
  Tensor forward(const Tensor& ids, const ForwardOptions& o = {}) const {
    return logits_from_hidden(hidden_states(ids, o));
  }
  Tensor operator()(const Tensor& ids, const ForwardOptions& o = {}) const { return forward(ids, o); }

  nn::KVCache make_cache(int64_t batch, int64_t max_len) const {
    nn::KVCache c;
    c.batch = batch, c.max_len = max_len;
    for (auto& l : layers) c.layers.push_back(l->attn->make_cache(batch, max_len));
    return c;
  }

  std::shared_ptr<nn::Embedding> embed, pos_embed;
  std::vector<std::shared_ptr<nn::Block>> layers;
  std::shared_ptr<nn::Norm> norm;
  std::shared_ptr<nn::Linear> lm_head;

 private:
  static Tensor default_positions(int64_t B, int64_t T, int64_t past, const Tensor& mask) {
    Tensor pos = Tensor::empty({B, T}, kInt64);
    int64_t* p = pos.data_ptr<int64_t>();
    if (!mask.defined()) {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t) p[b * T + t] = past + t;
      return pos;
    }
    Tensor m = mask.to(kFloat64).contiguous();
    const double* mp = m.data_ptr<double>();
    const int64_t S = past + T;
    for (int64_t b = 0; b < B; ++b) {
      int64_t run = -1;
      for (int64_t s = 0; s < S; ++s) {
        if (mp[b * S + s] != 0) ++run;
        if (s >= past) p[b * T + s - past] = std::max<int64_t>(run, 0);
      }
    }
    return pos;
  }
  void check_positions(const Tensor& pos) const {
    Tensor pc = pos.contiguous();
    const int64_t* p = pc.data_ptr<int64_t>();
    for (int64_t i = 0; i < pc.numel(); ++i)
      NQ_CHECK(p[i] >= 0 && p[i] < c_.max_seq_len, "CausalLM", "position ", p[i],
               " is outside the model's learned positions [0, ", c_.max_seq_len,
               ") — the sequence is longer than max_seq_len");
  }

  CausalLMConfig c_;
  DType dtype_;
};

}  // namespace nq
