#pragma once
// CausalLMConfig: every size and switch of a decoder-only model, with the two
// presets (GPT-2 layout, Llama/Qwen2 layout) and JSON (de)serialisation with
// errors that name the field.
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../ops/api.hpp"

namespace nq {

enum class NormKind { LayerNorm, RMSNorm };
enum class MLPKind { GELU, SwiGLU };
enum class PosKind { Learned, RoPE };

struct CausalLMConfig {
  std::string arch = "gpt2";  // informational: gpt2, llama, qwen2
  int64_t vocab_size = 256;
  int64_t max_seq_len = 256;  // positions the model can address
  int64_t d_model = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 0;  // 0: = n_heads (multi-head attention)
  int64_t head_dim = 0;    // 0: = d_model / n_heads
  int64_t d_ff = 0;        // 0: 4*d_model (GELU) or Llama's 8/3*d_model rounded to 64 (SwiGLU)
  NormKind norm = NormKind::LayerNorm;
  double norm_eps = 1e-5;
  MLPKind mlp = MLPKind::GELU;
  GeluApprox gelu_approx = GeluApprox::Tanh;
  PosKind pos = PosKind::Learned;
  double rope_theta = 10000.0;
  bool qkv_bias = true;
  bool attn_out_bias = true;
  bool mlp_bias = true;
  bool norm_bias = true;  // LayerNorm only
  bool tie_embeddings = true;
  bool fused_qkv = true;
  double dropout = 0.0;
  double init_std = 0.02;

  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t hdim() const { return head_dim > 0 ? head_dim : d_model / n_heads; }
  int64_t ff() const {
    if (d_ff > 0) return d_ff;
    if (mlp == MLPKind::GELU) return 4 * d_model;
    return (8 * d_model / 3 + 63) / 64 * 64;
  }

  // GPT-2 layout: learned positions, LayerNorm, GELU-tanh, biases, tied head.
  static CausalLMConfig gpt2(int64_t vocab, int64_t ctx, int64_t d, int64_t layers, int64_t heads) {
    CausalLMConfig c;
    c.arch = "gpt2", c.vocab_size = vocab, c.max_seq_len = ctx, c.d_model = d, c.n_layers = layers;
    c.n_heads = heads;
    return c;
  }
  // Llama/Qwen2 layout: RoPE, RMSNorm, SwiGLU, GQA, no biases (Qwen2: qkv_bias),
  // untied head by default.
  static CausalLMConfig llama(int64_t vocab, int64_t ctx, int64_t d, int64_t layers, int64_t heads,
                              int64_t kv_heads) {
    CausalLMConfig c;
    c.arch = "llama", c.vocab_size = vocab, c.max_seq_len = ctx, c.d_model = d, c.n_layers = layers;
    c.n_heads = heads, c.n_kv_heads = kv_heads;
    c.norm = NormKind::RMSNorm, c.norm_eps = 1e-6, c.mlp = MLPKind::SwiGLU, c.pos = PosKind::RoPE;
    c.qkv_bias = c.attn_out_bias = c.mlp_bias = c.norm_bias = false;
    c.tie_embeddings = false, c.fused_qkv = false;
    return c;
  }

  // Parameters of a model of these sizes (biases and norms aside), in double
  // so that absurd sizes cannot overflow.
  double approx_parameters() const {
    const double d = double(d_model), q = double(n_heads) * double(hdim()),
                 kv = double(kv_heads()) * double(hdim());
    const double per_layer = d * (2 * q + 2 * kv) + (mlp == MLPKind::SwiGLU ? 3 : 2) * d * double(ff());
    return double(vocab_size) * d * (tie_embeddings ? 1 : 2) +
           (pos == PosKind::Learned ? double(max_seq_len) * d : 0) + double(n_layers) * per_layer;
  }

