// GGUF -> CausalLM: tiny llama and qwen2 files written as llama.cpp's
// converter writes them (tools/make_gguf_fixtures.py), checked against the
// logits and greedy tokens transformers computes from the same files; the
// RoPE row permutation; and the loader's errors.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nextquill/generate/generate.hpp"
#include "nextquill/io/gguf_model.hpp"
#include "nextquill/nextquill.hpp"

namespace gg = nq::io::gguf;

namespace {

const std::string kDir = std::string(NQ_TEST_DATA_DIR) + "/gguf/";

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "missing fixture ", path, " (tools/make_gguf_fixtures.py)");
  return nlohmann::json::parse(f);
}

void check_against_transformers(const std::string& name) {
  CAPTURE(name);
  const gg::File f = gg::File::open(kDir + name + ".gguf");
  auto model = gg::load_gguf_model(f);
  const nlohmann::json ref = read_json(kDir + name + "_logits.json");
  nq::NoGradGuard ng;
  const int64_t V = model->config().vocab_size;
  for (size_t s = 0; s < ref["sequences"].size(); ++s) {
    CAPTURE(s);
    const auto ids = ref["sequences"][s].get<std::vector<int64_t>>();
    const auto want = ref["logits"][s].get<std::vector<std::vector<double>>>();
    REQUIRE(want.size() == ids.size());
    nq::Tensor y = model->forward(nq::from_vector(ids, {1, int64_t(ids.size())})).contiguous();
    const float* p = y.data_ptr<float>();
    double max_ref = 0, max_err = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
      REQUIRE(int64_t(want[t].size()) == V);
      for (int64_t v = 0; v < V; ++v) {
        max_ref = std::max(max_ref, std::abs(want[t][size_t(v)]));
        max_err = std::max(max_err, std::abs(double(p[int64_t(t) * V + v]) - want[t][size_t(v)]));
      }
    }
    CHECK(max_ref > 0.1);  // the fixture's logits are not trivially small
    CHECK(max_err <= 1e-4 * max_ref);
  }
  if (ref.contains("greedy")) {
    nq::GenerationOptions go;
    const auto want = ref["greedy"].get<std::vector<int64_t>>();
    go.max_new_tokens = int64_t(want.size());
    const auto res = nq::generate(*model, {ref["sequences"][0].get<std::vector<int64_t>>()}, go);
    CHECK(res.tokens[0] == want);
  }
}

// A tiny llama file with F32 tensors, for the loader's error cases.
struct TinyLlama {
  int64_t d = 8, layers = 1, heads = 2, kv = 1, ff = 16, vocab = 12;
  std::string arch = "llama";
  std::vector<std::string> skip;  // tensors left out
  std::string extra;              // an extra tensor's name
  std::string wrong_shape;        // a tensor written with one row too many
  bool ff_key = true;             // write llama.feed_forward_length

  std::string bytes() const {
    gg::Writer w;
    w.set_string("general.architecture", arch);
    const std::string p = arch + ".";
    w.set_u32(p + "block_count", uint32_t(layers));
    w.set_u32(p + "context_length", 32);
    w.set_u32(p + "embedding_length", uint32_t(d));
    if (ff_key) w.set_u32(p + "feed_forward_length", uint32_t(ff));
    w.set_u32(p + "attention.head_count", uint32_t(heads));
    w.set_u32(p + "attention.head_count_kv", uint32_t(kv));
    w.set_f32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    const int64_t hd = d / heads;
    auto add = [&](const std::string& n, std::vector<int64_t> ne) {
      for (const auto& s : skip)
        if (s == n) return;
      if (n == wrong_shape) ne.back() += 1;
      int64_t numel = 1;
      for (int64_t x : ne) numel *= x;
      std::vector<float> v(static_cast<size_t>(numel));
      for (size_t i = 0; i < v.size(); ++i) v[i] = float(std::sin(double(i) * 0.37)) * 0.1f;
      w.add_f32(n, ne, v);
    };
    add("token_embd.weight", {d, vocab});
    for (int64_t i = 0; i < layers; ++i) {
      const std::string B = "blk." + std::to_string(i) + ".";
      add(B + "attn_norm.weight", {d});
      add(B + "attn_q.weight", {d, heads * hd});
      add(B + "attn_k.weight", {d, kv * hd});
      add(B + "attn_v.weight", {d, kv * hd});
      add(B + "attn_output.weight", {heads * hd, d});
      add(B + "ffn_norm.weight", {d});
      add(B + "ffn_gate.weight", {d, ff});
      add(B + "ffn_up.weight", {d, ff});
      add(B + "ffn_down.weight", {ff, d});
    }
    add("output_norm.weight", {d});
    if (!extra.empty()) add(extra, {4});
    return w.bytes();
  }
};

