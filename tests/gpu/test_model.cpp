// Models, modules, the NextQuill objective, batches and generation on CUDA,
// against the same code on the CPU, on the fixtures the CPU suite uses
// (tests/fixtures/gpt, hf: GPT-2, Llama, Qwen2, a LoRA-wrapped Qwen2).
//
// Tolerances (fp32, cuBLAS in full fp32, the default matmul precision):
// logits and losses 1e-4 relative; gradients and parameters after AdamW steps
// 1e-4 relative to each tensor's largest entry (sums are reordered on the
// GPU; near-zero entries are judged against the tensor's scale). bf16
// autocast: the loss within 3% of fp32 and every gradient finite.
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gpu/gpu_test.hpp"

namespace {

using nq::Tensor;
using nqgpu::gpu;

const std::string kFix = NQ_TEST_DATA_DIR;

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to(nq::Device::cpu()).to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// Element-wise |got - want| <= rel * (|want| + max |want|).
void close_scaled(const Tensor& got, const Tensor& want, double rel, const std::string& what) {
  nqgpu::expect_close(got, want, rel, rel * std::max(max_abs(want), 1e-30), what);
}

bool all_finite(const Tensor& t) {
  for (double v : t.to(nq::Device::cpu()).to_vector<double>())
    if (!std::isfinite(v)) return false;
  return true;
}

// The same model on both devices: loaded on the CPU, the second one moved.
struct Pair {
  std::shared_ptr<nq::CausalLM> cpu, gpu;
};
Pair load_pair(const std::string& dir) {
  Pair p{nq::io::load_hf(dir), nq::io::load_hf(dir, nq::kFloat32, gpu())};
  return p;
}

std::vector<nq::data::EncodedExample> examples() {  // as tests/test_objective.cpp
  std::vector<nq::data::EncodedExample> ex(3);
  ex[0].prompt_h = {3, 5, 7, 9, 11, 2}, ex[0].prompt_0 = {3, 2}, ex[0].target = {4, 6, 1};
  ex[1].prompt_h = {8, 8, 2}, ex[1].prompt_0 = {8, 2}, ex[1].target = {10, 1};
  ex[2].prompt_h = {12, 13, 14, 15, 16, 17, 2}, ex[2].prompt_0 = {17, 2}, ex[2].target = {5, 5, 5, 1};
  return ex;
}

}  // namespace

TEST_CASE("model: Module::to moves parameters, flat buffers and gradients; round trip is exact") {
  auto cfg = nq::CausalLMConfig::llama(40, 32, 16, 2, 4, 2);
  nq::CausalLM m(cfg, 5);
  const auto before = m.named_parameters();
  std::map<std::string, std::vector<float>> vals;
  std::map<std::string, bool> rg;
  for (auto& [n, t] : before) vals[n] = t.to_vector<float>(), rg[n] = t.requires_grad();
  const Tensor held = m.layers[0]->attn->q_proj->weight;  // a handle a module holds
  m.to(gpu());
  CHECK(m.device() == gpu());
  CHECK(held.device() == gpu());  // rebound in place
  REQUIRE(m.is_flat());
  CHECK(m.flat().data.device() == gpu());
  CHECK(m.flat().grad.device() == gpu());
  for (auto& [n, t] : m.named_parameters()) {
    CAPTURE(n);
    CHECK(t.device() == gpu());
    CHECK(t.requires_grad() == rg[n]);
    CHECK(t.storage() == m.flat().data.storage());  // still a view of the flat buffer
    REQUIRE(t.grad().defined());
    CHECK(t.grad().storage() == m.flat().grad.storage());
  }
  // Backward on the GPU accumulates into the flat gradient buffer.
  Tensor ids = nq::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  m.zero_grad();
  m.lm_loss(ids, ids).backward();
  CHECK(max_abs(m.flat().grad) > 0);
  m.to(nq::Device::cpu());
  CHECK(held.device().is_cpu());
  for (auto& [n, t] : m.named_parameters()) CHECK(t.to_vector<float>() == vals[n]);
}

