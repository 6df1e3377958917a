#pragma once
// GGUF -> CausalLM for the `llama` and `qwen2` architectures (SmolLM2, Llama
// 2/3 without RoPE scaling, Qwen2/2.5, Mistral without sliding windows).
//
// llama.cpp's converter permutes the rows of q and k for `llama` so that its
// RoPE can rotate adjacent pairs: per head, HF row s*half + j (s in {0, 1},
// j < half = head_dim/2) is stored at row 2*j + s. nextquill's RoPE is HF's
// rotate-half, so the loader undoes that; `qwen2` files are not permuted.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../autograd/grad_mode.hpp"
#include "../models/causal_lm.hpp"
#include "../nn/init.hpp"
#include "gguf.hpp"

namespace nq::io::gguf {

// The model's hyperparameters from `<arch>.*` keys. Errors name the key.
inline CausalLMConfig config_from_gguf(const File& f) {
  const std::string arch = f.get_string("general.architecture");
  NQ_CHECK(arch == "llama" || arch == "qwen2", "gguf", f.path(), ": general.architecture '", arch,
           "' is not supported (llama, qwen2)");
  const std::string p = arch + ".";
  auto size = [&](const std::string& key, std::optional<int64_t> def = std::nullopt) -> int64_t {
    const std::optional<int64_t> v = f.opt_int(key);
    if (!v && !def) fail("gguf", f.path(), ": missing metadata key '", key, "'");
    const int64_t x = v ? *v : *def;
    NQ_CHECK(x >= 1 && x <= CausalLMConfig::kMaxSize, "gguf", f.path(), ": metadata key '", key, "' is ", x,
             ", must be in [1, 2^31 - 1]");
    return x;
  };
  const TensorInfo* embd = f.find_tensor("token_embd.weight");
  NQ_CHECK(embd, "gguf", f.path(), ": missing tensor 'token_embd.weight'");
  NQ_CHECK(embd->ne.size() == 2, "gguf", f.path(), ": tensor 'token_embd.weight' must be 2-D");
  const int64_t heads = size(p + "attention.head_count");
  CausalLMConfig c = CausalLMConfig::llama(
      size(p + "vocab_size", embd->ne[1]), size(p + "context_length", 2048), size(p + "embedding_length"),
      size(p + "block_count"), heads, size(p + "attention.head_count_kv", heads));
  c.arch = arch;
  c.d_ff = size(p + "feed_forward_length");
  if (f.has(p + "attention.key_length")) c.head_dim = size(p + "attention.key_length");
  if (f.has(p + "attention.value_length"))
    NQ_CHECK(f.get_int(p + "attention.value_length") == c.hdim(), "gguf", f.path(), ": ", p,
             "attention.value_length differs from the key length; not supported");
  c.norm_eps = f.opt_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.rope_theta = f.opt_float(p + "rope.freq_base").value_or(10000.0);
  if (f.has(p + "rope.dimension_count"))
    NQ_CHECK(f.get_int(p + "rope.dimension_count") == c.hdim(), "gguf", f.path(), ": ", p,
             "rope.dimension_count is ", f.get_int(p + "rope.dimension_count"), " but the head dimension is ",
             c.hdim(), "; partial rotary embeddings are not supported");
  if (auto st = f.opt_string(p + "rope.scaling.type"))
    NQ_CHECK(*st == "none", "gguf", f.path(), ": ", p, "rope.scaling.type '", *st, "' is not supported");
  NQ_CHECK(!f.find_tensor("rope_freqs.weight"), "gguf", f.path(),
           ": tensor 'rope_freqs.weight' (Llama 3.1 RoPE scaling) is not supported");
  if (f.has(p + "attention.sliding_window"))
    fail("gguf", f.path(), ": ", p, "attention.sliding_window: sliding-window attention is not supported");
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.attn_out_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
  c.tie_embeddings = f.find_tensor("output.weight") == nullptr;
  try {
    c.validate();
  } catch (const Error& e) {
    fail("gguf", f.path(), ": ", e.what());
  }
  return c;
}

// One GGUF tensor <-> one nextquill parameter; `permute_heads` > 0 marks a
// llama q/k tensor whose rows are in llama.cpp's interleaved RoPE order.
struct GGUFName {
  std::string gguf, nq;
  int64_t permute_heads = 0;
};

inline std::vector<GGUFName> gguf_name_table(const CausalLMConfig& c) {
  std::vector<GGUFName> t;
  const bool permuted = c.arch == "llama";
  t.push_back({"token_embd.weight", "embed.weight"});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string B = "blk." + std::to_string(i) + ".", L = "layers." + std::to_string(i) + ".";
    t.push_back({B + "attn_norm.weight", L + "attn_norm.weight"});
    const struct {
      const char *g, *n;
      int64_t heads;
    } qkv[] = {{"attn_q", "q_proj", permuted ? c.n_heads : 0},
               {"attn_k", "k_proj", permuted ? c.kv_heads() : 0},
               {"attn_v", "v_proj", 0}};
    for (const auto& e : qkv) {
      t.push_back({B + e.g + ".weight", L + "attn." + e.n + ".weight", e.heads});
      if (c.qkv_bias) t.push_back({B + e.g + ".bias", L + "attn." + e.n + ".bias", e.heads});
    }
    t.push_back({B + "attn_output.weight", L + "attn.o_proj.weight"});
    if (c.attn_out_bias) t.push_back({B + "attn_output.bias", L + "attn.o_proj.bias"});
    t.push_back({B + "ffn_norm.weight", L + "mlp_norm.weight"});
    t.push_back({B + "ffn_gate.weight", L + "mlp.gate_proj.weight"});
    t.push_back({B + "ffn_up.weight", L + "mlp.up_proj.weight"});
    t.push_back({B + "ffn_down.weight", L + "mlp.down_proj.weight"});
  }
  t.push_back({"output_norm.weight", "norm.weight"});
  if (!c.tie_embeddings) t.push_back({"output.weight", "lm_head.weight"});
  return t;
}

