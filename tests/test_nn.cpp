// nn::Module mechanics (names, flat buffers, state dicts, modes), layer
// behaviour (GQA, KV cache, padding) and CausalLMConfig parsing.
#include <doctest/doctest.h>

#include <nextquill/nextquill.hpp>

#include "test_util.hpp"

using nqtest::contains;
using nqtest::error_of;

TEST_CASE("Module: parameters live in one flat buffer, gradients in another") {
  auto cfg = nq::CausalLMConfig::gpt2(32, 16, 16, 2, 2);
  nq::CausalLM m(cfg, 1);
  const auto& flat = m.flat();
  int64_t n = 0;
  for (auto& s : flat.slots) {
    CHECK(s.param.storage() == flat.data.storage());
    CHECK(s.param.grad().storage() == flat.grad.storage());
    CHECK(s.param.is_contiguous());
    n += s.param.numel();
  }
  CHECK(n == m.num_parameters());
  CHECK(flat.data.numel() >= n);
  // Backward accumulates into the flat gradient buffer; zero_grad is one memset.
  nq::Tensor ids = nq::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  m.forward(ids).sum().backward();
  CHECK(nq::abs(flat.grad).sum().item() > 0);
  CHECK(m.embed->weight.grad().storage() == flat.grad.storage());
  m.zero_grad();
  CHECK(nq::abs(flat.grad).sum().item() == 0);
  // Parameter names follow the module tree.
  auto names = m.named_parameters();
  CHECK(names.front().first == "embed.weight");
  CHECK(names[1].first == "pos_embed.weight");
  CHECK(names[2].first == "layers.0.attn_norm.weight");
  CHECK(names.back().first == "norm.bias");
}

TEST_CASE("Module: state_dict round trip and load errors name the entry") {
  auto cfg = nq::CausalLMConfig::llama(32, 16, 16, 1, 2, 1);
  nq::CausalLM a(cfg, 1), b(cfg, 2);
  std::map<std::string, nq::Tensor> sd;
  for (auto& [n, t] : a.state_dict()) sd[n] = t;
  b.load_state_dict(sd);
  CHECK(b.parameters()[3].to_vector<float>() == a.parameters()[3].to_vector<float>());
  auto missing = sd;
  missing.erase("norm.weight");
  CHECK(contains(error_of([&] { b.load_state_dict(missing); }), "missing entries: norm.weight"));
  auto extra = sd;
  extra["bogus"] = nq::zeros({1});
  CHECK(contains(error_of([&] { b.load_state_dict(extra); }), "unexpected entries: bogus"));
  auto wrong = sd;
  wrong["norm.weight"] = nq::zeros({3});
  CHECK(contains(error_of([&] { b.load_state_dict(wrong); }), "'norm.weight' has shape [3]"));
}

TEST_CASE("Module: train/eval propagates; dropout only in train mode") {
  auto cfg = nq::CausalLMConfig::gpt2(32, 16, 16, 1, 2);
  cfg.dropout = 0.5;
  nq::CausalLM m(cfg, 1);
  nq::Tensor ids = nq::from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3});
  m.eval();
  CHECK_FALSE(m.layers[0]->attn->is_training());
  nq::NoGradGuard ng;
  CHECK(m.forward(ids).to_vector<float>() == m.forward(ids).to_vector<float>());
  m.train();
  CHECK(m.layers[0]->mlp->is_training());
  CHECK(m.forward(ids).to_vector<float>() != m.forward(ids).to_vector<float>());
}

