// End-to-end training-step benchmark: a GPT-2-layout CausalLM, fp32, AdamW.
// One timed step = zero_grad + forward + cross-entropy + backward + AdamW
// step, on a fixed random batch. Prints the median step time, tokens/s and
// the process's peak RSS; bench/run_step_bench.sh runs it side by side with
// the PyTorch peer bench/peers/torch_gpt.py (same model, same sizes).
//
//   bench_step --config S|M [--threads N] [--steps N] [--warmup N] [--json] [--profile]
//
// --profile: after the timed steps, three more with the backward profiler on
// (nq::autograd, per-op time of each backward closure), its table on stderr.
//
// S = vocab 256, 4 layers, 4 heads, d 256, context 256, batch 8
// M = vocab 8192, 6 layers, 6 heads, d 384, context 256, batch 8
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nextquill/nextquill.hpp>
#include <nextquill/optim/optim.hpp>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string config = "S";
  int threads = 1, steps = 5, warmup = 2;
  bool json = false, profile = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_step: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config")
      config = next();
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--steps")
      steps = std::stoi(next());
    else if (a == "--warmup")
      warmup = std::stoi(next());
    else if (a == "--json")
      json = true;
    else if (a == "--profile")
      profile = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_step --config S|M [--threads N] [--steps N] [--warmup N] [--json] "
                   "[--profile]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  nq::CausalLMConfig cfg;
  if (config == "S")
    cfg = nq::CausalLMConfig::gpt2(256, 256, 256, 4, 4);
  else if (config == "M")
    cfg = nq::CausalLMConfig::gpt2(8192, 256, 384, 6, 6);
  else {
    std::fprintf(stderr, "bench_step: unknown --config '%s' (S or M)\n", config.c_str());
    return 2;
  }
  if (steps < 1 || warmup < 0 || threads < 1) {
    std::fprintf(stderr, "bench_step: --steps >= 1, --warmup >= 0, --threads >= 1\n");
    return 2;
  }
  nq::set_num_threads(threads);
  const int64_t B = 8, T = 256;
  nq::CausalLM model(cfg, 1234);
  nq::optim::AdamWOptions ao;
  ao.lr = 3e-4, ao.beta1 = 0.9, ao.beta2 = 0.95, ao.weight_decay = 0.1;
  nq::optim::AdamW opt(nq::optim::make_param_groups(model.named_parameters(), 0.1), ao);
  nq::Generator g(42);
  std::vector<int64_t> tok(B * (T + 1));
  for (auto& t : tok) t = static_cast<int64_t>(g.next_u64() % static_cast<uint64_t>(cfg.vocab_size));
  nq::Tensor data = nq::from_vector(tok, {B, T + 1});
  nq::Tensor x = data.narrow(1, 0, T).contiguous(), y = data.narrow(1, 1, T).contiguous();

  auto step = [&] {
    model.zero_grad();
    nq::Tensor logits = model.forward(x);
    nq::Tensor l = nq::cross_entropy(logits.reshape({B * T, cfg.vocab_size}), y.reshape({B * T}));
    l.backward();
    opt.step();
    return l.item();
  };
  std::vector<double> times;
  double loss = 0;
  for (int s = 0; s < warmup + steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    loss = step();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s >= warmup) times.push_back(dt);
    if (!json) std::fprintf(stderr, "step %d: %.3f s, loss %.4f\n", s, dt, loss);
  }
  if (profile) {  // after the timing, so the profiler's clock reads cost the timed steps nothing
    nq::autograd::reset_backward_profile();
    nq::autograd::set_backward_profiling(true);
    for (int s = 0; s < 3; ++s) step();
    nq::autograd::set_backward_profiling(false);
    std::fprintf(stderr, "backward profile, 3 steps:\n%s", nq::autograd::backward_profile_table().c_str());
  }
  std::sort(times.begin(), times.end());
  const double med = times.size() % 2 ? times[times.size() / 2]
                                      : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  const double tps = static_cast<double>(B * T) / med;
  if (json)
    std::printf(
        "{\"impl\":\"nextquill\",\"version\":\"%s\",\"config\":\"%s\",\"threads\":%d,\"step_s\":%.6f,"
        "\"tokens_per_s\":%.1f,\"peak_rss_mb\":%.1f,\"loss\":%.6f,\"params\":%lld}\n",
        nq::version_string, config.c_str(), threads, med, tps, rss_mb, loss,
        static_cast<long long>(model.num_parameters()));
  else
    std::printf("config %s, %d thread(s): %.3f s/step, %.0f tokens/s, peak RSS %.0f MB, loss %.4f\n",
                config.c_str(), threads, med, tps, rss_mb, loss);
  return 0;
}
