#pragma once
// Hugging Face import/export for CausalLM: reads a model directory holding
// config.json and model.safetensors (or model.safetensors.index.json with
// shards) of the GPT-2, Llama or Qwen2 families and builds the matching
// CausalLM; writes the same layout back.
//
// GPT-2 stores its projections as Conv1D weights (in, out); nextquill's
// Linear keeps (out, in) like torch.nn.Linear, so those are transposed on
// the way in and out. Llama/Qwen2 names map one to one.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../models/causal_lm.hpp"
#include "tensor_io.hpp"

namespace nq::io {

namespace detail {
// Parses JSON text; `path` names it in errors.
inline nlohmann::json parse_json_text(std::string_view text, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    fail("hf", path, ": invalid JSON: ", e.what());
  }
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  NQ_CHECK(in, "hf", "cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  NQ_CHECK(!in.bad(), "hf", "cannot read '", path, "'");
  return parse_json_text(ss.str(), path);
}
}  // namespace detail

// Parses a transformers config.json into a CausalLMConfig. Every field that
// is read is type-checked and errors name the file and the field.
inline CausalLMConfig hf_config_from_json(const nlohmann::json& j, const std::string& file = "config.json") {
  NQ_CHECK(j.is_object(), "hf", file, ": expected a JSON object");
  auto present = [&](const nlohmann::json& o, const char* key) {
    return o.contains(key) && !o.at(key).is_null();
  };
  // A string, bool or (finite) number; `where` prefixes nested fields.
  auto value_of = [&](const nlohmann::json& o, const std::string& where, const char* key, auto def) {
    using T = decltype(def);
    if (!present(o, key)) return def;
    const nlohmann::json& v = o.at(key);
    const bool ok = std::is_same_v<T, std::string> ? v.is_string()
                    : std::is_same_v<T, bool>      ? v.is_boolean()
                                                   : v.is_number();
    if (!ok)
      fail("hf", file, ": field '", where, key, "' must be ",
           std::is_same_v<T, std::string> ? "a string"
           : std::is_same_v<T, bool>      ? "true or false"
                                          : "a number",
           ", got ", v.dump());
    const T x = v.get<T>();
    if constexpr (std::is_same_v<T, double>)
      NQ_CHECK(std::isfinite(x), "hf", file, ": field '", where, key, "' must be finite, got ", v.dump());
    return x;
  };
  auto get = [&](const char* key, auto def) { return value_of(j, "", key, def); };
  // A size: a JSON integer in [lo, CausalLMConfig::kMaxSize].
  auto size_of = [&](const char* key, int64_t lo) -> int64_t {
    const nlohmann::json& v = j.at(key);
    NQ_CHECK(v.is_number_integer(), "hf", file, ": field '", key, "' must be an integer, got ", v.dump());
    const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(CausalLMConfig::kMaxSize)
                                                 : v.get<int64_t>() <= CausalLMConfig::kMaxSize;
    NQ_CHECK(in_range && v.get<int64_t>() >= lo, "hf", file, ": field '", key, "' is ", v.dump(),
             ", must be in [", lo, ", ", CausalLMConfig::kMaxSize, "]");
    return v.get<int64_t>();
  };
  auto need = [&](const char* key) -> int64_t {
    NQ_CHECK(present(j, key), "hf", file, ": missing field '", key, "'");
    return size_of(key, 1);
  };
  // Optional sizes; 0 keeps nextquill's default (HF writes null for that).
  auto opt_size = [&](const char* key, int64_t def, int64_t lo) {
    return present(j, key) ? size_of(key, lo) : def;
  };
  const std::string type = get("model_type", std::string());
  CausalLMConfig c;
  if (type == "gpt2") {
    c = CausalLMConfig::gpt2(need("vocab_size"), need("n_positions"), need("n_embd"), need("n_layer"),
                             need("n_head"));
    c.d_ff = opt_size("n_inner", 0, 0);
    c.norm_eps = get("layer_norm_epsilon", 1e-5);
    const std::string act = get("activation_function", std::string("gelu_new"));
    if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast")
      c.gelu_approx = GeluApprox::Tanh;
    else if (act == "gelu")
      c.gelu_approx = GeluApprox::None;
    else
      fail("hf", file, ": activation_function '", act, "' is not supported (gelu_new, gelu)");
    NQ_CHECK(!get("scale_attn_by_inverse_layer_idx", false) && !get("reorder_and_upcast_attn", false), "hf",
             file, ": scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported");
    NQ_CHECK(get("scale_attn_weights", true), "hf", file, ": scale_attn_weights=false is not supported");
    c.tie_embeddings = get("tie_word_embeddings", true);
  } else if (type == "llama" || type == "qwen2" || type == "mistral") {
    c = CausalLMConfig::llama(need("vocab_size"), opt_size("max_position_embeddings", 2048, 1),
                              need("hidden_size"), need("num_hidden_layers"), need("num_attention_heads"),
                              opt_size("num_key_value_heads", need("num_attention_heads"), 1));
    c.arch = type;
    c.d_ff = need("intermediate_size");
    c.head_dim = opt_size("head_dim", 0, 0);
    c.norm_eps = get("rms_norm_eps", 1e-6);
    const std::string act = get("hidden_act", std::string("silu"));
    NQ_CHECK(act == "silu", "hf", file, ": hidden_act '", act, "' is not supported (silu)");
    double theta = get("rope_theta", 10000.0);
    if (present(j, "rope_parameters")) {
      const auto& rp = j.at("rope_parameters");
      NQ_CHECK(rp.is_object(), "hf", file, ": field 'rope_parameters' must be an object, got ", rp.dump());
      theta = value_of(rp, "rope_parameters.", "rope_theta", theta);
      const std::string rt = value_of(rp, "rope_parameters.", "rope_type", std::string("default"));
      NQ_CHECK(rt == "default", "hf", file, ": rope_type '", rt, "' is not supported (default)");
    }
    NQ_CHECK(!j.contains("rope_scaling") || j["rope_scaling"].is_null(), "hf", file,
             ": rope_scaling is not supported");
    c.rope_theta = theta;
    if (type == "qwen2") {
      c.qkv_bias = true;
      NQ_CHECK(!get("use_sliding_window", false), "hf", file, ": sliding-window attention is not supported");
    } else {
      c.qkv_bias = c.attn_out_bias = get("attention_bias", false);
    }
    c.mlp_bias = get("mlp_bias", false);
    c.tie_embeddings = get("tie_word_embeddings", false);
  } else {
    fail("hf", file, ": model_type '", type, "' is not supported (gpt2, llama, qwen2, mistral)");
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail("hf", file, ": ", e.what());
  }
  return c;
}

// One HF tensor <-> one nextquill parameter.
struct HFName {
  std::string hf, nq;
  bool transpose = false;  // GPT-2 Conv1D
};

// The full name table for a config (LoRA adapters excluded: see hf_name_of).
inline std::vector<HFName> hf_name_table(const CausalLMConfig& c) {
  std::vector<HFName> t;
  const bool gpt2 = c.arch == "gpt2";
  if (gpt2) {
    t.push_back({"transformer.wte.weight", "embed.weight"});
    t.push_back({"transformer.wpe.weight", "pos_embed.weight"});
  } else {
    t.push_back({"model.embed_tokens.weight", "embed.weight"});
  }
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string L = "layers." + std::to_string(i) + ".";
    if (gpt2) {
      const std::string H = "transformer.h." + std::to_string(i) + ".";
      t.push_back({H + "ln_1.weight", L + "attn_norm.weight"});
      t.push_back({H + "ln_1.bias", L + "attn_norm.bias"});
      t.push_back({H + "attn.c_attn.weight", L + "attn.qkv_proj.weight", true});
      t.push_back({H + "attn.c_attn.bias", L + "attn.qkv_proj.bias"});
      t.push_back({H + "attn.c_proj.weight", L + "attn.o_proj.weight", true});
      t.push_back({H + "attn.c_proj.bias", L + "attn.o_proj.bias"});
      t.push_back({H + "ln_2.weight", L + "mlp_norm.weight"});
      t.push_back({H + "ln_2.bias", L + "mlp_norm.bias"});
      t.push_back({H + "mlp.c_fc.weight", L + "mlp.fc.weight", true});
      t.push_back({H + "mlp.c_fc.bias", L + "mlp.fc.bias"});
      t.push_back({H + "mlp.c_proj.weight", L + "mlp.proj.weight", true});
      t.push_back({H + "mlp.c_proj.bias", L + "mlp.proj.bias"});
    } else {
      const std::string H = "model.layers." + std::to_string(i) + ".";
      t.push_back({H + "input_layernorm.weight", L + "attn_norm.weight"});
      for (const char* p : {"q_proj", "k_proj", "v_proj"}) {
        t.push_back({H + "self_attn." + p + ".weight", L + "attn." + p + ".weight"});
        if (c.qkv_bias) t.push_back({H + "self_attn." + p + ".bias", L + "attn." + p + ".bias"});
      }
      t.push_back({H + "self_attn.o_proj.weight", L + "attn.o_proj.weight"});
      if (c.attn_out_bias) t.push_back({H + "self_attn.o_proj.bias", L + "attn.o_proj.bias"});
      t.push_back({H + "post_attention_layernorm.weight", L + "mlp_norm.weight"});
      for (const char* p : {"gate_proj", "up_proj", "down_proj"}) {
        t.push_back({H + "mlp." + p + ".weight", L + "mlp." + p + ".weight"});
        if (c.mlp_bias) t.push_back({H + "mlp." + p + ".bias", L + "mlp." + p + ".bias"});
      }
    }
  }
  t.push_back({gpt2 ? "transformer.ln_f.weight" : "model.norm.weight", "norm.weight"});
  if (gpt2) t.push_back({"transformer.ln_f.bias", "norm.bias"});
  if (!c.tie_embeddings) t.push_back({"lm_head.weight", "lm_head.weight"});
  return t;
}