// Rows of a (heads*head_dim, cols) matrix from llama.cpp's order back to HF's:
// within each head, stored row 2*j + s is HF row s*half + j.
inline void unpermute_rope_rows(const float* src, float* dst, int64_t heads, int64_t rows, int64_t cols) {
  const int64_t hd = rows / heads, half = hd / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(dst + (h * hd + s * half + j) * cols, src + (h * hd + 2 * j + s) * cols,
                    size_t(cols) * sizeof(float));
}
// The inverse, for writers (adapter export): HF order -> llama.cpp's.
inline void permute_rope_rows(const float* src, float* dst, int64_t heads, int64_t rows, int64_t cols) {
  const int64_t hd = rows / heads, half = hd / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(dst + (h * hd + 2 * j + s) * cols, src + (h * hd + s * half + j) * cols,
                    size_t(cols) * sizeof(float));
}

// Builds the CausalLM of a GGUF file: every tensor is dequantized straight
// into its parameter (float32), q/k rows unpermuted for llama. Every model
// tensor must be present with its shape; a tensor the model does not use is
// an error.
inline std::shared_ptr<CausalLM> load_gguf_model(const File& f) {
  const CausalLMConfig c = config_from_gguf(f);
  std::shared_ptr<CausalLM> model;
  {
    nn::init::SkipInitGuard skip;  // every parameter is overwritten below
    model = std::make_shared<CausalLM>(c, 0, kFloat32);
  }
  std::map<std::string, Tensor> params;
  for (auto& [n, t] : model->named_parameters()) params[n] = t;
  NoGradGuard ng;
  std::vector<float> tmp;
  size_t used = 0;
  const std::vector<GGUFName> table = gguf_name_table(c);
  NQ_CHECK(table.size() == params.size(), "gguf", "internal: the name table covers ", table.size(), " of ",
           params.size(), " parameters");
  for (const auto& e : table) {
    const TensorInfo* t = f.find_tensor(e.gguf);
    NQ_CHECK(t, "gguf", f.path(), ": missing tensor '", e.gguf, "' (for ", e.nq, ")");
    ++used;
    Tensor dst = params.at(e.nq);
    const Shape want = dst.shape();
    const std::vector<int64_t> have = t->shape();
    if (!std::equal(have.begin(), have.end(), want.begin(), want.end()))
      fail("gguf", f.path(), ": tensor '", e.gguf, "' (info at byte ", t->info_offset, ") has shape ",
           shape_str(Shape(have.begin(), have.end())), " but the metadata implies ", shape_str(want));
    NQ_CHECK(dst.is_contiguous(), "gguf", "parameter ", e.nq, " is not contiguous");
    float* out = dst.data_ptr<float>();
    if (e.permute_heads == 0) {
      f.dequantize_into(*t, out);
      continue;
    }
    const int64_t rows = t->ne.size() == 1 ? t->ne[0] : t->rows();  // a bias is one column
    NQ_CHECK(rows % (2 * e.permute_heads) == 0, "gguf", f.path(), ": tensor '", e.gguf, "' has ", rows,
             " rows, not a multiple of 2 x ", e.permute_heads, " heads");
    tmp.resize(size_t(t->numel()));
    f.dequantize_into(*t, tmp.data());
    unpermute_rope_rows(tmp.data(), out, e.permute_heads, rows, t->numel() / rows);
  }
  if (used != f.tensors().size()) {
    std::set<std::string> known;
    for (const auto& e : table) known.insert(e.gguf);
    std::string extra;
    size_t n = 0;
    for (const auto& t : f.tensors())
      if (!known.count(t.name) && n++ < 8) extra += (extra.empty() ? "" : ", ") + t.name;
    fail("gguf", f.path(), ": ", f.tensors().size() - used, " tensor(s) the model does not use: ", extra);
  }
  return model;
}

}  // namespace nq::io::gguf
