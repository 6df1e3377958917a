// GPU training-step benchmark: a GPT-2-layout CausalLM (nq::CausalLMConfig::gpt2)
// trained with AdamW on random token batches, in bf16 autocast (fp32 master
// weights) or in fp32. The PyTorch peer is bench/peers/torch_gpt2_gpu.py (same
// model, batch, optimizer settings, warm-up and timed steps);
// tools/gpu_check.sh runs both and prints tokens/s and MFU side by side.
//
//   gpt2_train [--config 124M|S|M] [--batch B] [--ctx T] [--steps N] [--warmup N]
//              [--dtype bf16|fp32] [--tf32] [--device cuda|cpu] [--loss full|lm] [--json]
//
// Configs (GPT-2 layout: learned positions, LayerNorm, GELU-tanh, fused qkv, tied head):
//   124M: vocab 50257, 12 layers, 12 heads, d 768, context 1024, batch 8 (GPT-2 small)
//   S:    vocab 256,   4 layers,  4 heads,  d 256, context 256,  batch 8 (bench_step's S)
//   M:    vocab 8192,  6 layers,  6 heads,  d 384, context 256,  batch 8 (bench_step's M)
// One step = zero_grad + forward + cross-entropy + backward + AdamW step.
// bf16: forward and loss run under nq::AutocastGuard(kBFloat16) (CUDA
// matmul/linear in bf16 with fp32 accumulation; parameters, their gradients
// and AdamW's moments stay fp32); backward and the optimizer step run outside
// the guard, as PyTorch recommends for torch.autocast (the casts are graph
// nodes, so the backward GEMMs run in bf16 all the same). fp32: no autocast;
// --tf32 lets cuBLAS use TF32 tensor cores for fp32 GEMMs.
// --loss full: cross_entropy(model.forward(x) as (B*T,V), y), what the peer
// does; --loss lm: model.lm_loss(x, y) (the library's own training loss).
// Timing: cuda::synchronize, then the timed steps back to back, then
// cuda::synchronize; step_ms = elapsed / steps. Losses are read after the
// timed loop (no host sync inside it beyond what the library does itself).
// Prints one JSON line (--json) or a readable summary; exits 1 if a loss is
// not finite.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nextquill/core/autocast.hpp>
#include <nextquill/cuda/runtime.hpp>
#include <nextquill/nextquill.hpp>
#include <nextquill/optim/optim.hpp>
#include <optional>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string config = "124M";
  int64_t batch = 0, ctx = 0;  // 0: the config's
  int steps = 10, warmup = 3;
  std::string dtype = "bf16";
  bool tf32 = false;
  std::string device = "cuda";
  std::string loss = "full";
  bool json = false;
  bool profile = false;  // print the backward profile (per op, synchronised) to stderr
};

