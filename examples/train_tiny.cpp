// train_tiny: a one-block, byte-level transformer language model trained on a
// bundled excerpt of Tiny Shakespeare with nothing but nextquill's core ops
// and a ten-line Adam. It prints the train/validation loss curve and a
// sample. Until the CLI lands this is the project's "main job".
//
//   train_tiny [--steps N] [--threads N] [--data FILE]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nextquill/nextquill.hpp>
#include <sstream>
#include <string>
#include <vector>

#ifndef NQ_EXAMPLES_DATA_DIR
#define NQ_EXAMPLES_DATA_DIR "examples/data"
#endif

using nq::Tensor;

namespace {

struct Config {
  int64_t steps = 1500, batch = 32, ctx = 64, dim = 128, heads = 4;
  double lr = 3e-3;
  int threads = 2;
  std::string data = std::string(NQ_EXAMPLES_DATA_DIR) + "/tiny_shakespeare.txt";
};

// All trainable tensors, so that the optimizer is one loop.
struct Model {
  Tensor tok, pos, ln1_w, ln1_b, qkv_w, proj_w, ln2_w, ln2_b, fc_w, fc_b, out_w, lnf_w, lnf_b, head_w;
  std::vector<Tensor*> params() {
    return {&tok,   &pos,  &ln1_w, &ln1_b, &qkv_w, &proj_w, &ln2_w,
            &ln2_b, &fc_w, &fc_b,  &out_w, &lnf_w, &lnf_b,  &head_w};
  }
};

Model init_model(const Config& c, nq::Generator& g) {
  const int64_t d = c.dim, V = 256;
  auto w = [&](nq::Shape s, double std) {
    return (nq::randn(s, nq::kFloat32, &g) * std).detach().requires_grad_();
  };
  auto constant = [&](nq::Shape s, double v) { return nq::full(s, v).requires_grad_(); };
  Model m;
  m.tok = w({V, d}, 0.02);
  m.pos = w({c.ctx, d}, 0.02);
  m.ln1_w = constant({d}, 1.0), m.ln1_b = constant({d}, 0.0);
  m.qkv_w = w({3 * d, d}, 0.02);
  m.proj_w = w({d, d}, 0.02);
  m.ln2_w = constant({d}, 1.0), m.ln2_b = constant({d}, 0.0);
  m.fc_w = w({4 * d, d}, 0.02), m.fc_b = constant({4 * d}, 0.0);
  m.out_w = w({d, 4 * d}, 0.02);
  m.lnf_w = constant({d}, 1.0), m.lnf_b = constant({d}, 0.0);
  m.head_w = w({V, d}, 0.02);
  return m;
}

// ids (B,T) int64 -> logits (B,T,256)
Tensor forward(Model& m, const Tensor& ids, const Config& c) {
  const int64_t B = ids.size(0), T = ids.size(1), d = c.dim, H = c.heads;
  Tensor x = nq::embedding(m.tok, ids) + m.pos.narrow(0, 0, T);                // (B,T,d)
  Tensor qkv = nq::linear(nq::layer_norm(x, m.ln1_w, m.ln1_b), m.qkv_w);       // (B,T,3d)
  auto parts = nq::split(qkv.view({B, T, 3, H, d / H}), 1, 2);                 // 3 x (B,T,1,H,hd)
  auto heads = [&](const Tensor& t) { return t.squeeze(2).transpose(1, 2); };  // (B,H,T,hd)
  nq::AttentionOptions ao;
  ao.causal = true;
  Tensor a = nq::scaled_dot_product_attention(heads(parts[0]), heads(parts[1]), heads(parts[2]), ao);
  x = x + nq::linear(a.transpose(1, 2).reshape({B, T, d}), m.proj_w);
  Tensor h = nq::gelu(nq::linear(nq::layer_norm(x, m.ln2_w, m.ln2_b), m.fc_w, m.fc_b), nq::GeluApprox::Tanh);
  x = x + nq::linear(h, m.out_w);
  return nq::linear(nq::layer_norm(x, m.lnf_w, m.lnf_b), m.head_w);
}

// Random windows of the text: inputs and next-byte targets, (B,T) each.
std::pair<Tensor, Tensor> batch(const std::string& text, const Config& c, nq::Generator& g) {
  std::vector<int64_t> x(c.batch * c.ctx), y(c.batch * c.ctx);
  for (int64_t b = 0; b < c.batch; ++b) {
    size_t at = g.next_u64() % (text.size() - c.ctx - 1);
    for (int64_t t = 0; t < c.ctx; ++t) {
      x[b * c.ctx + t] = static_cast<unsigned char>(text[at + t]);
      y[b * c.ctx + t] = static_cast<unsigned char>(text[at + t + 1]);
    }
  }
  return {nq::from_vector(x, {c.batch, c.ctx}), nq::from_vector(y, {c.batch, c.ctx})};
}

double eval_loss(Model& m, const std::string& text, const Config& c) {
  nq::NoGradGuard ng;
  nq::Generator g(1234);  // the same validation windows every time
  double total = 0;
  const int n = 8;
  for (int i = 0; i < n; ++i) {
    auto [x, y] = batch(text, c, g);
    total += nq::cross_entropy(forward(m, x, c), y).item();
  }
  return total / n;
}

std::string sample(Model& m, const Config& c, std::string prompt, int n, nq::Generator& g) {
  nq::NoGradGuard ng;
  for (int i = 0; i < n; ++i) {
    std::string ctx = prompt.substr(prompt.size() > static_cast<size_t>(c.ctx) ? prompt.size() - c.ctx : 0);
    std::vector<int64_t> ids;
    for (unsigned char ch : ctx) ids.push_back(ch);
    Tensor logits = forward(m, nq::from_vector(ids, {1, static_cast<int64_t>(ids.size())}), c);
    std::vector<double> p = nq::softmax(logits.select(1, -1).squeeze(0) * (1.0 / 0.8)).to_vector<double>();
    double r = g.uniform(), acc = 0;
    int next = 0;
    for (int k = 0; k < 256; ++k) {
      acc += p[k];
      if (r < acc) {
        next = k;
        break;
      }
    }
    prompt.push_back(static_cast<char>(next));
  }
  return prompt;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "train_tiny: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--steps")
      c.steps = std::stoll(next());
    else if (a == "--threads")
      c.threads = std::stoi(next());
    else if (a == "--data")
      c.data = next();
    else if (a == "--help" || a == "-h") {
      std::cout << "usage: train_tiny [--steps N] [--threads N] [--data FILE]\n";
      return 0;
    } else {
      std::cerr << "train_tiny: unknown argument '" << a << "' (try --help)\n";
      return 2;
    }
  }
  std::ifstream f(c.data, std::ios::binary);
  if (!f) {
    std::cerr << "train_tiny: cannot open data file '" << c.data << "'\n";
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string all = ss.str();
  if (all.size() < 10 * static_cast<size_t>(c.ctx)) {
    std::cerr << "train_tiny: data file '" << c.data << "' is too small (" << all.size() << " bytes)\n";
    return 1;
  }
  const std::string train = all.substr(0, all.size() * 9 / 10), valid = all.substr(all.size() * 9 / 10);
  nq::set_num_threads(c.threads);

  nq::Generator g(42);
  Model m = init_model(c, g);
  int64_t n_params = 0;
  for (auto* p : m.params()) n_params += p->numel();
  std::printf("nextquill %s | train_tiny: %lld params, %zu train bytes, %lld steps of %lldx%lld tokens\n",
              nq::version_string, static_cast<long long>(n_params), train.size(),
              static_cast<long long>(c.steps), static_cast<long long>(c.batch),
              static_cast<long long>(c.ctx));
  std::printf("%6s %10s %10s %8s\n", "step", "train", "valid", "sec");

  // Adam state, one pair of moments per parameter.
  std::vector<Tensor> m1, m2;
  for (auto* p : m.params()) {
    m1.push_back(nq::zeros_like(*p));
    m2.push_back(nq::zeros_like(*p));
  }
  const double b1 = 0.9, b2 = 0.99;
  auto t0 = std::chrono::steady_clock::now();
  double smooth = std::log(256.0);
  std::vector<std::pair<int64_t, double>> curve;
  for (int64_t step = 1; step <= c.steps; ++step) {
    auto [x, y] = batch(train, c, g);
    Tensor loss = nq::cross_entropy(forward(m, x, c), y);
    for (auto* p : m.params()) p->zero_grad();
    loss.backward();
    smooth = 0.95 * smooth + 0.05 * loss.item();
    {
      nq::NoGradGuard ng;
      double lr = c.lr * std::min(1.0, static_cast<double>(step) / 50.0);
      auto ps = m.params();
      for (size_t i = 0; i < ps.size(); ++i) {
        Tensor gr = ps[i]->grad();
        m1[i].copy_(m1[i] * b1 + gr * (1 - b1));
        m2[i].copy_(m2[i] * b2 + nq::square(gr) * (1 - b2));
        double c1 = 1 - std::pow(b1, static_cast<double>(step)),
               c2 = 1 - std::pow(b2, static_cast<double>(step));
        ps[i]->copy_(*ps[i] - (m1[i] / c1) / (nq::sqrt(m2[i] / c2) + 1e-8) * lr);
      }
    }
    if (step % 100 == 0 || step == 1 || step == c.steps) {
      double v = eval_loss(m, valid, c);
      double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%6lld %10.4f %10.4f %8.1f\n", static_cast<long long>(step), smooth, v, sec);
      std::fflush(stdout);
      curve.emplace_back(step, v);
    }
  }
  // The validation curve as a bar chart (nats per byte).
  std::printf("\nvalidation loss (nats/byte; uniform guess = %.2f)\n", std::log(256.0));
  for (auto& [s, v] : curve) {
    int bars = static_cast<int>(v / std::log(256.0) * 50);
    std::printf("%6lld %6.3f %s\n", static_cast<long long>(s), v,
                std::string(std::max(bars, 0), '#').c_str());
  }
  std::printf("\nsample: %s\n", sample(m, c, "ROMEO:\n", 160, g).c_str());
  return 0;
}