  // The one set of bounds on what a config may describe, for our own configs
  // and Hugging Face ones alike: every size fits int32 (token ids are int32),
  // so no product the model code forms can overflow int64, and the model has
  // at most 1e12 parameters (refused here rather than failing an allocation
  // of terabytes later).
  static constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
  static constexpr double kMaxParameters = 1e12;

  void validate() const {
    auto positive = [](int64_t v, const char* f) {
      NQ_CHECK(v > 0, "CausalLMConfig", f, " must be positive, got ", v);
    };
    // Upper bounds first, before any size arithmetic (ff(), hdim(), products).
    const std::pair<int64_t, const char*> sizes[] = {{vocab_size, "vocab_size"}, {max_seq_len, "max_seq_len"},
                                                     {d_model, "d_model"},       {n_layers, "n_layers"},
                                                     {n_heads, "n_heads"},       {n_kv_heads, "n_kv_heads"},
                                                     {head_dim, "head_dim"},     {d_ff, "d_ff"}};
    for (const auto& [v, f] : sizes)
      NQ_CHECK(v <= kMaxSize, "CausalLMConfig", f, " is too large: ", v, " (at most 2^31 - 1)");
    positive(vocab_size, "vocab_size"), positive(max_seq_len, "max_seq_len"), positive(d_model, "d_model");
    positive(n_layers, "n_layers"), positive(n_heads, "n_heads");
    NQ_CHECK(head_dim >= 0, "CausalLMConfig", "head_dim must be >= 0 (0: d_model / n_heads), got ", head_dim);
    NQ_CHECK(d_ff >= 0, "CausalLMConfig", "d_ff must be >= 0 (0: the architecture's default), got ", d_ff);
    NQ_CHECK(n_kv_heads >= 0 && kv_heads() <= n_heads && n_heads % kv_heads() == 0, "CausalLMConfig",
             "n_heads (", n_heads, ") must be a multiple of n_kv_heads (", n_kv_heads, ")");
    NQ_CHECK(head_dim > 0 || d_model % n_heads == 0, "CausalLMConfig", "d_model (", d_model,
             ") must be divisible by n_heads (", n_heads, ") unless head_dim is set");
    NQ_CHECK(pos != PosKind::RoPE || hdim() % 2 == 0, "CausalLMConfig", "RoPE needs an even head_dim, got ",
             hdim());
    NQ_CHECK(norm_eps > 0, "CausalLMConfig", "norm_eps must be positive, got ", norm_eps);
    NQ_CHECK(dropout >= 0 && dropout < 1, "CausalLMConfig", "dropout must be in [0, 1), got ", dropout);
    NQ_CHECK(rope_theta > 0, "CausalLMConfig", "rope_theta must be positive, got ", rope_theta);
    const double params = approx_parameters();
    NQ_CHECK(params <= kMaxParameters, "CausalLMConfig", "these sizes (vocab_size ", vocab_size, ", d_model ",
             d_model, ", n_layers ", n_layers, ", d_ff ", ff(), ") make about ", params,
             " parameters, more than the 1e12 accepted");
  }

  nlohmann::json to_json() const {
    return {{"arch", arch},
            {"vocab_size", vocab_size},
            {"max_seq_len", max_seq_len},
            {"d_model", d_model},
            {"n_layers", n_layers},
            {"n_heads", n_heads},
            {"n_kv_heads", kv_heads()},
            {"head_dim", hdim()},
            {"d_ff", ff()},
            {"norm", norm == NormKind::LayerNorm ? "layernorm" : "rmsnorm"},
            {"norm_eps", norm_eps},
            {"mlp", mlp == MLPKind::GELU ? "gelu" : "swiglu"},
            {"gelu_approx", gelu_approx == GeluApprox::Tanh ? "tanh" : "none"},
            {"pos", pos == PosKind::Learned ? "learned" : "rope"},
            {"rope_theta", rope_theta},
            {"qkv_bias", qkv_bias},
            {"attn_out_bias", attn_out_bias},
            {"mlp_bias", mlp_bias},
            {"norm_bias", norm_bias},
            {"tie_embeddings", tie_embeddings},
            {"fused_qkv", fused_qkv},
            {"dropout", dropout},
            {"init_std", init_std}};
  }