TEST_CASE("model: GPT-2 and Qwen2 fixtures on CUDA: logits, loss, lm_loss and every gradient equal the CPU") {
  for (const char* name : {"gpt2", "qwen2"}) {
    CAPTURE(name);
    const std::string dir = kFix + "/gpt/" + name;
    Pair p = load_pair(dir);
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    const Tensor x = ref.tensors.at("input_ids"), y = ref.tensors.at("targets");
    const int64_t V = p.cpu->config().vocab_size;
    Tensor lc = p.cpu->forward(x), lg = p.gpu->forward(x.to(gpu()));
    CHECK(lg.device() == gpu());
    close_scaled(lg, lc, 1e-4, "logits");
    Tensor loss_c = nq::cross_entropy(lc.reshape({-1, V}), y.reshape({-1}));
    Tensor loss_g = nq::cross_entropy(lg.reshape({-1, V}), y.to(gpu()).reshape({-1}));
    nqgpu::expect_close(loss_g, loss_c, 1e-4, 0, "loss");
    loss_c.backward();
    loss_g.backward();
    auto pc = p.cpu->named_parameters(), pg = p.gpu->named_parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t i = 0; i < pc.size(); ++i)
      close_scaled(pg[i].second.grad(), pc[i].second.grad(), 1e-4, pc[i].first);

    // lm_loss (output layer on target rows only) with some ignored targets.
    auto yv = y.to_vector<int64_t>();
    for (size_t i = 0; i < yv.size(); i += 3) yv[i] = -100;
    const Tensor ym = nq::from_vector(yv, y.shape());
    p.cpu->zero_grad(), p.gpu->zero_grad();
    Tensor full = nq::cross_entropy(p.cpu->forward(x).reshape({-1, V}), ym.reshape({-1}));
    Tensor rows_c = p.cpu->lm_loss(x, ym), rows_g = p.gpu->lm_loss(x.to(gpu()), ym);
    CHECK(rows_c.item() == doctest::Approx(full.item()).epsilon(1e-6));
    nqgpu::expect_close(rows_g, full, 1e-4, 0, "lm_loss on CUDA");
    rows_c.backward();
    rows_g.backward();
    pc = p.cpu->named_parameters(), pg = p.gpu->named_parameters();
    for (size_t i = 0; i < pc.size(); ++i)
      close_scaled(pg[i].second.grad(), pc[i].second.grad(), 1e-4, "lm_loss grad " + pc[i].first);
  }
}

TEST_CASE("model: HF GPT-2, Llama, Qwen2 on CUDA with left padding match the CPU at real positions") {
  for (const char* fam : {"gpt2", "llama", "qwen2"}) {
    CAPTURE(fam);
    const std::string dir = kFix + "/hf/" + fam;
    Pair p = load_pair(dir);
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    nq::NoGradGuard ng;
    close_scaled(p.gpu->forward(ref.tensors.at("ids")), p.cpu->forward(ref.tensors.at("ids")), 1e-4,
                 "logits");
    nq::ForwardOptions fc, fg;
    fc.attention_mask = ref.tensors.at("padded_mask");
    fg.attention_mask = ref.tensors.at("padded_mask").to(gpu());  // a device mask works too
    Tensor a = p.gpu->forward(ref.tensors.at("padded_ids").to(gpu()), fg).cpu();
    Tensor b = p.cpu->forward(ref.tensors.at("padded_ids"), fc);
    auto mask = fc.attention_mask.to_vector<int64_t>();
    const int64_t B = a.size(0), T = a.size(1);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < T; ++t)
        if (mask[size_t(i * T + t)])
          close_scaled(a.select(0, i).select(0, t), b.select(0, i).select(0, t), 1e-4,
                       "padded logits b=" + std::to_string(i) + " t=" + std::to_string(t));
  }
}

TEST_CASE("model: AdamW steps with clipping on CUDA give the CPU's parameters") {
  for (const char* name : {"gpt2", "qwen2"}) {
    CAPTURE(name);
    const std::string dir = kFix + "/gpt/" + name;
    Pair p = load_pair(dir);
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    const Tensor x = ref.tensors.at("input_ids"), y = ref.tensors.at("targets");
    auto run = [&](nq::CausalLM& m, const Tensor& xi, const Tensor& yi) {
      nq::optim::AdamWOptions ao;
      ao.lr = 3e-3, ao.beta1 = 0.9, ao.beta2 = 0.95, ao.eps = 1e-8;
      nq::optim::AdamW opt(nq::optim::make_param_groups(m.named_trainable_parameters(), 0.1), ao);
      std::vector<double> losses;
      for (int t = 0; t < 3; ++t) {
        m.zero_grad();
        Tensor loss = m.lm_loss(xi, yi);
        losses.push_back(loss.item());
        loss.backward();
        nq::optim::clip_grad_norm(opt.parameters(), 1.0);
        opt.step();
      }
      return losses;
    };
    auto lc = run(*p.cpu, x, y), lg = run(*p.gpu, x.to(gpu()), y.to(gpu()));
    for (size_t i = 0; i < lc.size(); ++i) CHECK(lg[i] == doctest::Approx(lc[i]).epsilon(1e-4));
    auto pc = p.cpu->named_parameters(), pg = p.gpu->named_parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      // The key bias has an exact gradient of 0 (softmax ignores it): both
      // backends see rounding noise that Adam scales to full steps (test_training).
      if (pc[i].first.find("qkv_proj.bias") != std::string::npos ||
          pc[i].first.find("k_proj.bias") != std::string::npos)
        continue;
      close_scaled(pg[i].second, pc[i].second, 1e-4, "param " + pc[i].first);
    }
  }
}