[[noreturn]] void usage(int code) {
  std::fprintf(
      code ? stderr : stdout,
      "usage: gpt2_train [--config 124M|S|M] [--batch B] [--ctx T] [--steps N] [--warmup N]\n"
      "                  [--dtype bf16|fp32] [--tf32] [--device cuda|cpu] [--loss full|lm] [--json]\n"
      "                  [--profile]\n");
  std::exit(code);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "gpt2_train: %s needs a value\n", k.c_str());
        usage(2);
      }
      return argv[++i];
    };
    if (k == "--config")
      a.config = next();
    else if (k == "--batch")
      a.batch = std::stoll(next());
    else if (k == "--ctx")
      a.ctx = std::stoll(next());
    else if (k == "--steps")
      a.steps = std::stoi(next());
    else if (k == "--warmup")
      a.warmup = std::stoi(next());
    else if (k == "--dtype")
      a.dtype = next();
    else if (k == "--tf32")
      a.tf32 = true;
    else if (k == "--device")
      a.device = next();
    else if (k == "--loss")
      a.loss = next();
    else if (k == "--profile")
      a.profile = true;
    else if (k == "--json")
      a.json = true;
    else
      usage(k == "--help" || k == "-h" ? 0 : 2);
  }
  if (a.steps < 1 || a.warmup < 0 || a.batch < 0 || a.ctx < 0 || (a.dtype != "bf16" && a.dtype != "fp32") ||
      (a.device != "cuda" && a.device != "cpu") || (a.loss != "full" && a.loss != "lm")) {
    std::fprintf(stderr, "gpt2_train: bad arguments\n");
    usage(2);
  }
  return a;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  nq::CausalLMConfig cfg;
  int64_t B = 8, T = 0;
  if (a.config == "124M")
    cfg = nq::CausalLMConfig::gpt2(50257, 1024, 768, 12, 12), T = 1024;
  else if (a.config == "S")
    cfg = nq::CausalLMConfig::gpt2(256, 256, 256, 4, 4), T = 256;
  else if (a.config == "M")
    cfg = nq::CausalLMConfig::gpt2(8192, 256, 384, 6, 6), T = 256;
  else {
    std::fprintf(stderr, "gpt2_train: unknown --config '%s' (124M, S or M)\n", a.config.c_str());
    return 2;
  }
  if (a.batch) B = a.batch;
  if (a.ctx) T = a.ctx;
  if (T > cfg.max_seq_len) {
    std::fprintf(stderr, "gpt2_train: --ctx %lld exceeds the config's context %lld\n",
                 static_cast<long long>(T), static_cast<long long>(cfg.max_seq_len));
    return 2;
  }
  const bool cuda = a.device == "cuda";
  const bool bf16 = a.dtype == "bf16";
  try {
    if (cuda && nq::cuda::device_count() == 0) {
      std::fprintf(stderr, "gpt2_train: no CUDA device visible (nq::cuda::device_count() == 0)\n");
      return 3;
    }
    const nq::Device dev = cuda ? nq::Device::cuda(0) : nq::Device::cpu();
    if (cuda) {
      nq::cuda::set_device(0);
      nq::cuda::reset_peak(0);
      nq::cuda::set_matmul_precision(a.tf32 ? nq::MatmulPrecision::TF32 : nq::MatmulPrecision::FP32);
    }

    nq::CausalLM model(cfg, 1234);  // fp32 parameters: the master weights
    model.to(dev);
    nq::optim::AdamWOptions ao;
    ao.lr = 3e-4, ao.beta1 = 0.9, ao.beta2 = 0.95, ao.weight_decay = 0.1;
    nq::optim::AdamW opt(nq::optim::make_param_groups(model.named_parameters(), 0.1), ao);

    // Four random batches (inputs and shifted targets), made once, on the device.
    nq::Generator g(42);
    const int n_batches = 4;
    std::vector<nq::Tensor> xs, ys;
    for (int i = 0; i < n_batches; ++i) {
      std::vector<int64_t> tok(static_cast<size_t>(B * (T + 1)));
      for (auto& t : tok) t = static_cast<int64_t>(g.next_u64() % static_cast<uint64_t>(cfg.vocab_size));
      nq::Tensor data = nq::from_vector(tok, {B, T + 1});
      xs.push_back(data.narrow(1, 0, T).contiguous().to(dev));
      ys.push_back(data.narrow(1, 1, T).contiguous().to(dev));
    }

    const int64_t V = cfg.vocab_size;
    auto step = [&](int i) -> nq::Tensor {
      const nq::Tensor& x = xs[static_cast<size_t>(i % n_batches)];
      const nq::Tensor& y = ys[static_cast<size_t>(i % n_batches)];
      model.zero_grad();
      nq::Tensor loss;
      {
        std::optional<nq::AutocastGuard> ag;
        if (bf16) ag.emplace(nq::kBFloat16);
        if (a.loss == "lm")
          loss = model.lm_loss(x, y);
        else
          loss = nq::cross_entropy(model.forward(x).reshape({B * T, V}), y.reshape({B * T}));
      }
      loss.backward();
      opt.step();
      return loss.detach();
    };
    auto sync = [&] {
      if (cuda) nq::cuda::synchronize(0);
    };

    std::vector<nq::Tensor> losses;
    for (int s = 0; s < a.warmup; ++s) losses.push_back(step(s));
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < a.steps; ++s) losses.push_back(step(a.warmup + s));
    sync();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // Where a step's time goes: the same steps again, synchronising after each
    // phase (slower in total: the host no longer runs ahead of the device).
    double fwd_s = 0, bwd_s = 0, opt_s = 0;
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a0, clock::time_point a1) {
      return std::chrono::duration<double>(a1 - a0).count();
    };
    for (int s = 0; s < a.steps; ++s) {
      const nq::Tensor& x = xs[static_cast<size_t>(s % n_batches)];
      const nq::Tensor& y = ys[static_cast<size_t>(s % n_batches)];
      auto p0 = clock::now();
      model.zero_grad();
      nq::Tensor loss;
      {
        std::optional<nq::AutocastGuard> ag;
        if (bf16) ag.emplace(nq::kBFloat16);
        loss = a.loss == "lm" ? model.lm_loss(x, y)
                              : nq::cross_entropy(model.forward(x).reshape({B * T, V}), y.reshape({B * T}));
      }
      sync();
      auto p1 = clock::now();
      loss.backward();
      sync();
      auto p2 = clock::now();
      opt.step();
      sync();
      auto p3 = clock::now();
      fwd_s += secs(p0, p1), bwd_s += secs(p1, p2), opt_s += secs(p2, p3);
    }

    if (a.profile) {  // three more steps with every backward op timed on its own
      nq::autograd::reset_backward_profile();
      nq::autograd::set_backward_profiling(true);
      for (int s = 0; s < 3; ++s) step(s);
      nq::autograd::set_backward_profiling(false);
      std::fprintf(stderr, "%s", nq::autograd::backward_profile_table(25).c_str());
    }

    std::vector<double> lv;
    for (const auto& l : losses) lv.push_back(l.item());
    bool finite = true;
    for (double l : lv) finite = finite && std::isfinite(l);
    const double step_s = elapsed / a.steps;
    const double tps = static_cast<double>(B * T) / step_s;
    const int64_t n_params = model.num_parameters();
    const int64_t L = cfg.n_layers, D = cfg.d_model;
    // Training FLOPs per token: 6N (forward + backward of every weight) plus
    // attention's 12*L*T*d (the PaLM / nanoGPT estimate; no causal discount).
    const double flops_per_token =
        6.0 * static_cast<double>(n_params) + 12.0 * static_cast<double>(L * T * D);
    const double peak_mb =
        cuda ? static_cast<double>(nq::cuda::peak_allocated_bytes(0)) / (1024.0 * 1024.0) : 0.0;
    const std::string dname = cuda ? nq::cuda::device_name(0) : std::string("cpu");
    if (a.json) {
      std::printf(
          "{\"impl\":\"nextquill\",\"version\":\"%s\",\"bench\":\"gpt2_train\",\"config\":\"%s\",\"device\":"
          "\"%s\","
          "\"device_name\":\"%s\",\"dtype\":\"%s\",\"tf32\":%s,\"loss_kind\":\"%s\",\"batch\":%lld,\"ctx\":%"
          "lld,"
          "\"layers\":%lld,\"d_model\":%lld,\"heads\":%lld,\"vocab\":%lld,\"params\":%lld,\"warmup\":%d,"
          "\"steps\":%d,\"step_ms\":%.4f,\"tokens_per_s\":%.1f,\"flops_per_token\":%.6e,\"peak_mem_mb\":%.1f,"
          "\"fwd_ms\":%.3f,\"bwd_ms\":%.3f,\"opt_ms\":%.3f,\"loss_first\":%.6f,\"loss_last\":%.6f,\"finite\":"
          "%"
          "s}\n",
          nq::version_string, a.config.c_str(), a.device.c_str(), json_escape(dname).c_str(), a.dtype.c_str(),
          a.tf32 ? "true" : "false", a.loss.c_str(), static_cast<long long>(B), static_cast<long long>(T),
          static_cast<long long>(L), static_cast<long long>(D), static_cast<long long>(cfg.n_heads),
          static_cast<long long>(V), static_cast<long long>(n_params), a.warmup, a.steps, step_s * 1e3, tps,
          flops_per_token, peak_mb, fwd_s * 1e3 / a.steps, bwd_s * 1e3 / a.steps, opt_s * 1e3 / a.steps,
          lv.front(), lv.back(), finite ? "true" : "false");
    } else {
      std::printf("nextquill %s, %s on %s, %s%s, B=%lld T=%lld, %lld params\n", nq::version_string,
                  a.config.c_str(), dname.c_str(), a.dtype.c_str(), a.tf32 ? " (tf32)" : "",
                  static_cast<long long>(B), static_cast<long long>(T), static_cast<long long>(n_params));
      std::printf(
          "%d timed steps after %d warm-up: %.2f ms/step, %.0f tokens/s, peak device memory %.0f MiB\n",
          a.steps, a.warmup, step_s * 1e3, tps, peak_mb);
      std::printf("synchronised per phase: forward+loss %.2f ms, backward %.2f ms, optimizer %.2f ms\n",
                  fwd_s * 1e3 / a.steps, bwd_s * 1e3 / a.steps, opt_s * 1e3 / a.steps);
      std::printf("loss first %.4f, last %.4f%s\n", lv.front(), lv.back(), finite ? "" : "  NOT FINITE");
    }
    return finite ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt2_train: %s\n", e.what());
    return 1;
  }
}
