// NextQuill training-step benchmark: the cost of the method over its plain
// baseline, and side by side with a PyTorch peer (bench/peers/torch_nextquill.py,
// same model, same batch; bench/run_nextquill_bench.sh runs both).
//
//   bench_nextquill --config S|M --method context-sft|nextquill|<preset>
//                   [--threads N] [--steps N] [--warmup N] [--json]
//
// Batch: 8 examples; with history = 128 history + 64 prompt + 64 target tokens
// (256), without = 64 prompt + 64 target (128); random ids, fixed seed.
// context-sft runs the with-history pass only; nextquill runs both passes,
// the dynamic estimator, L_n + 0.1 L_p and one backward. Only the 64 target
// rows per example go through the output layer.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nextquill/causal/causal.hpp>
#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

int main(int argc, char** argv) try {
  std::string config = "S", method = "nextquill";
  int threads = 1, steps = 5, warmup = 2;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) nq::fail("bench_nextquill", a, " needs a value");
      return argv[++i];
    };
    if (a == "--config")
      config = next();
    else if (a == "--method")
      method = next();
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--steps")
      steps = std::stoi(next());
    else if (a == "--warmup")
      warmup = std::stoi(next());
    else if (a == "--json")
      json = true;
    else {
      std::fprintf(
          stderr,
          "usage: bench_nextquill --config S|M --method context-sft|nextquill|<preset> [--threads N] "
          "[--steps N] [--warmup N] [--json]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  nq::CausalLMConfig cfg;
  if (config == "S")
    cfg = nq::CausalLMConfig::gpt2(256, 256, 256, 4, 4);
  else if (config == "M")
    cfg = nq::CausalLMConfig::gpt2(8192, 256, 384, 6, 6);
  else
    nq::fail("bench_nextquill", "unknown --config '", config, "' (S or M)");
  NQ_CHECK(steps >= 1 && warmup >= 0 && threads >= 1, "bench_nextquill",
           "--steps >= 1, --warmup >= 0, --threads >= 1");
  nq::set_num_threads(threads);

  const int64_t B = 8, H = 128, P = 64, T = 64;
  nq::Generator g(42);
  auto tok = [&] { return static_cast<int32_t>(g.next_u64() % static_cast<uint64_t>(cfg.vocab_size)); };
  std::vector<nq::data::EncodedExample> ex(B);
  for (auto& e : ex) {
    std::vector<int32_t> hist(H), prompt(P);
    for (auto& t : hist) t = tok();
    for (auto& t : prompt) t = tok();
    e.prompt_0 = prompt;
    e.prompt_h = hist;
    e.prompt_h.insert(e.prompt_h.end(), prompt.begin(), prompt.end());
    e.target.resize(T);
    for (auto& t : e.target) t = tok();
  }
  nq::data::PairedBatch batch = nq::data::collate_pairs(ex, 0);

  nq::CausalLM model(cfg, 1234);
  nq::optim::AdamWOptions ao;
  ao.lr = 3e-4, ao.beta1 = 0.9, ao.beta2 = 0.95, ao.weight_decay = 0.1;
  nq::optim::AdamW opt(nq::optim::make_param_groups(model.named_parameters(), 0.1), ao);
  nq::causal::NextQuillObjective obj(model, nq::causal::NextQuillOptions::preset(method));

  std::vector<double> times;
  double loss = 0;
  for (int s = 0; s < warmup + steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    model.zero_grad();
    loss = obj.step(batch).loss;
    opt.step();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s >= warmup) times.push_back(dt);
    if (!json) std::fprintf(stderr, "step %d: %.3f s, loss %.4f\n", s, dt, loss);
  }
  std::sort(times.begin(), times.end());
  const double med = times.size() % 2 ? times[times.size() / 2]
                                      : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const int64_t tokens_h = batch.ids_h.numel(), tokens_0 = batch.ids_0.numel();
  const bool two = obj.options().needs_counterfactual() || !obj.options().use_history;
  const double tokens = static_cast<double>(obj.options().use_history ? tokens_h : tokens_0) +
                        (two && obj.options().use_history ? static_cast<double>(tokens_0) : 0.0);
  if (json)
    std::printf(
        "{\"impl\":\"nextquill\",\"method\":\"%s\",\"config\":\"%s\",\"threads\":%d,\"step_s\":%.6f,"
        "\"tokens_per_s\":%.1f,\"peak_rss_mb\":%.1f,\"loss\":%.6f,\"tokens_h\":%lld,\"tokens_0\":%lld}\n",
        method.c_str(), config.c_str(), threads, med, tokens / med,
        static_cast<double>(ru.ru_maxrss) / 1024.0, loss, static_cast<long long>(tokens_h),
        static_cast<long long>(tokens_0));
  else
    std::printf("%s %s, %d thread(s): %.3f s/step, loss %.4f, peak RSS %.0f MB\n", method.c_str(),
                config.c_str(), threads, med, loss, static_cast<double>(ru.ru_maxrss) / 1024.0);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