// nextquill name -> HF name for any parameter, including LoRA adapters
// ("layers.0.attn.q_proj.lora_A.weight" -> "model.layers.0.self_attn.q_proj.lora_A.weight").
inline std::string hf_name_of(const CausalLMConfig& c, const std::string& nq_name) {
  for (const auto& e : hf_name_table(c))
    if (e.nq == nq_name) return e.hf;
  for (const char* ad : {".lora_A.weight", ".lora_B.weight"}) {
    const std::string suffix = ad;
    if (nq_name.size() > suffix.size() && nq_name.ends_with(suffix)) {
      const std::string base = nq_name.substr(0, nq_name.size() - suffix.size()) + ".weight";
      for (const auto& e : hf_name_table(c))
        if (e.nq == base) return e.hf.substr(0, e.hf.size() - 7) + suffix;
    }
  }
  fail("hf", "no Hugging Face name for parameter '", nq_name, "'");
}

// Loads every tensor of a model directory (single file or sharded index).
inline std::map<std::string, RawTensor> read_hf_weights(const std::string& dir) {
  namespace fs = std::filesystem;
  std::map<std::string, RawTensor> out;
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  std::vector<std::string> files;
  if (fs::exists(single)) {
    files.push_back(single);
  } else if (fs::exists(index)) {
    auto j = detail::read_json_file(index);
    NQ_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), "hf", index, ": missing 'weight_map'");
    std::set<std::string> shards;
    for (auto& [k, v] : j["weight_map"].items()) {
      NQ_CHECK(v.is_string(), "hf", index, ": weight_map['", k, "'] is not a file name");
      const std::string f = v.get<std::string>();
      NQ_CHECK(f.find('/') == std::string::npos && f.find("..") == std::string::npos, "hf", index,
               ": shard name '", f, "' must be a plain file name");
      shards.insert(f);
    }
    for (auto& s : shards) files.push_back(dir + "/" + s);
  } else {
    fail("hf", dir,
         ": no model.safetensors or model.safetensors.index.json (only safetensors weights are read)");
  }
  for (const auto& f : files) {
    SafetensorsFile sf = read_safetensors(f);
    for (auto& [name, t] : sf.tensors) {
      NQ_CHECK(!out.count(name), "hf", f, ": tensor '", name, "' appears in more than one shard");
      out[name] = std::move(t);
    }
  }
  return out;
}

