// train_gpt: trains the benchmark's S model (GPT-2 layout: byte vocabulary
// 256, 4 layers, 4 heads, d 256, context 256, batch 8) on a bundled text for
// a few minutes, with a progress bar, periodic atomic checkpoints, resume,
// and a generated sample at the end.
//
//   train_gpt [--steps 1000] [--out runs/train_gpt] [--resume] [--stop-after N]
//             [--threads 2] [--data FILE] [--ckpt-every 100] [--seed 1] [--lr 3e-3]
//
// --stop-after N stops (after checkpointing) at step N, as if interrupted;
// running again with --resume continues exactly where it stopped: the
// checkpoint holds the model, AdamW's moments, the LR schedule's step and the
// data sampler's RNG, so the resumed losses equal an uninterrupted run's.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nextquill/nextquill.hpp>
#include <sstream>
#include <string>
#include <vector>

#ifndef NQ_EXAMPLES_DATA_DIR
#define NQ_EXAMPLES_DATA_DIR "examples/data"
#endif

namespace {

struct Args {
  int64_t steps = 1000, stop_after = -1, ckpt_every = 100, batch = 8, ctx = 256, eval_every = 100;
  int threads = 2;
  uint64_t seed = 1;
  double lr = 3e-3;
  bool resume = false;
  std::string out = "runs/train_gpt";
  std::string data = std::string(NQ_EXAMPLES_DATA_DIR) + "/tiny_shakespeare.txt";
};

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: train_gpt [--steps N] [--out DIR] [--resume] [--stop-after N] [--threads N]\n"
               "                 [--data FILE] [--ckpt-every N] [--seed S] [--lr 3e-3]\n");
  std::exit(code);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "train_gpt: %s needs a value\n", k.c_str());
        usage(2);
      }
      return argv[++i];
    };
    try {
      if (k == "--steps")
        a.steps = std::stoll(val());
      else if (k == "--stop-after")
        a.stop_after = std::stoll(val());
      else if (k == "--ckpt-every")
        a.ckpt_every = std::stoll(val());
      else if (k == "--threads")
        a.threads = std::stoi(val());
      else if (k == "--lr")
        a.lr = std::stod(val());
      else if (k == "--seed")
        a.seed = std::stoull(val());
      else if (k == "--out")
        a.out = val();
      else if (k == "--data")
        a.data = val();
      else if (k == "--resume")
        a.resume = true;
      else if (k == "--help" || k == "-h")
        usage(0);
      else {
        std::fprintf(stderr, "train_gpt: unknown option '%s'\n", k.c_str());
        usage(2);
      }
    } catch (const std::logic_error&) {
      std::fprintf(stderr, "train_gpt: %s: not a number\n", k.c_str());
      usage(2);
    }
  }
  if (a.steps < 1 || a.ckpt_every < 1 || a.threads < 1) {
    std::fprintf(stderr, "train_gpt: --steps, --ckpt-every and --threads must be positive\n");
    usage(2);
  }
  return a;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) nq::fail("train_gpt", "cannot open data file '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Random windows of `text` as (B, T+1) byte ids: inputs are [:, :T], targets [:, 1:].
nq::Tensor sample_batch(const std::string& text, int64_t B, int64_t T, nq::Generator& g) {
  std::vector<int64_t> ids(B * (T + 1));
  const uint64_t range = text.size() - static_cast<uint64_t>(T) - 1;
  for (int64_t b = 0; b < B; ++b) {
    const uint64_t off = g.next_u64() % range;
    for (int64_t t = 0; t <= T; ++t) ids[b * (T + 1) + t] = static_cast<unsigned char>(text[off + t]);
  }
  return nq::from_vector(ids, {B, T + 1});
}

nq::Tensor lm_loss(nq::CausalLM& m, const nq::Tensor& d) {
  const int64_t B = d.size(0), T = d.size(1) - 1;
  nq::Tensor logits = m.forward(d.narrow(1, 0, T));
  return nq::cross_entropy(logits.reshape({B * T, 256}), d.narrow(1, 1, T).contiguous().reshape({B * T}));
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  nq::set_num_threads(a.threads);
  const std::string text = read_file(a.data);
  NQ_CHECK(static_cast<int64_t>(text.size()) > 4 * (a.ctx + 1), "train_gpt", "data file '", a.data,
           "' is too short (", text.size(), " bytes)");
  const size_t split = text.size() * 9 / 10;
  const std::string train = text.substr(0, split), valid = text.substr(split);

  auto cfg = nq::CausalLMConfig::gpt2(256, a.ctx, 256, 4, 4);
  nq::CausalLM model(cfg, a.seed);
  nq::optim::AdamWOptions ao;
  ao.lr = a.lr, ao.beta1 = 0.9, ao.beta2 = 0.95;
  nq::optim::AdamW opt(nq::optim::make_param_groups(model.named_parameters(), 0.1), ao);
  nq::optim::LRScheduler sched(opt, nq::optim::Warmup(nq::optim::CosineLR(a.steps, 0.1), a.steps / 20 + 1));
  nq::Generator data_rng(a.seed * 7919 + 1);

  std::filesystem::create_directories(a.out);
  const std::string ckpt = a.out + "/checkpoint.safetensors";
  int64_t step = 0;
  if (a.resume) {
    if (!std::filesystem::exists(ckpt)) nq::fail("train_gpt", "--resume: no checkpoint at '", ckpt, "'");
    auto st = nq::io::load_checkpoint(ckpt, model, &opt, &sched);
    data_rng.set_state(st.rng_state);
    step = st.step;
    std::printf("resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(step));
  }
  std::printf(
      "S model: %lld parameters, %lld steps of %lld x %lld tokens, %d thread(s), data %s (%zu bytes)\n",
      static_cast<long long>(model.num_parameters()), static_cast<long long>(a.steps),
      static_cast<long long>(a.batch), static_cast<long long>(a.ctx), a.threads, a.data.c_str(), text.size());

  auto save = [&] {
    nq::io::TrainState st;
    st.step = step;
    st.rng_state = data_rng.state();
    nq::io::save_checkpoint(ckpt, model, &opt, &sched, st, cfg.to_json().dump());
  };
  auto val_loss = [&] {  // fixed validation windows: comparable across runs
    nq::NoGradGuard ng;
    nq::Generator vg(12345);
    double s = 0;
    for (int i = 0; i < 4; ++i) s += lm_loss(model, sample_batch(valid, a.batch, a.ctx, vg)).item();
    return s / 4;
  };

  std::string loss_log = a.out + "/losses.tsv";
  std::ofstream log(loss_log, a.resume ? std::ios::app : std::ios::trunc);
  nq::ProgressBar bar(a.steps, "train", step);
  double last_val = -1, ema = -1;
  while (step < a.steps) {
    nq::Tensor batch = sample_batch(train, a.batch, a.ctx, data_rng);
    model.zero_grad();
    nq::Tensor loss = lm_loss(model, batch);
    loss.backward();
    const double norm = nq::optim::clip_grad_norm(opt.parameters(), 1.0);
    opt.step();
    sched.step();
    ++step;
    const double l = loss.item();
    NQ_CHECK(std::isfinite(l) && std::isfinite(norm), "train_gpt", "non-finite loss/gradient at step ", step,
             "; last checkpoint: ", ckpt);
    ema = ema < 0 ? l : 0.9 * ema + 0.1 * l;
    log << step << '\t' << l << '\n';
    if (step % a.eval_every == 0 || step == a.steps) last_val = val_loss();
    char fields[96];
    std::snprintf(fields, sizeof fields, "loss %.3f%s", ema, last_val >= 0 ? "" : "");
    std::string f = fields;
    if (last_val >= 0) f += " val " + std::to_string(last_val).substr(0, 5);
    bar.update(step, f, static_cast<double>(a.batch * a.ctx), "tok");
    if (step % a.ckpt_every == 0 || step == a.steps || step == a.stop_after) save();
    if (step == a.stop_after) {
      bar.finish("stopped at step " + std::to_string(step) + " (checkpoint " + ckpt +
                 "); rerun with --resume");
      return 0;
    }
  }
  bar.finish();
  std::printf("final validation loss %.3f nats/byte; checkpoint %s; loss log %s\n", val_loss(), ckpt.c_str(),
              loss_log.c_str());

  // Generate from a prompt with the trained model.
  const std::string prompt = "ROMEO:\n";
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  nq::GenerationOptions go;
  go.max_new_tokens = 200;
  go.sampling.do_sample = true;
  go.sampling.temperature = 0.8;
  go.sampling.top_k = 40;
  go.seed = a.seed;
  auto res = nq::generate(model, {ids}, go);
  std::string out = prompt;
  for (int64_t t : res.tokens[0]) out.push_back(static_cast<char>(t));
  std::printf("--- sample (temperature 0.8, top-k 40) ---\n%s\n---\n", out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