TEST_CASE("CausalLM: padded rows equal unpadded rows; KV cache equals full recompute") {
  auto cfg = nq::CausalLMConfig::llama(40, 32, 32, 2, 4, 2);
  nq::CausalLM m(cfg, 3);
  nq::NoGradGuard ng;
  // Row alone vs the same row left-padded by 3 in a batch.
  std::vector<int64_t> row = {5, 9, 2, 7};
  auto alone = m.forward(nq::from_vector(row, {1, 4})).to_vector<float>();
  nq::ForwardOptions fo;
  fo.attention_mask = nq::from_vector(std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1}, {1, 7});
  auto padded = m.forward(nq::from_vector(std::vector<int64_t>{0, 0, 0, 5, 9, 2, 7}, {1, 7}), fo);
  auto tail = padded.narrow(1, 3, 4).contiguous().to_vector<float>();
  for (size_t i = 0; i < alone.size(); ++i) CHECK(tail[i] == doctest::Approx(alone[i]).epsilon(1e-5));
  // Incremental decoding through the cache, one token at a time.
  auto cache = m.make_cache(1, 8);
  nq::ForwardOptions co;
  co.cache = &cache;
  for (int64_t t = 0; t < 4; ++t) {
    auto step = m.forward(nq::from_vector(std::vector<int64_t>{row[t]}, {1, 1}), co).to_vector<float>();
    for (int64_t v = 0; v < 40; ++v) CHECK(step[v] == doctest::Approx(alone[t * 40 + v]).epsilon(1e-5));
  }
  CHECK(cache.length() == 4);
  CHECK(contains(error_of([&] {
                   auto small = m.make_cache(1, 2);
                   nq::ForwardOptions so;
                   so.cache = &small;
                   m.forward(nq::from_vector(row, {1, 4}), so);
                 }),
                 "KV cache of 2 positions is full"));
}

TEST_CASE("CausalLM: GQA equals multi-head attention with repeated kv heads") {
  auto gqa_cfg = nq::CausalLMConfig::llama(30, 16, 16, 1, 4, 2);
  auto mha_cfg = gqa_cfg;
  mha_cfg.n_kv_heads = 4;
  nq::CausalLM gqa(gqa_cfg, 5), mha(mha_cfg, 6);
  nq::NoGradGuard ng;
  std::map<std::string, nq::Tensor> sd;
  for (auto& [n, t] : gqa.state_dict()) sd[n] = t;
  // k/v projections (2 heads x 4 dims) -> 4 heads: heads {0,0,1,1}.
  for (const char* p : {"layers.0.attn.k_proj.weight", "layers.0.attn.v_proj.weight"}) {
    nq::Tensor w = sd.at(p).view({2, 1, 4, 16}).expand({2, 2, 4, 16}).reshape({16, 16});
    sd[p] = w;
  }
  mha.load_state_dict(sd);
  nq::Tensor ids = nq::from_vector(std::vector<int64_t>{3, 1, 4, 1, 5}, {1, 5});
  auto a = gqa.forward(ids).to_vector<float>(), b = mha.forward(ids).to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
}