// Builds a CausalLM from a Hugging Face model directory. Every model tensor
// must be present with the right shape; unknown tensors are an error (buffers
// such as GPT-2's attn.bias mask and rotary inv_freq are skipped). The model
// is built and loaded on the CPU, then moved to `device` (Module::to).
inline std::shared_ptr<CausalLM> load_hf(const std::string& dir, DType dtype = kFloat32,
                                         Device device = Device::cpu()) {
  const std::string cfg_path = dir + "/config.json";
  CausalLMConfig c = hf_config_from_json(detail::read_json_file(cfg_path), cfg_path);
  auto model = std::make_shared<CausalLM>(c, 0, dtype);
  auto raw = read_hf_weights(dir);
  // GPT2Model checkpoints (no LM head) omit the "transformer." prefix.
  if (c.arch == "gpt2" && !raw.count("transformer.wte.weight") && raw.count("wte.weight")) {
    std::map<std::string, RawTensor> fixed;
    for (auto& [k, v] : raw) fixed["transformer." + k] = std::move(v);
    raw = std::move(fixed);
  }
  std::map<std::string, Tensor> params;
  for (auto& [n, t] : model->named_parameters()) params[n] = t;
  std::set<std::string> used;
  NoGradGuard ng;
  for (const auto& e : hf_name_table(c)) {
    auto it = raw.find(e.hf);
    NQ_CHECK(it != raw.end(), "hf", dir, ": missing tensor '", e.hf, "' (for ", e.nq, ")");
    Tensor src = from_raw_weights(it->second, dtype, dir + ": '" + e.hf + "'");
    if (e.transpose) {
      NQ_CHECK(src.dim() == 2, "hf", dir, ": '", e.hf, "' must be 2-D, got ", shape_str(src.shape()));
      src = src.t();
    }
    Tensor dst = params.at(e.nq);
    NQ_CHECK(src.shape() == dst.shape(), "hf", dir, ": tensor '", e.hf, "' has shape ",
             shape_str(e.transpose ? src.t().shape() : src.shape()), " but config.json implies ",
             shape_str(e.transpose ? dst.t().shape() : dst.shape()));
    dst.copy_(src);
    used.insert(e.hf);
  }
  std::vector<std::string> unknown;
  for (auto& [k, v] : raw) {
    if (used.count(k)) continue;
    const bool buffer =
        k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias") || k.ends_with("inv_freq");
    const bool tied_head = k == "lm_head.weight" && c.tie_embeddings;
    if (!buffer && !tied_head) unknown.push_back(k);
  }
  if (!unknown.empty()) {
    std::string s;
    for (size_t i = 0; i < unknown.size() && i < 10; ++i) s += (i ? ", " : "") + unknown[i];
    fail("hf", dir, ": ", unknown.size(), " tensor(s) the model does not use: ", s);
  }
  if (device != Device::cpu()) model->to(device);
  return model;
}

