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
#include <optional>
#include <vector>

#include "../core/autocast.hpp"
#include "../nn/block.hpp"
#include "../nn/embedding.hpp"
#include "../ops/loss.hpp"
#include "config.hpp"

namespace nq {

// ids, attention_mask and position_ids may live on the CPU or on the model's
// device: the model moves them (a copy of a few int64 per token). Positions
// are made on the host from a host copy of the mask, then copied to the
// device once per forward (RoPE tables are then built there); pass the mask
// on the CPU (as generate() does) and no device-to-host copy happens.
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
  // The parameters' dtype (the master weights; float32 on the GPU).
  DType dtype() const { return dtype_; }

  // Mixed precision: set_autocast(kBFloat16) runs every forward of this model
  // (hidden_states, logits_from_hidden, forward, lm_loss, and so the
  // NextQuill objective and generate) under nq::AutocastGuard(kBFloat16): on
  // CUDA the linear layers multiply in bf16 with fp32 accumulation, while the
  // parameters stay fp32 master weights (their gradients come back fp32), the
  // residual stream, layer/RMS norms, softmax inside the losses and the
  // NextQuill effects stay fp32, and logits are returned in fp32. No loss
  // scaling is needed for bf16. set_autocast(kFloat32) (the default) stays in
  // fp32. On the CPU autocast is a no-op. An outer AutocastGuard set by the
  // caller is respected when the model's own setting is kFloat32.
  void set_autocast(DType d) {
    NQ_CHECK(d == kFloat32 || d == kBFloat16, "CausalLM",
             "set_autocast: bfloat16 (on) or float32 (off), got ", dtype_name(d));
    autocast_ = d;
  }
  DType autocast() const { return autocast_; }