TEST_CASE("CausalLM: a fused q/k/v projection equals separate ones, forward and backward") {
  // Fused with n_kv_heads == n_heads takes q, k, v as selects of one
  // (B,T,3,H,D) view; with GQA as a split of (B,T,(H+2Hk)D). Both must match
  // three separate projections holding the same weights.
  for (int64_t kv_heads : {4, 2}) {
    CAPTURE(kv_heads);
    auto sep_cfg = nq::CausalLMConfig::llama(30, 16, 16, 1, 4, kv_heads);
    sep_cfg.qkv_bias = true;
    auto fused_cfg = sep_cfg;
    fused_cfg.fused_qkv = true;
    nq::CausalLM sep(sep_cfg, 7), fused(fused_cfg, 8);
    std::map<std::string, nq::Tensor> sd;
    for (auto& [n, t] : sep.state_dict()) sd[n] = t;
    const std::string a = "layers.0.attn.";
    for (const char* kind : {"weight", "bias"}) {
      const std::string k = kind;
      sd[a + "qkv_proj." + k] =
          nq::concat({sd.at(a + "q_proj." + k), sd.at(a + "k_proj." + k), sd.at(a + "v_proj." + k)}, 0);
      for (const char* p : {"q_proj.", "k_proj.", "v_proj."}) sd.erase(a + p + k);
    }
    fused.load_state_dict(sd);
    nq::Tensor ids = nq::from_vector(std::vector<int64_t>{3, 1, 4, 1, 5, 9, 2, 6}, {2, 4});
    nq::Tensor ys = sep.forward(ids), yf = fused.forward(ids);
    auto vs = ys.to_vector<float>(), vf = yf.to_vector<float>();
    REQUIRE(vs.size() == vf.size());
    for (size_t i = 0; i < vs.size(); ++i) CHECK(vf[i] == doctest::Approx(vs[i]).epsilon(1e-5));
    nq::Tensor up = nq::randn(ys.shape());
    ys.backward(up);
    yf.backward(up);
    std::map<std::string, nq::Tensor> gs, gf;
    for (auto& [n, t] : sep.named_parameters()) gs[n] = t.grad();
    for (auto& [n, t] : fused.named_parameters()) gf[n] = t.grad();
    auto close = [](const nq::Tensor& x, const nq::Tensor& y, const std::string& what) {
      CAPTURE(what);
      REQUIRE(x.shape() == y.shape());
      auto u = x.to_vector<float>(), v = y.to_vector<float>();
      for (size_t i = 0; i < u.size(); ++i) CHECK(u[i] == doctest::Approx(v[i]).epsilon(1e-4).scale(1e-3));
    };
    for (const char* kind : {"weight", "bias"}) {
      const std::string k = kind;
      close(gf.at(a + "qkv_proj." + k),
            nq::concat({gs.at(a + "q_proj." + k), gs.at(a + "k_proj." + k), gs.at(a + "v_proj." + k)}, 0),
            "qkv_proj." + k);
    }
    close(gf.at(a + "o_proj.weight"), gs.at(a + "o_proj.weight"), "o_proj.weight");
    close(gf.at("embed.weight"), gs.at("embed.weight"), "embed.weight");
  }
}

TEST_CASE("CausalLMConfig: JSON round trip; unknown fields and bad values are named") {
  auto c = nq::CausalLMConfig::llama(100, 64, 48, 3, 6, 2);
  c.qkv_bias = true;
  auto back = nq::CausalLMConfig::from_json(c.to_json());
  CHECK(back.to_json() == c.to_json());
  auto j = c.to_json();
  j["n_layer"] = 3;
  CHECK(contains(error_of([&] { nq::CausalLMConfig::from_json(j, "run/config.json"); }),
                 "run/config.json: unknown field 'n_layer'"));
  j = c.to_json();
  j["d_model"] = "big";
  CHECK(contains(error_of([&] { nq::CausalLMConfig::from_json(j); }), "field 'd_model' must be an integer"));
  // A float or an unsigned beyond int64 must not reach get<int64_t>() (an
  // out-of-range conversion); a size above int32 is refused by validate().
  for (const char* bad : {"48.5", "1e30", "18446744073709551615"}) {
    j = c.to_json();
    j["d_model"] = nlohmann::json::parse(bad);
    CHECK(
        contains(error_of([&] { nq::CausalLMConfig::from_json(j); }), "field 'd_model' must be an integer"));
  }
  j = c.to_json();
  j["vocab_size"] = int64_t(1) << 40;
  CHECK(contains(error_of([&] { nq::CausalLMConfig::from_json(j); }), "vocab_size is too large"));
  j = c.to_json();
  j["qkv_bias"] = 3;
  CHECK(contains(error_of([&] { nq::CausalLMConfig::from_json(j); }), "field 'qkv_bias' has the wrong type"));
  j = c.to_json();
  j["n_kv_heads"] = 4;
  CHECK(contains(error_of([&] { nq::CausalLMConfig::from_json(j); }), "multiple of n_kv_heads"));
  j = c.to_json();
  j["norm"] = "batchnorm";
  CHECK(contains(error_of([&] { nq::CausalLMConfig::from_json(j); }), "'norm' must be"));
  auto g = nq::CausalLMConfig::gpt2(10, 4, 8, 1, 2);
  nq::CausalLM m(g, 1);
  CHECK(contains(error_of([&] {
                   m.forward(nq::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5}, {1, 5}));
                 }),
                 "longer than max_seq_len"));
}