TEST_CASE("model: NextQuill objective on CUDA (with and without history, fixed estimator) equals the CPU") {
  auto cfg = nq::CausalLMConfig::llama(20, 16, 8, 1, 2, 1);
  for (const char* preset : {"nextquill", "nextquill-code", "context-sft", "sft", "mce-only"}) {
    for (bool move_batch : {true, false}) {
      CAPTURE(preset);
      CAPTURE(move_batch);
      nq::CausalLM mc(cfg, 3), mg(cfg, 3);
      mg.to(gpu());
      auto b = nq::data::collate_pairs(examples(), 0, nq::data::PadSide::Left);
      auto bg = move_batch ? b.to(gpu()) : b;
      auto opts = nq::causal::NextQuillOptions::preset(preset);
      opts.delta = 0.0;
      nq::causal::NextQuillObjective oc(mc, opts), og(mg, opts);
      auto pc = oc.forward(b), pg = og.forward(bg);
      CHECK(pg.total.device() == gpu());
      nqgpu::expect_close(pg.total, pc.total, 1e-4, 1e-6, "total");
      nqgpu::expect_close(pg.l_n, pc.l_n, 1e-4, 1e-6, "l_n");
      nqgpu::expect_close(pg.l_p, pc.l_p, 1e-4, 1e-6, "l_p");
      nqgpu::expect_close(pg.dce, pc.dce, 1e-4, 1e-6, "dce");
      nqgpu::expect_close(pg.weights, pc.weights, 0, 1e-12, "weights (same side of delta)");
      CHECK(pg.n_valid == pc.n_valid);
      CHECK(pg.frac_preference == pc.frac_preference);
      pc.total.backward();
      pg.total.backward();
      auto nc = mc.named_parameters(), ng = mg.named_parameters();
      for (size_t i = 0; i < nc.size(); ++i)
        close_scaled(ng[i].second.grad(), nc[i].second.grad(), 1e-4, nc[i].first);
      // step(): the statistics come back in one copy and match.
      mc.zero_grad(), mg.zero_grad();
      auto sc = oc.step(b), sg = og.step(bg);
      CHECK(sg.loss == doctest::Approx(sc.loss).epsilon(1e-4));
      CHECK(std::abs(sg.mean_dce - sc.mean_dce) <= 1e-5);
      CHECK(sg.n_targets == sc.n_targets);
    }
  }
  // Fixed estimator: a frozen model on the GPU supplies the DCE.
  {
    auto ec = std::make_shared<nq::CausalLM>(cfg, 11), eg = std::make_shared<nq::CausalLM>(cfg, 11);
    eg->to(gpu());
    nq::causal::FixedEstimator fc(ec), fg(eg);
    nq::CausalLM mc(cfg, 3), mg(cfg, 3);
    mg.to(gpu());
    auto opts = nq::causal::NextQuillOptions::preset("nextquill");
    opts.estimator = nq::causal::EstimatorKind::Fixed;
    opts.delta = 0.0;
    nq::causal::NextQuillObjective oc(mc, opts, &fc), og(mg, opts, &fg);
    auto b = nq::data::collate_pairs(examples(), 0);
    auto pc = oc.forward(b), pg = og.forward(b.to(gpu()));
    nqgpu::expect_close(pg.total, pc.total, 1e-4, 1e-6, "fixed: total");
    nqgpu::expect_close(pg.dce, pc.dce, 1e-4, 1e-6, "fixed: dce");
    // The inspector runs on the GPU model and reports host values.
    auto tc = nq::causal::inspect(mc, b, opts), tg = nq::causal::inspect(mg, b.to(gpu()), opts);
    REQUIRE(tc.size() == tg.size());
    for (size_t i = 0; i < tc.size(); ++i) {
      REQUIRE(tc[i].size() == tg[i].size());
      for (size_t k = 0; k < tc[i].size(); ++k)
        CHECK(tg[i][k].p_h == doctest::Approx(tc[i][k].p_h).epsilon(1e-4));
    }
  }
}