  // Unknown keys are an error (a typo must not silently fall back to a default).
  static CausalLMConfig from_json(const nlohmann::json& j, const std::string& where = "config") {
    NQ_CHECK(j.is_object(), "CausalLMConfig", where, ": expected a JSON object");
    CausalLMConfig c;
    auto field = [&](const char* k, auto& dst) {
      using T = std::decay_t<decltype(dst)>;
      if (!j.contains(k)) return;
      const nlohmann::json& v = j.at(k);
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        // get<int64_t>() of 1e30 or of an unsigned above 2^63 would convert
        // out of range (undefined or wrapped): only JSON integers in range.
        NQ_CHECK(
            v.is_number_integer() && (!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(kMaxSize)),
            "CausalLMConfig", where, ": field '", k, "' must be an integer of at most ", kMaxSize, ", got ",
            v.dump());
      }
      try {
        dst = v.get<T>();
      } catch (const nlohmann::json::exception&) {
        fail("CausalLMConfig", where, ": field '", k, "' has the wrong type (", v.dump(), ")");
      }
    };
    auto choice = [&](const char* k, auto& dst, const char* a, auto va, const char* b, auto vb) {
      if (!j.contains(k)) return;
      std::string s;
      field(k, s);
      if (s == a)
        dst = va;
      else if (s == b)
        dst = vb;
      else
        fail("CausalLMConfig", where, ": field '", k, "' must be \"", a, "\" or \"", b, "\", got \"", s,
             "\"");
    };
    static const char* known[] = {"arch",      "vocab_size",    "max_seq_len", "d_model",   "n_layers",
                                  "n_heads",   "n_kv_heads",    "head_dim",    "d_ff",      "norm",
                                  "norm_eps",  "mlp",           "gelu_approx", "pos",       "rope_theta",
                                  "qkv_bias",  "attn_out_bias", "mlp_bias",    "norm_bias", "tie_embeddings",
                                  "fused_qkv", "dropout",       "init_std"};
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool ok = false;
      for (const char* k : known) ok = ok || it.key() == k;
      NQ_CHECK(ok, "CausalLMConfig", where, ": unknown field '", it.key(), "'");
    }
    field("arch", c.arch), field("vocab_size", c.vocab_size), field("max_seq_len", c.max_seq_len);
    field("d_model", c.d_model), field("n_layers", c.n_layers), field("n_heads", c.n_heads);
    field("n_kv_heads", c.n_kv_heads), field("head_dim", c.head_dim), field("d_ff", c.d_ff);
    choice("norm", c.norm, "layernorm", NormKind::LayerNorm, "rmsnorm", NormKind::RMSNorm);
    field("norm_eps", c.norm_eps);
    choice("mlp", c.mlp, "gelu", MLPKind::GELU, "swiglu", MLPKind::SwiGLU);
    choice("gelu_approx", c.gelu_approx, "tanh", GeluApprox::Tanh, "none", GeluApprox::None);
    choice("pos", c.pos, "learned", PosKind::Learned, "rope", PosKind::RoPE);
    field("rope_theta", c.rope_theta), field("qkv_bias", c.qkv_bias), field("attn_out_bias", c.attn_out_bias);
    field("mlp_bias", c.mlp_bias), field("norm_bias", c.norm_bias), field("tie_embeddings", c.tie_embeddings);
    field("fused_qkv", c.fused_qkv), field("dropout", c.dropout), field("init_std", c.init_std);
    try {
      c.validate();
    } catch (const Error& e) {
      fail("CausalLMConfig", where, ": ", e.what());
    }
    return c;
  }
};

}  // namespace nq