std::string load_error(const TinyLlama& t) {
  const std::string b = t.bytes();
  try {
    const gg::File f =
        gg::File::parse_bytes({reinterpret_cast<const uint8_t*>(b.data()), b.size()}, "tiny.gguf");
    gg::load_gguf_model(f);
  } catch (const nq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("gguf model: a tiny llama (permuted q/k, GQA, untied head) matches transformers") {
  check_against_transformers("tiny_llama");
}

TEST_CASE("gguf model: a tiny qwen2 (q/k/v biases, tied head) matches transformers") {
  check_against_transformers("tiny_qwen2");
}

TEST_CASE("gguf model: the RoPE row permutation and its inverse") {
  // 2 heads of dim 4, 1 column: HF rows 0..7; llama.cpp stores, per head,
  // rows (0, 2, 1, 3): HF row s*half + j at 2j + s.
  const std::vector<float> hf = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<float> stored(8), back(8);
  gg::permute_rope_rows(hf.data(), stored.data(), 2, 8, 1);
  CHECK(stored == std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7});
  gg::unpermute_rope_rows(stored.data(), back.data(), 2, 8, 1);
  CHECK(back == hf);
}

TEST_CASE("gguf model: a well-formed tiny file loads with the metadata's sizes") {
  const std::string b = TinyLlama{}.bytes();
  const gg::File f =
      gg::File::parse_bytes({reinterpret_cast<const uint8_t*>(b.data()), b.size()}, "tiny.gguf");
  const nq::CausalLMConfig c = gg::config_from_gguf(f);
  CHECK(c.arch == "llama");
  CHECK(c.d_model == 8);
  CHECK(c.kv_heads() == 1);
  CHECK(c.ff() == 16);
  CHECK(c.tie_embeddings);
  CHECK(c.norm_eps == doctest::Approx(1e-5));
  CHECK(c.rope_theta == 10000.0);
  auto m = gg::load_gguf_model(f);
  CHECK(m->config().vocab_size == 12);
}

TEST_CASE("gguf model: missing, extra and misshapen tensors and unsupported metadata are clear errors") {
  TinyLlama missing;
  missing.skip = {"blk.0.ffn_up.weight"};
  CHECK(load_error(missing).find("missing tensor 'blk.0.ffn_up.weight'") != std::string::npos);

  TinyLlama extra;
  extra.extra = "blk.0.attn_q_norm.weight";
  CHECK(load_error(extra).find("the model does not use: blk.0.attn_q_norm.weight") != std::string::npos);

  TinyLlama shape;
  shape.wrong_shape = "blk.0.attn_v.weight";
  const std::string e = load_error(shape);
  CHECK(e.find("tensor 'blk.0.attn_v.weight'") != std::string::npos);
  CHECK(e.find("has shape") != std::string::npos);

  TinyLlama arch;
  arch.arch = "gemma";
  CHECK(load_error(arch).find("general.architecture 'gemma' is not supported") != std::string::npos);

  TinyLlama no_ff;
  no_ff.ff_key = false;
  CHECK(load_error(no_ff).find("tiny.gguf: missing metadata key 'llama.feed_forward_length'") !=
        std::string::npos);
}
