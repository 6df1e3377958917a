// CausalLM against PyTorch / transformers fixtures (tools/make_hf_fixtures.py,
// tools/make_gpt_fixture.py): Hugging Face import for GPT-2, Llama and Qwen2,
// logits with and without left padding, loss and every parameter gradient.
#include <doctest/doctest.h>

#include <cmath>
#include <nextquill/nextquill.hpp>
#include <string>

#include "test_util.hpp"

namespace {

using nqtest::max_rel_err;

const std::string kFix = NQ_TEST_DATA_DIR;

}  // namespace

TEST_CASE("HF import: GPT-2, Llama and Qwen2 logits match transformers (fp32, rel err <= 1e-4)") {
  for (const char* fam : {"gpt2", "llama", "qwen2"}) {
    CAPTURE(fam);
    const std::string dir = kFix + "/hf/" + fam;
    auto model = nq::io::load_hf(dir);
    model->eval();
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    nq::NoGradGuard ng;
    nq::Tensor logits = model->forward(ref.tensors.at("ids"));
    CHECK(max_rel_err(logits, ref.tensors.at("logits")) <= 1e-4);

    // Left padding: the mask hides pads, positions restart at each row's first
    // real token. Compare only real positions; positions come from the mask.
    nq::ForwardOptions fo;
    fo.attention_mask = ref.tensors.at("padded_mask");
    nq::Tensor pl = model->forward(ref.tensors.at("padded_ids"), fo);
    nq::Tensor rl = ref.tensors.at("padded_logits");
    auto mask = fo.attention_mask.to_vector<int64_t>();
    const int64_t B = pl.size(0), T = pl.size(1);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        if (mask[b * T + t]) {
          CAPTURE(b);
          CAPTURE(t);
          CHECK(max_rel_err(pl.select(0, b).select(0, t), rl.select(0, b).select(0, t)) <= 1e-4);
        }
  }
}

TEST_CASE("HF import: save_hf round-trips through load_hf") {
  auto model = nq::io::load_hf(kFix + "/hf/llama");
  const std::string dir = "nq_test_hf_roundtrip";
  nq::io::save_hf(*model, dir);
  auto again = nq::io::load_hf(dir);
  auto a = model->named_parameters(), b = again->named_parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(nqtest::values(a[i].second) == nqtest::values(b[i].second));
  std::filesystem::remove_all(dir);
}

TEST_CASE("HF import: bad directories and configs give clear errors") {
  using nqtest::contains;
  using nqtest::error_of;
  CHECK(contains(error_of([] { nq::io::load_hf("no/such/dir"); }), "config.json"));
  nlohmann::json j = {{"model_type", "bert"}};
  CHECK(contains(error_of([&] { nq::io::hf_config_from_json(j); }), "model_type 'bert'"));
  j = {{"model_type", "gpt2"}, {"vocab_size", 10}, {"n_positions", 8}, {"n_embd", 6}, {"n_layer", 1}};
  CHECK(contains(error_of([&] { nq::io::hf_config_from_json(j); }), "n_head"));
  j["n_head"] = 4;  // 6 % 4 != 0
  CHECK(contains(error_of([&] { nq::io::hf_config_from_json(j); }), "divisible"));
}

TEST_CASE("GPT fixtures: logits, loss and every parameter gradient match PyTorch") {
  // Tolerances (fp32): logits and loss 1e-5 relative; gradients 1e-4 relative
  // to each tensor's largest gradient.
  for (const char* name : {"gpt2", "qwen2"}) {
    CAPTURE(name);
    const std::string dir = kFix + "/gpt/" + name;
    auto model = nq::io::load_hf(dir);
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    nq::Tensor logits = model->forward(ref.tensors.at("input_ids"));
    CHECK(max_rel_err(logits, ref.tensors.at("logits")) <= 1e-5);
    const int64_t V = logits.size(-1);
    nq::Tensor loss = nq::cross_entropy(logits.reshape({-1, V}), ref.tensors.at("targets").reshape({-1}));
    CHECK(loss.item() == doctest::Approx(ref.tensors.at("loss").item()).epsilon(1e-5));
    loss.backward();
    int checked = 0;
    for (auto& [n, p] : model->named_parameters()) {
      const std::string hf = nq::io::hf_name_of(model->config(), n);
      CAPTURE(hf);
      nq::Tensor g = ref.tensors.at("grad." + hf);
      const bool conv1d = model->config().arch == "gpt2" && g.dim() == 2 && hf.find("transformer.h.") == 0;
      CHECK(max_rel_err(p.grad(), conv1d ? g.t() : g) <= 1e-4);
      ++checked;
    }
    CHECK(checked == static_cast<int>(model->named_parameters().size()));
  }
}

TEST_CASE("generate: greedy + repetition penalty on left-padded prompts matches transformers.generate") {
  for (const char* fam : {"gpt2", "llama", "qwen2"}) {
    CAPTURE(fam);
    const std::string dir = kFix + "/hf/" + fam;
    auto model = nq::io::load_hf(dir);
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    auto ids = ref.tensors.at("padded_ids").to_vector<int64_t>();
    auto mask = ref.tensors.at("padded_mask").to_vector<int64_t>();
    const int64_t B = ref.tensors.at("padded_ids").size(0), L = ref.tensors.at("padded_ids").size(1);
    std::vector<std::vector<int64_t>> prompts(B);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t)
        if (mask[b * L + t]) prompts[b].push_back(ids[b * L + t]);
    nq::GenerationOptions go;
    go.max_new_tokens = 8;
    go.sampling.repetition_penalty = 1.3;
    go.eos_ids = {std::stoll(ref.metadata.at("eos_token_id"))};
    auto out = nq::generate(*model, prompts, go);
    auto want = ref.tensors.at("generated").to_vector<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      CAPTURE(b);
      CHECK(out.tokens[b] == std::vector<int64_t>(want.begin() + b * 8, want.begin() + (b + 1) * 8));
    }
  }
}