// Writes config.json + model.safetensors in the Hugging Face layout of the
// model's arch (gpt2, llama or qwen2), so transformers can load it. `dtype`
// is the safetensors dtype of the weights ("F32", "BF16" or "F16"). A model
// on the GPU is copied to the host tensor by tensor (to_raw).
inline void save_hf(const CausalLM& model, const std::string& dir, const std::string& dtype = "F32") {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const CausalLMConfig& c = model.config();
  nlohmann::json j;
  if (c.arch == "gpt2") {
    NQ_CHECK(
        c.pos == PosKind::Learned && c.norm == NormKind::LayerNorm && c.mlp == MLPKind::GELU && c.fused_qkv,
        "hf", "save_hf: a gpt2 export needs the GPT-2 layout");
    j = {{"model_type", "gpt2"},
         {"architectures", {"GPT2LMHeadModel"}},
         {"vocab_size", c.vocab_size},
         {"n_positions", c.max_seq_len},
         {"n_embd", c.d_model},
         {"n_layer", c.n_layers},
         {"n_head", c.n_heads},
         {"n_inner", c.ff()},
         {"layer_norm_epsilon", c.norm_eps},
         {"activation_function", c.gelu_approx == GeluApprox::Tanh ? "gelu_new" : "gelu"},
         {"resid_pdrop", 0.0},
         {"embd_pdrop", 0.0},
         {"attn_pdrop", 0.0},
         {"tie_word_embeddings", c.tie_embeddings}};
  } else {
    NQ_CHECK(
        c.pos == PosKind::RoPE && c.norm == NormKind::RMSNorm && c.mlp == MLPKind::SwiGLU && !c.fused_qkv,
        "hf", "save_hf: a llama/qwen2 export needs the Llama layout");
    const std::string type = c.arch == "qwen2" ? "qwen2" : "llama";
    j = {{"model_type", type},
         {"architectures", {type == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
         {"vocab_size", c.vocab_size},
         {"max_position_embeddings", c.max_seq_len},
         {"hidden_size", c.d_model},
         {"intermediate_size", c.ff()},
         {"num_hidden_layers", c.n_layers},
         {"num_attention_heads", c.n_heads},
         {"num_key_value_heads", c.kv_heads()},
         {"head_dim", c.hdim()},
         {"rms_norm_eps", c.norm_eps},
         {"rope_theta", c.rope_theta},
         {"hidden_act", "silu"},
         {"mlp_bias", c.mlp_bias},
         {"tie_word_embeddings", c.tie_embeddings}};
    if (type == "llama") j["attention_bias"] = c.qkv_bias;
  }
  std::map<std::string, Tensor> params;
  for (auto& [n, t] : model.named_parameters()) params[n] = t;
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& e : hf_name_table(c)) {
    Tensor t = params.at(e.nq);
    out.emplace_back(e.hf, e.transpose ? t.t().contiguous() : t);
  }
  NQ_CHECK(dtype == "F32" || dtype == "BF16" || dtype == "F16", "hf",
           "save_hf: dtype must be F32, BF16 or F16, got '", dtype, "'");
  j["torch_dtype"] = dtype == "F32" ? "float32" : dtype == "BF16" ? "bfloat16" : "float16";
  save_tensors(dir + "/model.safetensors", out, {{"format", "pt"}}, dtype);
  write_file_atomic(dir + "/config.json", "hf", j.dump(2) + "\n");
}

}  // namespace nq::io