  // ids (B,T) int64 -> final hidden states (B,T,C), after the last norm, in
  // the model's dtype (fp32 also under autocast).
  Tensor hidden_states(const Tensor& ids_in, const ForwardOptions& o = {}) const {
    NQ_CHECK(ids_in.dim() == 2 && ids_in.dtype() == kInt64, "CausalLM", "ids must be int64 (B,T), got ",
             ids_in.brief());
    std::optional<AutocastGuard> ag;
    if (autocast_ != kFloat32) ag.emplace(autocast_);
    const Device dev = embed->weight.device();
    const Tensor ids = ids_in.to(dev);
    const int64_t B = ids.size(0), T = ids.size(1);
    const int64_t past = o.cache ? o.cache->length() : 0;
    NQ_CHECK(!o.cache || o.cache->batch == B, "CausalLM", "KV cache was made for batch ", o.cache->batch,
             ", got ids ", shape_str(ids.shape()));
    Tensor mask = o.attention_mask;
    if (mask.defined())
      NQ_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == past + T, "CausalLM",
               "attention_mask ", shape_str(mask.shape()), " must be [", B, ",", past + T,
               "] (batch, cached + new tokens)");
    // Positions on the host (a host copy of a device mask or of device
    // position ids: one small copy per forward), then moved once.
    Tensor pos = o.position_ids.defined() ? o.position_ids.cpu()
                                          : default_positions(B, T, past, mask.defined() ? mask.cpu() : mask);
    NQ_CHECK(pos.dim() == 2 && pos.size(0) == B && pos.size(1) == T && pos.dtype() == kInt64, "CausalLM",
             "position_ids must be int64 [", B, ",", T, "], got ", pos.brief());
    Tensor x = embed->forward(ids);  // (B,T,C)
    nn::AttentionInputs in;
    if (mask.defined()) in.key_padding_mask = mask.to(dev);
    if (c_.pos == PosKind::Learned) {
      check_positions(pos);
      x = add(x, pos_embed->forward(pos.to(dev)));
    } else {
      // (B,T,D/2), built on the model's device (a CUDA kernel there).
      std::tie(in.cos, in.sin) = rope_tables(pos.to(dev), c_.hdim(), c_.rope_theta, dtype_);
    }
    for (size_t i = 0; i < layers.size(); ++i)
      x = layers[i]->forward(x, in, o.cache ? &o.cache->layers[i] : nullptr);
    return norm->forward(x);
  }

  // Hidden states (..., C) -> logits (..., V) in the model's dtype (fp32:
  // under bf16 autocast the product runs in bf16 and is cast up here, so every
  // loss and probability downstream is fp32 math). Callers that need only some
  // positions (the NextQuill losses, lm_loss) gather those rows first.
  Tensor logits_from_hidden(const Tensor& h) const {
    std::optional<AutocastGuard> ag;
    if (autocast_ != kFloat32) ag.emplace(autocast_);
    Tensor z = lm_head ? lm_head->forward(h) : linear(h, embed->weight);
    return z.to(dtype_);  // no-op without autocast
  }
  // Hidden states (B,T,C) -> logits (N,V) of the flat rows `rows` (N) int64
  // of the (B*T) positions: a differentiable row gather (scatter-add
  // backward), so the output layer runs on those N rows only.
  Tensor logits_at_rows(const Tensor& h, const Tensor& rows) const {
    NQ_CHECK(h.dim() == 3, "CausalLM", "logits_at_rows: hidden states must be (B,T,C), got ", h.brief());
    const int64_t C = h.size(2);
    return logits_from_hidden(embedding(h.reshape({h.size(0) * h.size(1), C}), rows.to(h.device())));
  }
  // The output-layer weight (V, C): the tied embedding or lm_head.
  Tensor output_weight() const { return lm_head ? lm_head->weight : embed->weight; }

  // ids (B,T) -> logits (B,T,V)
  Tensor forward(const Tensor& ids, const ForwardOptions& o = {}) const {
    return logits_from_hidden(hidden_states(ids, o));
  }
  Tensor operator()(const Tensor& ids, const ForwardOptions& o = {}) const { return forward(ids, o); }

  // The causal-LM training loss: mean cross-entropy over the positions whose
  // target is not ignore_index, with the output layer applied to those rows
  // only (no (B,T,V) logits for prompt and pad positions). ids and targets
  // (B,T) int64, targets already shifted (targets[b,t] is predicted at
  // (b,t)). Equal to cross_entropy(forward(ids).reshape({-1,V}),
  // targets.reshape({-1})) up to float rounding. The rows are found on the
  // host: pass targets on the CPU to avoid a device-to-host copy (on the GPU
  // a device tensor costs one small copy per call). A batch with no valid
  // target gives 0.
  Tensor lm_loss(const Tensor& ids, const Tensor& targets, const ForwardOptions& o = {},
                 int64_t ignore_index = -100) const {
    NQ_CHECK(targets.dtype() == kInt64 && targets.shape() == ids.shape(), "CausalLM",
             "lm_loss: targets must be int64 with the shape of ids ", shape_str(ids.shape()), ", got ",
             targets.brief());
    Tensor h = hidden_states(ids, o);  // (B,T,C)
    const int64_t BT = h.size(0) * h.size(1);
    const auto t = targets.cpu().contiguous().to_vector<int64_t>();
    std::vector<int64_t> rows, ys;
    rows.reserve(t.size()), ys.reserve(t.size());
    for (int64_t r = 0; r < BT; ++r)
      if (t[size_t(r)] != ignore_index) rows.push_back(r), ys.push_back(t[size_t(r)]);
    CrossEntropyOptions co;
    co.ignore_index = ignore_index;
    if (int64_t(rows.size()) == BT)  // every row counts: no gather
      return cross_entropy(logits_from_hidden(h.reshape({BT, h.size(2)})),
                           targets.reshape({BT}).to(h.device()), co);
    if (rows.empty()) return mul(h.sum(), 0.0);  // 0, still attached to the graph
    const int64_t N = int64_t(rows.size());
    return cross_entropy(logits_at_rows(h, from_vector(rows, {N})), from_vector(ys, {N}).to(h.device()), co);
  }

  // On the model's device; the cache dtype follows the keys' dtype (bf16
  // under autocast) from the first forward on.
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
  DType autocast_ = kFloat32;
};

}  // namespace nq
