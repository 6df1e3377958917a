#pragma once
// Causal self-attention: multi-head or grouped-query (n_kv_heads < n_heads,
// each group of n_heads/n_kv_heads query heads shares one key/value head),
// fused or separate q/k/v projections, optional RoPE, key-padding mask and a
// KV cache for incremental decoding.
#include <memory>
#include <vector>

#include "../ops/rope.hpp"
#include "linear.hpp"

namespace nq::nn {

struct AttentionConfig {
  int64_t d_model = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  bool qkv_bias = true, out_bias = true;
  bool fused_qkv = true;  // one (H+2Hk)*D projection named qkv_proj, else q_proj/k_proj/v_proj
  double dropout = 0.0;   // on the attention output (residual dropout)
  double init_std = 0.02, out_init_std = 0.02;
  DType dtype = kFloat32;
};

// Keys and values of one layer for all positions seen so far, preallocated to
// (B, Hk, max_len, D) so appending is a copy into the next slots.
struct LayerKV {
  Tensor k, v;
  int64_t len = 0;
};

struct KVCache {
  std::vector<LayerKV> layers;
  int64_t batch = 0, max_len = 0;
  int64_t length() const { return layers.empty() ? 0 : layers.front().len; }
};

// What every layer of one forward pass shares.
struct AttentionInputs {
  Tensor cos, sin;          // (B,T,D/2) RoPE tables, undefined without RoPE
  Tensor key_padding_mask;  // (B, past+T), 1 = real key, 0 = padding; may be undefined
};

class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(const AttentionConfig& c, Generator& g) : Module("CausalSelfAttention"), c_(c) {
    NQ_CHECK(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "CausalSelfAttention",
             "n_heads (", c.n_heads, ") must be a positive multiple of n_kv_heads (", c.n_kv_heads, ")");
    const int64_t D = c.head_dim, q = c.n_heads * D, kv = c.n_kv_heads * D;
    auto lin = [&](int64_t in, int64_t out, bool bias, double std) {
      return std::make_shared<Linear>(LinearOptions{in, out, bias, c.dtype, std}, g);
    };
    if (c.fused_qkv) {
      qkv_proj = register_module("qkv_proj", lin(c.d_model, q + 2 * kv, c.qkv_bias, c.init_std));
    } else {
      q_proj = register_module("q_proj", lin(c.d_model, q, c.qkv_bias, c.init_std));
      k_proj = register_module("k_proj", lin(c.d_model, kv, c.qkv_bias, c.init_std));
      v_proj = register_module("v_proj", lin(c.d_model, kv, c.qkv_bias, c.init_std));
    }
    o_proj = register_module("o_proj", lin(q, c.d_model, c.out_bias, c.out_init_std));
  }

  // x (B,T,C) -> (B,T,C). With a cache, the new keys/values are appended and
  // the queries attend to all cached positions (causal, aligned at the end).
  Tensor forward(const Tensor& x, const AttentionInputs& in, LayerKV* cache = nullptr) const {
    const int64_t B = x.size(0), T = x.size(1), H = c_.n_heads, Hk = c_.n_kv_heads, D = c_.head_dim;
    Tensor q, k, v;  // (B,T,H,D), (B,T,Hk,D) x 2
    if (c_.fused_qkv && Hk == H) {
      // Three selects of one (B,T,3,H,D) view: the backward writes each
      // gradient straight into its part of the (B,T,3C) one, with no
      // reshape copy in between.
      Tensor qkv = qkv_proj->forward(x).view({B, T, 3, H, D});
      q = qkv.select(2, 0), k = qkv.select(2, 1), v = qkv.select(2, 2);
    } else if (c_.fused_qkv) {
      auto parts = split(qkv_proj->forward(x), {H * D, Hk * D, Hk * D}, 2);
      q = parts[0].view({B, T, H, D}), k = parts[1].view({B, T, Hk, D}), v = parts[2].view({B, T, Hk, D});
    } else {
      q = q_proj->forward(x).view({B, T, H, D});
      k = k_proj->forward(x).view({B, T, Hk, D});
      v = v_proj->forward(x).view({B, T, Hk, D});
    }
    q = q.transpose(1, 2);  // (B,H,T,D)
    k = k.transpose(1, 2);  // (B,Hk,T,D)
    v = v.transpose(1, 2);
    if (in.cos.defined()) {
      // Under bf16 autocast q and k come out in bf16; the tables stay in the
      // model's dtype (fp32), which rope takes for a bf16 x on CUDA.
      q = rope(q, in.cos, in.sin);
      k = rope(k, in.cos, in.sin);
    }
    if (cache) {
      NQ_CHECK(cache->len + T <= cache->k.size(2), "CausalSelfAttention", "KV cache of ", cache->k.size(2),
               " positions is full (", cache->len, " used, ", T, " more requested)");
      NoGradGuard ng;
      if (cache->len == 0 && cache->k.dtype() != k.dtype()) {
        // First use under autocast: keep the cache in the keys' dtype (bf16),
        // so attention sees one dtype and decoding casts nothing.
        cache->k = zeros(cache->k.shape(), k.options());
        cache->v = zeros(cache->v.shape(), v.options());
      }
      NQ_CHECK(cache->k.device() == k.device(), "CausalSelfAttention", "KV cache is on ",
               cache->k.device().str(), " but the model runs on ", k.device().str(),
               " (make the cache after moving the model)");
      cache->k.narrow(2, cache->len, T).copy_(k);
      cache->v.narrow(2, cache->len, T).copy_(v);
      cache->len += T;
      k = cache->k.narrow(2, 0, cache->len);
      v = cache->v.narrow(2, 0, cache->len);
      if (k.dtype() != q.dtype()) k = k.to(q.dtype()), v = v.to(q.dtype());
    }
    if (Hk != H) {  // GQA: each kv head serves H/Hk consecutive query heads
      const int64_t S = k.size(2), G = H / Hk;
      k = k.unsqueeze(2).expand({B, Hk, G, S, D}).reshape({B, H, S, D});
      v = v.unsqueeze(2).expand({B, Hk, G, S, D}).reshape({B, H, S, D});
    }
    AttentionOptions ao;
    ao.causal = true;
    ao.key_padding_mask = in.key_padding_mask;
    Tensor a = scaled_dot_product_attention(q, k, v, ao);  // (B,H,T,D), q's dtype
    Tensor y = o_proj->forward(a.transpose(1, 2).reshape({B, T, H * D}));
    return c_.dropout > 0 ? dropout(y, c_.dropout, is_training()) : y;
  }

  // On the module's device, in the config dtype (switched to the keys' dtype
  // on first use when they differ, i.e. under autocast).
  LayerKV make_cache(int64_t batch, int64_t max_len) const {
    LayerKV kv;
    const TensorOptions o = TensorOptions(c_.dtype).with_device(o_proj->weight.device());
    kv.k = zeros({batch, c_.n_kv_heads, max_len, c_.head_dim}, o);
    kv.v = zeros({batch, c_.n_kv_heads, max_len, c_.head_dim}, o);
    return kv;
  }
  const AttentionConfig& config() const { return c_; }

  std::shared_ptr<Linear> qkv_proj, q_proj, k_proj, v_proj, o_proj;

 private:
  AttentionConfig c_;
};

}  // namespace nq::nn