TEST_CASE("model: LoRA on CUDA: adapters on the device, frozen base gets no gradient, grads equal the CPU") {
  const std::string dir = kFix + "/gpt/qwen2_lora";
  Pair p = load_pair(dir);  // the GPU model is moved before apply_lora: adapters are made on the host, moved
  auto ad = nq::io::load_tensors(dir + "/adapter.safetensors");
  auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
  const Tensor x = ref.tensors.at("input_ids"), y = ref.tensors.at("targets");
  std::vector<Tensor> losses;
  for (auto* m : {p.cpu.get(), p.gpu.get()}) {
    nq::Generator g(1);
    nq::nn::LoRAConfig lc;
    lc.r = 4, lc.alpha = 8, lc.targets = {"q_proj", "v_proj"};
    CHECK(nq::nn::apply_lora(*m, lc, g).size() == 4);
    nq::NoGradGuard ng;
    for (auto& [n, t] : nq::nn::lora_state_dict(*m)) {
      Tensor dst = t;
      dst.copy_(ad.tensors.at(nq::io::hf_name_of(m->config(), n)).to(dst.device()));
    }
  }
  CHECK(p.gpu->flat().data.device() == gpu());
  CHECK(p.gpu->flat().grad.device() == gpu());
  for (auto& [n, t] : nq::nn::lora_state_dict(*p.gpu)) CHECK(t.device() == gpu());
  const int64_t V = p.cpu->config().vocab_size;
  Tensor lc = p.cpu->forward(x), lg = p.gpu->forward(x);
  close_scaled(lg, lc, 1e-4, "LoRA logits");
  Tensor loss_c = nq::cross_entropy(lc.reshape({-1, V}), y.reshape({-1}));
  Tensor loss_g = nq::cross_entropy(lg.reshape({-1, V}), y.to(gpu()).reshape({-1}));
  nqgpu::expect_close(loss_g, loss_c, 1e-4, 0, "LoRA loss");
  loss_c.backward();
  loss_g.backward();
  auto pc = p.cpu->named_parameters(), pg = p.gpu->named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    CAPTURE(pc[i].first);
    if (!pg[i].second.requires_grad()) {
      CHECK_FALSE(pg[i].second.grad().defined());  // frozen: no gradient on CUDA either
      continue;
    }
    close_scaled(pg[i].second.grad(), pc[i].second.grad(), 1e-4, "LoRA grad " + pc[i].first);
  }
  // Merge on the device keeps the output.
  nq::NoGradGuard ng;
  nq::nn::merge_lora(*p.gpu);
  close_scaled(p.gpu->forward(x), lc, 1e-4, "merged LoRA logits");
}

TEST_CASE("model: greedy generation on CUDA produces the CPU's tokens") {
  for (const char* fam : {"gpt2", "llama", "qwen2"}) {
    CAPTURE(fam);
    const std::string dir = kFix + "/hf/" + fam;
    Pair p = load_pair(dir);
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    auto ids = ref.tensors.at("padded_ids").to_vector<int64_t>();
    auto mask = ref.tensors.at("padded_mask").to_vector<int64_t>();
    const int64_t B = ref.tensors.at("padded_ids").size(0), L = ref.tensors.at("padded_ids").size(1);
    std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t)
        if (mask[size_t(b * L + t)]) prompts[size_t(b)].push_back(ids[size_t(b * L + t)]);
    nq::GenerationOptions go;
    go.max_new_tokens = 8;
    go.sampling.repetition_penalty = 1.3;
    go.eos_ids = {std::stoll(ref.metadata.at("eos_token_id"))};
    auto oc = nq::generate(*p.cpu, prompts, go), og = nq::generate(*p.gpu, prompts, go);
    CHECK(og.tokens == oc.tokens);
    CHECK(og.hit_eos == oc.hit_eos);
  }
}