TEST_CASE("generate: KV-cache decoding equals full recomputation; sampling is seeded") {
  auto cfg = nq::CausalLMConfig::llama(64, 64, 32, 2, 4, 2);
  nq::CausalLM model(cfg, 7);
  std::vector<std::vector<int64_t>> prompts = {{1, 2, 3, 4, 5}, {9, 8}};
  nq::GenerationOptions go;
  go.max_new_tokens = 6;
  auto out = nq::generate(model, prompts, go);
  // Greedy without cache: run the whole sequence each step, one row at a time.
  nq::NoGradGuard ng;
  for (size_t b = 0; b < prompts.size(); ++b) {
    std::vector<int64_t> seq = prompts[b];
    for (int s = 0; s < 6; ++s) {
      auto logits = model.forward(nq::from_vector(seq, {1, static_cast<int64_t>(seq.size())}));
      auto last = logits.select(1, logits.size(1) - 1).select(0, 0).to_vector<float>();
      seq.push_back(std::max_element(last.begin(), last.end()) - last.begin());
    }
    CHECK(std::vector<int64_t>(seq.begin() + prompts[b].size(), seq.end()) == out.tokens[b]);
  }
  go.sampling.do_sample = true;
  go.sampling.temperature = 1.5;
  go.sampling.top_k = 20;
  go.sampling.top_p = 0.9;
  go.seed = 3;
  auto s1 = nq::generate(model, prompts, go), s2 = nq::generate(model, prompts, go);
  CHECK(s1.tokens == s2.tokens);
  go.seed = 4;
  auto s3 = nq::generate(model, prompts, go);
  CHECK(s3.tokens != s1.tokens);
  // EOS stops a row and is kept.
  go.sampling = {};
  go.eos_ids = {out.tokens[0][1]};
  auto e = nq::generate(model, prompts, go);
  CHECK(e.hit_eos[0]);
  CHECK(e.tokens[0].size() == 2);
}

TEST_CASE("generate: penalize_prompt=false applies the repetition penalty to generated tokens only") {
  auto cfg = nq::CausalLMConfig::gpt2(16, 32, 16, 1, 2);
  nq::CausalLM model(cfg, 3);
  nq::GenerationOptions plain;
  plain.max_new_tokens = 1;
  // A prompt whose unpenalized next token occurs in the prompt itself.
  std::vector<int64_t> prompt;
  int64_t a = -1;
  for (uint64_t s = 0; s < 64 && a < 0; ++s) {
    nq::Generator g(s);
    prompt.clear();
    for (int i = 0; i < 10; ++i) prompt.push_back(int64_t(g.next_u64() % 16));
    const int64_t t = nq::generate(model, {prompt}, plain).tokens[0][0];
    if (std::find(prompt.begin(), prompt.end(), t) != prompt.end()) a = t;
  }
  REQUIRE(a >= 0);
  nq::GenerationOptions go = plain;
  go.sampling.repetition_penalty = 1e6;  // a penalized token can never win
  go.penalize_prompt = true;             // Hugging Face: prompt tokens count
  CHECK(nq::generate(model, {prompt}, go).tokens[0][0] != a);
  go.penalize_prompt = false;  // only generated tokens count: the first step is unpenalized
  CHECK(nq::generate(model, {prompt}, go).tokens[0][0] == a);
  go.max_new_tokens = 6;  // ... and later steps never repeat a generated token
  const auto out = nq::generate(model, {prompt}, go).tokens[0];
  for (size_t i = 0; i < out.size(); ++i)
    for (size_t j = 0; j < i; ++j) CHECK(out[i] != out[j]);
}

TEST_CASE("generate: min_new_tokens keeps EOS out of the first N steps, then lets it stop the row") {
  auto cfg = nq::CausalLMConfig::gpt2(16, 32, 16, 1, 2);
  nq::CausalLM model(cfg, 5);
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  nq::GenerationOptions go;
  go.max_new_tokens = 1;
  const int64_t first = nq::generate(model, {prompt}, go).tokens[0][0];
  go.eos_ids = {first};  // the greedy first token is EOS: without a minimum the row stops at once
  go.max_new_tokens = 6;
  auto out = nq::generate(model, {prompt}, go);
  REQUIRE(out.tokens[0].size() == 1);
  CHECK(out.hit_eos[0]);
  go.min_new_tokens = 3;
  out = nq::generate(model, {prompt}, go);
  REQUIRE(out.tokens[0].size() >= 3);
  for (int i = 0; i < 3; ++i) CHECK(out.tokens[0][size_t(i)] != first);
  // Past the minimum EOS is allowed again: either the row stopped on it or ran to max_new_tokens.
  CHECK((out.hit_eos[0] ? out.tokens[0].back() == first : out.tokens[0].size() == 6));
  go.min_new_tokens = -1;
  CHECK_THROWS_WITH_AS(nq::generate(model, {prompt}, go), doctest::Contains("min_new_tokens"), nq::Error);
}