TEST_CASE("model: bf16 autocast training keeps fp32 master weights; loss within 3% of fp32 and finite") {
  for (const char* name : {"gpt2", "qwen2"}) {
    CAPTURE(name);
    const std::string dir = kFix + "/gpt/" + name;
    auto m = nq::io::load_hf(dir, nq::kFloat32, gpu());
    auto ref = nq::io::load_tensors(dir + "/reference.safetensors");
    const Tensor x = ref.tensors.at("input_ids").to(gpu()), y = ref.tensors.at("targets").to(gpu());
    const double l32 = m->lm_loss(x, y).item();
    m->set_autocast(nq::kBFloat16);
    Tensor lg = m->forward(x);
    CHECK(lg.dtype() == nq::kFloat32);  // logits come back fp32 for the loss
    nq::optim::AdamWOptions ao;
    ao.lr = 1e-3;
    nq::optim::AdamW opt(m->named_trainable_parameters(), ao);
    for (int t = 0; t < 3; ++t) {
      m->zero_grad();
      Tensor loss = m->lm_loss(x, y);
      const double l = loss.item();
      CHECK(std::isfinite(l));
      if (t == 0) CHECK(std::abs(l - l32) <= 0.03 * std::abs(l32));
      loss.backward();
      for (auto& [n, p] : m->named_parameters()) {
        CAPTURE(n);
        CHECK(p.dtype() == nq::kFloat32);
        REQUIRE(p.grad().defined());
        CHECK(p.grad().dtype() == nq::kFloat32);
        CHECK(all_finite(p.grad()));
      }
      opt.step();
    }
    // The objective and generation under autocast (bf16 KV cache) run and stay finite.
    auto b = nq::data::collate_pairs(examples(), 0);
    nq::causal::NextQuillObjective obj(*m, nq::causal::NextQuillOptions::preset("nextquill"));
    auto s = obj.step(b);
    CHECK(std::isfinite(s.loss));
    nq::GenerationOptions go;
    go.max_new_tokens = 4;
    auto out = nq::generate(*m, {{1, 2, 3}, {4}}, go);
    for (auto& row : out.tokens)
      for (int64_t tok : row) CHECK((tok >= 0 && tok < m->config().vocab_size));
    m->set_autocast(nq::kFloat32);
  }
}

TEST_CASE("model: checkpoints and HF export from CUDA load back equal on the CPU") {
  auto cfg = nq::CausalLMConfig::gpt2(30, 16, 16, 1, 2);
  nq::CausalLM m(cfg, 9);
  m.to(gpu());
  const std::string path = "nq_gpu_model_ckpt.safetensors", dir = "nq_gpu_model_hf";
  nq::io::save_checkpoint(path, m, nullptr, nullptr, {}, cfg.to_json().dump());
  auto back = nq::io::load_model_from_checkpoint(path);
  auto onto = nq::io::load_model_from_checkpoint(path, nq::kFloat32, gpu());
  CHECK(onto->device() == gpu());
  nq::io::save_hf(m, dir);
  auto hf = nq::io::load_hf(dir);
  auto a = m.named_parameters(), b = back->named_parameters(), c = hf->named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(a[i].second.cpu().to_vector<float>() == b[i].second.to_vector<float>());
    CHECK(a[i].second.cpu().to_vector<float>() == c[i].second.to_vector<float>());
  }
  // A CPU checkpoint loads into a model on the GPU.
  nq::CausalLM m2(cfg, 1);
  m2.to(gpu());
  nq::io::load_checkpoint(path, m2, nullptr, nullptr);
  auto d = m2.named_parameters();
  for (size_t i = 0; i < a.size(); ++i)
    CHECK(d[i].second.cpu().to_vector<float>() == a[i].second.cpu().to_vector<float>());
  std::filesystem::remove(path);
  std::filesystem::remove_all(dir);
}

TEST_CASE("model: a KV cache made on another device is refused with a clear error") {
  auto cfg = nq::CausalLMConfig::llama(20, 16, 8, 1, 2, 1);
  nq::CausalLM m(cfg, 3);
  nq::nn::KVCache cache = m.make_cache(1, 8);  // on the CPU
  m.to(gpu());
  nq::ForwardOptions fo;
  fo.cache = &cache;
  nq::NoGradGuard ng;
  CHECK_THROWS_AS(m.hidden_states(nq::from_vector(std::vector<int64_t>{1, 2}, {1, 2}), fo), nq::Error);
}
