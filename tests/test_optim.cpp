// Optimizers (SGD, AdamW) against double-precision reference loops written
// from PyTorch's update rules; LR schedules against their formulas; gradient
// clipping against a manual norm; checkpoint state round trips.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <nextquill/nextquill.hpp>
#include <nextquill/optim/optim.hpp>
#include <numbers>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using nq::Tensor;
using nqtest::contains;
using nqtest::error_of;
namespace optim = nq::optim;

// Deterministic gradient for element i of parameter j at step s.
double grad_value(int64_t i, int j, int s) {
  return std::sin(1.3 * double(i) + 0.7 * s + j) * (1.0 + 0.1 * s);
}

Tensor make_param(const nq::Shape& shape, int j, nq::DType dt) {
  std::vector<double> v(size_t(nq::numel_of(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5 * std::cos(0.9 * double(i) + j) + 0.1 * j;
  return nq::from_vector(v, shape, dt).requires_grad_();
}

// Sets p.grad to the step-s gradient (in p's dtype); returns it in double.
std::vector<double> set_grad(Tensor& p, int j, int s) {
  std::vector<double> g(size_t(p.numel()));
  for (size_t i = 0; i < g.size(); ++i) g[i] = grad_value(int64_t(i), j, s);
  Tensor gt = nq::from_vector(g, p.shape(), p.dtype());
  p.set_grad(gt);
  return gt.to_vector<double>();  // rounded to p's dtype, as the optimizer sees it
}

double tol_for(nq::DType dt) { return dt == nq::kFloat64 ? 1e-12 : 1e-6; }

// max |a - b| <= tol * max(1, max |b|)
void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                 const std::string& what) {
  REQUIRE(got.size() == want.size());
  double scale = 1, err = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    scale = std::max(scale, std::abs(want[i]));
    err = std::max(err, std::abs(got[i] - want[i]));
  }
  CHECK_MESSAGE(err <= tol * scale, what << ": max error " << err << " (scale " << scale << ")");
}

struct Ref {
  std::vector<double> p, m, v;
  int64_t step = 0;
  bool has_m = false;
};

struct SGDCase {
  double lr, momentum, dampening, wd;
  bool nesterov;
};

}  // namespace

TEST_CASE("optim: SGD matches the torch.optim.SGD update (momentum, dampening, nesterov, weight decay)") {
  const SGDCase cases[] = {{0.1, 0, 0, 0, false},
                           {0.05, 0.9, 0, 0, false},
                           {0.05, 0.9, 0, 0.01, true},
                           {0.02, 0.5, 0.1, 0.1, false},
                           {0.1, 0, 0, 0.05, false}};
  for (nq::DType dt : {nq::kFloat32, nq::kFloat64}) {
    for (const SGDCase& c : cases) {
      CAPTURE(std::string(nq::dtype_name(dt)));
      CAPTURE(c.momentum);
      CAPTURE(c.nesterov);
      CAPTURE(c.wd);
      std::vector<Tensor> ps = {make_param({3, 4}, 0, dt), make_param({5}, 1, dt)};
      std::vector<Ref> ref(ps.size());
      for (size_t j = 0; j < ps.size(); ++j) ref[j].p = ps[j].to_vector<double>();
      optim::SGD opt(ps, {c.lr, c.momentum, c.dampening, c.wd, c.nesterov});
      for (int s = 0; s < 6; ++s) {
        for (size_t j = 0; j < ps.size(); ++j) {
          if (s == 2 && j == 1) {  // no gradient: skipped, momentum untouched
            ps[j].set_grad(Tensor());
            continue;
          }
          std::vector<double> g = set_grad(ps[j], int(j), s);
          Ref& r = ref[j];
          if (c.momentum != 0 && !r.has_m) r.m.assign(g.size(), 0.0);
          for (size_t i = 0; i < g.size(); ++i) {
            double d = g[i] + c.wd * r.p[i];
            if (c.momentum != 0) {
              r.m[i] = r.has_m ? c.momentum * r.m[i] + (1 - c.dampening) * d : d;
              d = c.nesterov ? d + c.momentum * r.m[i] : r.m[i];
            }
            r.p[i] -= c.lr * d;
          }
          if (c.momentum != 0) r.has_m = true;
        }
        opt.step();
        for (size_t j = 0; j < ps.size(); ++j)
          check_close(ps[j].to_vector<double>(), ref[j].p, tol_for(dt),
                      "param " + std::to_string(j) + " after step " + std::to_string(s));
      }
      CHECK(opt.step_count() == 6);
      const auto st = opt.state_tensors();
      CHECK(st.size() == (c.momentum != 0 ? 2u : 0u));
      if (c.momentum != 0) {
        CHECK(st[0].first == "momentum.0");
        check_close(st[0].second.to_vector<double>(), ref[0].m, tol_for(dt), "momentum buffer");
      }
    }
  }
}

TEST_CASE("optim: AdamW matches torch.optim.AdamW with two parameter groups") {
  for (nq::DType dt : {nq::kFloat32, nq::kFloat64}) {
    CAPTURE(std::string(nq::dtype_name(dt)));
    optim::NamedParams named = {{"h.0.w", make_param({3, 4}, 0, dt)},
                                {"h.0.b", make_param({4}, 1, dt)},
                                {"wte.weight", make_param({5, 3}, 2, dt)},
                                {"frozen", make_param({2, 2}, 3, dt).requires_grad_(false)}};
    auto groups = optim::make_param_groups(named, 0.1);
    REQUIRE(groups.size() == 2);
    REQUIRE(groups[0].params.size() == 1);
    REQUIRE(groups[1].params.size() == 2);
    CHECK(groups[0].params[0].first == "h.0.w");
    CHECK(groups[1].params[0].first == "h.0.b");
    CHECK(groups[1].params[1].first == "wte.weight");
    groups[1].lr = 0.02;  // group 0 keeps NaN: the default lr below
    const optim::AdamWOptions o{0.01, 0.8, 0.95, 1e-6, 0.5};
    optim::AdamW opt(groups, o);
    CHECK(opt.lr(0) == 0.01);
    CHECK(opt.lr(1) == 0.02);
    CHECK(opt.groups()[0].weight_decay == 0.1);
    CHECK(opt.groups()[1].weight_decay == 0);

    struct P {
      Tensor t;
      double lr, wd;
      Ref r;
    };
    std::vector<P> ps;
    for (size_t gi = 0; gi < 2; ++gi)
      for (auto& [n, t] : opt.groups()[gi].params)
        ps.push_back(
            {t, opt.lr(gi), opt.groups()[gi].weight_decay, {t.to_vector<double>(), {}, {}, 0, false}});
    for (int s = 0; s < 7; ++s) {
      for (size_t j = 0; j < ps.size(); ++j) {
        if (s == 3 && j == 2) {  // skipped: this parameter's step count lags behind
          ps[j].t.zero_grad(true);
          continue;
        }
        std::vector<double> g = set_grad(ps[j].t, int(j), s);
        Ref& r = ps[j].r;
        if (r.m.empty()) r.m.assign(g.size(), 0.0), r.v.assign(g.size(), 0.0);
        ++r.step;
        const double bc1 = 1 - std::pow(o.beta1, double(r.step)), bc2 = 1 - std::pow(o.beta2, double(r.step));
        for (size_t i = 0; i < g.size(); ++i) {
          r.p[i] *= 1 - ps[j].lr * ps[j].wd;
          r.m[i] = o.beta1 * r.m[i] + (1 - o.beta1) * g[i];
          r.v[i] = o.beta2 * r.v[i] + (1 - o.beta2) * g[i] * g[i];
          r.p[i] -= ps[j].lr / bc1 * r.m[i] / (std::sqrt(r.v[i]) / std::sqrt(bc2) + o.eps);
        }
      }
      opt.step();
      for (size_t j = 0; j < ps.size(); ++j)
        check_close(ps[j].t.to_vector<double>(), ps[j].r.p, tol_for(dt),
                    "param " + std::to_string(j) + " after step " + std::to_string(s));
    }
    const auto st = opt.state_tensors();
    REQUIRE(st.size() == 6);
    CHECK(st[0].first == "exp_avg.h.0.w");
    CHECK(st[1].first == "exp_avg_sq.h.0.w");
    CHECK(st[5].first == "exp_avg_sq.wte.weight");
    check_close(st[4].second.to_vector<double>(), ps[2].r.m, tol_for(dt), "exp_avg");
    check_close(st[5].second.to_vector<double>(), ps[2].r.v, tol_for(dt), "exp_avg_sq");
    const auto meta = opt.state_meta();
    CHECK(meta.at("optimizer") == "AdamW");
    CHECK(meta.at("step_count") == "7");
    CHECK(meta.at("step.h.0.w") == "7");
    CHECK(meta.at("step.wte.weight") == "6");
    CHECK(meta.at("group.1.lr") == "0.02");
  }
}

TEST_CASE("optim: AdamW defaults, plain parameter lists and large tensors (parallel path)") {
  optim::AdamWOptions d;
  CHECK(d.lr == 1e-3);
  CHECK(d.beta1 == 0.9);
  CHECK(d.beta2 == 0.999);
  CHECK(d.eps == 1e-8);
  CHECK(d.weight_decay == 0.01);
  // 200k elements: several threads' chunks; compare against the reference.
  const int64_t n = 200000;
  Tensor p = make_param({n}, 0, nq::kFloat32);
  std::vector<double> rp = p.to_vector<double>(), m(size_t(n), 0.0), v(size_t(n), 0.0);
  optim::AdamW opt(std::vector<Tensor>{p});
  CHECK(opt.groups()[0].params[0].first == "0");
  CHECK(opt.groups()[0].weight_decay == 0.01);
  for (int s = 1; s <= 3; ++s) {
    std::vector<double> g = set_grad(p, 0, s);
    const double bc1 = 1 - std::pow(0.9, s), bc2 = 1 - std::pow(0.999, s);
    for (size_t i = 0; i < g.size(); ++i) {
      rp[i] *= 1 - 1e-3 * 0.01;
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      rp[i] -= 1e-3 / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + 1e-8);
    }
    opt.step();
  }
  check_close(p.to_vector<double>(), rp, 1e-6, "large AdamW");
}

TEST_CASE("optim: make_param_groups default no-decay rule and custom predicate") {
  optim::NamedParams named = {{"blocks.0.mlp.w", nq::zeros({4, 4}).requires_grad_()},
                              {"blocks.0.mlp.b", nq::zeros({4}).requires_grad_()},
                              {"ln.gain", nq::zeros({4}).requires_grad_()},
                              {"tok_embed", nq::zeros({10, 4}).requires_grad_()},
                              {"wte", nq::zeros({10, 4}).requires_grad_()},
                              {"wpe", nq::zeros({8, 4}).requires_grad_()},
                              {"head.w", nq::zeros({10, 4}).requires_grad_()},
                              {"frozen.w", nq::zeros({4, 4})}};
  auto g = optim::make_param_groups(named, 0.1);
  REQUIRE(g.size() == 2);
  std::vector<std::string> decay, no_decay;
  for (auto& [n, t] : g[0].params) decay.push_back(n);
  for (auto& [n, t] : g[1].params) no_decay.push_back(n);
  CHECK(decay == std::vector<std::string>{"blocks.0.mlp.w", "head.w"});
  CHECK(no_decay == std::vector<std::string>{"blocks.0.mlp.b", "ln.gain", "tok_embed", "wte", "wpe"});
  CHECK(g[0].weight_decay == 0.1);
  CHECK(g[1].weight_decay == 0);
  CHECK(std::isnan(g[0].lr));
  auto custom = optim::make_param_groups(
      named, 0.2, [](const std::string& n, const Tensor&) { return n.find("head") != std::string::npos; });
  CHECK(custom[0].params.size() == 6);
  CHECK(custom[1].params.size() == 1);
  // An empty group is fine as long as the optimizer has some parameter.
  optim::NamedParams only_bias = {{"b", nq::zeros({3}).requires_grad_()}};
  optim::SGD opt(optim::make_param_groups(only_bias, 0.1), {0.1});
  CHECK(opt.groups()[0].params.empty());
  CHECK(opt.parameters().size() == 1);
}

TEST_CASE("optim: zero_grad, set_lr and group learning rates") {
  Tensor a = make_param({2, 3}, 0, nq::kFloat32), b = make_param({3}, 1, nq::kFloat32);
  optim::SGD opt(std::vector<Tensor>{a, b}, {0.5});
  set_grad(a, 0, 0);
  set_grad(b, 1, 0);
  Tensor ga = a.grad();
  opt.zero_grad();
  CHECK(a.grad().impl() == ga.impl());  // zeroed in place
  for (double x : a.grad().to_vector<double>()) CHECK(x == 0);
  opt.zero_grad(true);
  CHECK(!a.grad().defined());
  CHECK(!b.grad().defined());
  const auto before = a.to_vector<float>();
  opt.step();  // no gradients: nothing moves
  CHECK(a.to_vector<float>() == before);
  opt.set_lr(0.25);
  CHECK(opt.lr() == 0.25);
  opt.set_lr(0, 0.125);
  CHECK(opt.lr(0) == 0.125);
  CHECK(contains(error_of([&] { opt.set_lr(3, 0.1); }), "group index 3 out of range"));
  CHECK(contains(error_of([&] { opt.set_lr(-1.0); }), "invalid learning rate"));
}

TEST_CASE("optim: LR schedules follow their formulas") {
  const double pi = std::numbers::pi;
  optim::ConstantLR c(0.5);
  CHECK(c(0) == 0.5);
  CHECK(c(1000) == 0.5);
  optim::LinearLR lin(10, 0.2);
  for (int t = 0; t <= 14; ++t)
    CHECK(lin(t) == doctest::Approx(1 - 0.8 * std::min(t, 10) / 10.0).epsilon(1e-15));
  optim::CosineLR cos(8, 0.1);
  for (int t = 0; t <= 10; ++t)
    CHECK(cos(t) ==
          doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(pi * std::min(t, 8) / 8.0))).epsilon(1e-15));
  // The reference: total 10, warmup 3, min_ratio 0.1.
  optim::Warmup wc(optim::CosineLR(10, 0.1), 3);
  CHECK(wc.total_steps() == 10);
  for (int t = 0; t < 10; ++t) {
    const double want = t < 3 ? (t + 1) / 3.0 : 0.1 + 0.9 * 0.5 * (1 + std::cos(pi * (t - 3) / 7.0));
    CHECK(std::abs(wc(t) - want) <= 1e-15);
  }
  CHECK(std::abs(wc(12) - 0.1) <= 1e-15);  // after the end: stays at the minimum
  optim::Warmup wl(optim::LinearLR(6, 0.0), 2);
  const double wl_want[] = {0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0};
  for (int t = 0; t < 8; ++t) CHECK(std::abs(wl(t) - wl_want[t]) <= 1e-15);
  optim::Warmup wconst(optim::ConstantLR(), 4);
  CHECK(wconst(0) == 0.25);
  CHECK(wconst(3) == 1.0);
  CHECK(wconst(100) == 1.0);
  optim::Warmup none(optim::CosineLR(5), 0);
  CHECK(none(0) == 1.0);
  // Nesting: the inner warmup runs after the outer one.
  optim::Warmup nested(optim::Warmup(optim::LinearLR(10, 0.0), 2), 1);
  CHECK(nested(0) == 1.0);
  CHECK(nested(1) == 0.5);
  CHECK(nested(2) == 1.0);
  CHECK(nested(3) == 1.0);
  CHECK(std::abs(nested(4) - (1 - 1.0 / 7)) <= 1e-15);
  CHECK(contains(error_of([] { optim::Warmup(optim::CosineLR(5), 5); }), "Warmup"));
  CHECK(contains(error_of([] { optim::CosineLR(0); }), "total_steps must be positive"));
  CHECK(contains(error_of([] { optim::LinearLR(5, -1); }), "end_ratio"));
}

TEST_CASE("optim: LRScheduler sets each group's lr from its base lr, and resumes") {
  optim::NamedParams named = {{"w", nq::zeros({2, 2}).requires_grad_()},
                              {"b", nq::zeros({2}).requires_grad_()}};
  auto groups = optim::make_param_groups(named, 0.1);
  groups[0].lr = 1.0;
  groups[1].lr = 0.5;
  optim::AdamW opt(groups);
  optim::LRScheduler sched(opt, optim::Warmup(optim::CosineLR(10, 0.1), 3));
  const double pi = std::numbers::pi;
  for (int t = 0; t < 12; ++t) {
    const double m = t < 3 ? (t + 1) / 3.0 : 0.1 + 0.9 * 0.5 * (1 + std::cos(pi * std::min(t - 3, 7) / 7.0));
    CHECK(sched.step_index() == t);
    CHECK(std::abs(opt.lr(0) - 1.0 * m) <= 1e-15);
    CHECK(std::abs(opt.lr(1) - 0.5 * m) <= 1e-15);
    CHECK(opt.groups()[1].initial_lr == 0.5);
    sched.step();
  }
  // A fresh optimizer + scheduler restored mid-run.
  optim::AdamW opt2(groups);
  opt2.load_state(opt.state_tensors(), opt.state_meta());
  optim::LRScheduler sched2(opt2, optim::Warmup(optim::CosineLR(10, 0.1), 3));
  auto meta = sched.state_meta();
  CHECK(meta.at("scheduler.step") == "12");
  sched2.load_state(meta);
  CHECK(sched2.step_index() == 12);
  CHECK(opt2.lr(0) == opt.lr(0));
  CHECK(opt2.lr(1) == opt.lr(1));
  CHECK(contains(error_of([&] { sched2.load_state({}); }), "missing metadata key 'scheduler.step'"));
}

TEST_CASE("optim: clip_grad_norm and grad_norm match a manual computation") {
  for (nq::DType dt : {nq::kFloat32, nq::kFloat64}) {
    CAPTURE(std::string(nq::dtype_name(dt)));
    Tensor a = make_param({3, 4}, 0, dt), b = make_param({5}, 1, dt), c = make_param({2}, 2, dt);
    auto ga = set_grad(a, 0, 1), gb = set_grad(b, 1, 1);  // c has no gradient
    double ss = 0;
    for (double x : ga) ss += x * x;
    for (double x : gb) ss += x * x;
    const double norm = std::sqrt(ss);
    std::vector<Tensor> ps = {a, b, c};
    CHECK(optim::grad_norm(ps) == doctest::Approx(norm).epsilon(1e-14));
    // Above the norm: untouched.
    CHECK(optim::clip_grad_norm(ps, norm * 2) == doctest::Approx(norm).epsilon(1e-14));
    check_close(a.grad().to_vector<double>(), ga, 0, "unclipped a");
    // Below: scaled by max_norm / (norm + 1e-6).
    const double coef = 1.0 / (norm + 1e-6);
    CHECK(optim::clip_grad_norm(ps, 1.0) == doctest::Approx(norm).epsilon(1e-14));
    std::vector<double> wa(ga), wb(gb);
    for (double& x : wa) x *= coef;
    for (double& x : wb) x *= coef;
    check_close(a.grad().to_vector<double>(), wa, tol_for(dt), "clipped a");
    check_close(b.grad().to_vector<double>(), wb, tol_for(dt), "clipped b");
    CHECK(optim::grad_norm(ps) == doctest::Approx(norm * coef).epsilon(1e-6));
    CHECK(!c.grad().defined());
  }
  // Non-finite norms are returned without touching the gradients.
  Tensor p = nq::zeros({3}).requires_grad_();
  p.set_grad(nq::from_vector<float>({1.0f, NAN, 2.0f}, {3}));
  CHECK(std::isnan(optim::clip_grad_norm({p}, 1.0)));
  CHECK(p.grad().to_vector<float>()[0] == 1.0f);
  p.set_grad(nq::from_vector<float>({1.0f, INFINITY, 2.0f}, {3}));
  CHECK(std::isinf(optim::clip_grad_norm({p}, 1.0)));
  CHECK(p.grad().to_vector<float>()[2] == 2.0f);
  CHECK(optim::grad_norm({nq::zeros({2}).requires_grad_()}) == 0.0);
  // A large gradient (several parallel blocks) and a non-contiguous one.
  const int64_t n = 300001;
  Tensor big = nq::zeros({n}).requires_grad_();
  std::vector<float> gv(static_cast<size_t>(n));
  double bss = 0;
  for (int64_t i = 0; i < n; ++i) {
    gv[size_t(i)] = float(std::sin(0.001 * double(i)));
    bss += double(gv[size_t(i)]) * gv[size_t(i)];
  }
  big.set_grad(nq::from_vector(gv, {n}));
  Tensor nc = nq::zeros({3, 2}).requires_grad_();
  nc.set_grad(nq::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).t());
  const double total = std::sqrt(bss + 91.0);
  CHECK(optim::clip_grad_norm({big, nc}, 2.0) == doctest::Approx(total).epsilon(1e-12));
  CHECK(optim::grad_norm({big, nc}) == doctest::Approx(2.0).epsilon(1e-6));
  CHECK(nc.grad().to_vector<float>()[1] == doctest::Approx(4.0 * 2.0 / (total + 1e-6)).epsilon(1e-6));
  CHECK(contains(error_of([&] { optim::clip_grad_norm({p}, -1.0); }), "max_norm must be non-negative"));
}

namespace {

// Runs `steps` AdamW+SGD updates with a warmup-cosine schedule on fresh copies
// of the initial parameters; stops after `stop` steps, saves, rebuilds, loads
// and finishes. Returns the final parameter values.
template <typename Opt, typename Opts>
std::vector<std::vector<float>> run_resumable(int steps, int stop, Opts opts, bool clip) {
  auto build = [&]() {
    optim::NamedParams named = {{"w", make_param({4, 3}, 0, nq::kFloat32)},
                                {"b", make_param({3}, 1, nq::kFloat32)},
                                {"wte", make_param({6, 3}, 2, nq::kFloat32)}};
    return named;
  };
  optim::NamedParams named = build();
  auto opt = std::make_unique<Opt>(optim::make_param_groups(named, 0.05), opts);
  auto sched = std::make_unique<optim::LRScheduler>(*opt, optim::Warmup(optim::CosineLR(steps, 0.1), 2));
  for (int s = 0; s < steps; ++s) {
    if (s == stop) {  // checkpoint: copies of parameters and state, then fresh objects
      std::vector<std::pair<std::string, Tensor>> st;
      for (auto& [n, t] : opt->state_tensors()) st.emplace_back(n, t.clone());
      auto meta = opt->state_meta();
      for (auto& [k, v] : sched->state_meta()) meta[k] = v;
      optim::NamedParams fresh = build();
      for (size_t j = 0; j < fresh.size(); ++j) {
        nq::NoGradGuard ng;
        fresh[j].second.copy_(named[j].second);
      }
      named = fresh;
      opt = std::make_unique<Opt>(optim::make_param_groups(named, 0.05), opts);
      sched = std::make_unique<optim::LRScheduler>(*opt, optim::Warmup(optim::CosineLR(steps, 0.1), 2));
      opt->load_state(st, meta);
      sched->load_state(meta);
    }
    for (size_t j = 0; j < named.size(); ++j)
      if (!(s == 1 && j == 2)) set_grad(named[j].second, int(j), s);
    if (clip) optim::clip_grad_norm(opt->parameters(), 1.5);
    opt->step();
    sched->step();
    opt->zero_grad(true);
  }
  std::vector<std::vector<float>> out;
  for (auto& [n, t] : named) out.push_back(t.template to_vector<float>());
  return out;
}

}  // namespace

TEST_CASE("optim: state save/load then continuing is bit-identical to not stopping") {
  const auto adam_full = run_resumable<optim::AdamW>(8, -1, optim::AdamWOptions{0.01}, true);
  for (int stop : {1, 2, 5}) {
    CAPTURE(stop);
    CHECK(run_resumable<optim::AdamW>(8, stop, optim::AdamWOptions{0.01}, true) == adam_full);
  }
  const optim::SGDOptions so{0.1, 0.9, 0.0, 0.0, true};
  const auto sgd_full = run_resumable<optim::SGD>(8, -1, so, false);
  CHECK(run_resumable<optim::SGD>(8, 3, so, false) == sgd_full);
  // Stopping changes nothing only if everything is restored: a fresh
  // optimizer without the state diverges.
  CHECK(run_resumable<optim::AdamW>(8, -1, optim::AdamWOptions{0.02}, true) != adam_full);
}

TEST_CASE("optim: load_state rejects mismatched state with clear errors") {
  auto make = [] {
    return optim::NamedParams{{"w", make_param({2, 3}, 0, nq::kFloat32)},
                              {"b", make_param({3}, 1, nq::kFloat32)}};
  };
  optim::NamedParams named = make();
  optim::AdamW opt(named);
  set_grad(named[0].second, 0, 0);
  set_grad(named[1].second, 1, 0);
  opt.step();
  const auto st = opt.state_tensors();
  const auto meta = opt.state_meta();
  optim::NamedParams named2 = make();
  optim::AdamW opt2(named2);
  auto err = [&](std::vector<std::pair<std::string, Tensor>> t, std::map<std::string, std::string> m) {
    return error_of([&] { opt2.load_state(t, m); });
  };
  {
    auto t = st;
    t[0].second = nq::zeros({3, 2});
    const std::string e = err(t, meta);
    CHECK(contains(e, "nq::AdamW.load_state"));
    CHECK(contains(e, "'exp_avg.w' has shape [3,2] but parameter 'w' has shape [2,3]"));
  }
  {
    auto t = st;
    t.erase(t.begin() + 1);
    CHECK(contains(err(t, meta), "missing state entry 'exp_avg_sq.w'"));
  }
  {
    auto t = st;
    t.emplace_back("momentum.w", nq::zeros({2, 3}));
    CHECK(contains(err(t, meta), "unexpected state entry 'momentum.w'"));
    t.back().first = "exp_avg.nope";
    CHECK(contains(err(t, meta), "'exp_avg.nope' names no parameter"));
    t.back().first = "exp_avg.w";
    CHECK(contains(err(t, meta), "'exp_avg.w' appears twice"));
  }
  {
    auto m = meta;
    m.erase("step.b");
    CHECK(contains(err(st, m), "'exp_avg.b' has no 'step.b' in the metadata"));
    m = meta;
    m["optimizer"] = "SGD";
    CHECK(contains(err(st, m), "saved by SGD, not AdamW"));
    m = meta;
    m.erase("beta2");
    CHECK(contains(err(st, m), "missing metadata key 'beta2'"));
    m = meta;
    m["num_groups"] = "2";
    CHECK(contains(err(st, m), "the state has 2 parameter groups, this optimizer 1"));
    m = meta;
    m["step_count"] = "x1";
    CHECK(contains(err(st, m), "cannot parse 'x1'"));
    m = meta;
    m["group.0.num_params"] = "3";
    CHECK(contains(err(st, m), "group 0 has 2 parameters here but 3 in the state"));
  }
  // A failed load changes nothing; then a good one restores the counters.
  CHECK(opt2.step_count() == 0);
  CHECK(opt2.state_tensors().empty());
  CHECK(err(st, meta).empty());
  CHECK(opt2.step_count() == 1);
  REQUIRE(opt2.state_tensors().size() == 4);
  CHECK(opt2.state_tensors()[0].second.to_vector<float>() == st[0].second.to_vector<float>());
  CHECK(opt2.state_tensors()[0].second.impl() != st[0].second.impl());  // copied, not aliased
}

TEST_CASE("optim: optimizer construction and step errors") {
  Tensor w = make_param({2, 3}, 0, nq::kFloat32);
  CHECK(contains(error_of([] { optim::SGD(std::vector<Tensor>{}, {0.1}); }),
                 "nq::SGD: got an empty parameter list"));
  CHECK(contains(error_of([&] {
                   optim::SGD(optim::NamedParams{{"a", w}, {"a", w.clone()}}, {0.1});
                 }),
                 "parameter name 'a' appears twice"));
  CHECK(contains(error_of([&] {
                   optim::SGD(optim::NamedParams{{"a", w}, {"b", w}}, {0.1});
                 }),
                 "parameter 'b' is listed twice"));
  CHECK(contains(error_of([&] { optim::SGD(std::vector<Tensor>{w * 2.0}, {0.1}); }), "is not a leaf"));
  CHECK(contains(error_of([&] {
                   optim::SGD(std::vector<Tensor>{w}, {0.1, 0.0, 0.0, 0.0, true});
                 }),
                 "nesterov momentum requires momentum > 0"));
  CHECK(contains(error_of([&] {
                   optim::AdamW(std::vector<Tensor>{w}, {0.1, 1.0});
                 }),
                 "beta1 must be in [0, 1)"));
  CHECK(contains(error_of([&] { optim::AdamW(std::vector<Tensor>{w}, {-0.1}); }), "invalid learning rate"));
  CHECK(contains(error_of([&] { optim::AdamW(std::vector<Tensor>{nq::zeros({3}, nq::kInt64)}); }),
                 "has dtype int64"));
  Tensor big = make_param({3, 2}, 1, nq::kFloat32);
  CHECK(contains(error_of([&] { optim::SGD(std::vector<Tensor>{big.detach().t()}, {0.1}); }),
                 "is not contiguous"));
  optim::AdamW opt(optim::NamedParams{{"w", w}});
  w.set_grad(nq::zeros({3, 2}).t());
  CHECK(contains(error_of([&] { opt.step(); }),
                 "the gradient of parameter 'w' Tensor[2,3] float32 is not contiguous"));
  w.set_grad(nq::zeros({2, 3}, nq::kFloat64));
  CHECK(contains(error_of([&] { opt.step(); }), "parameter 'w' is float32 but its gradient is float64"));
  w.set_grad(nq::zeros({6}));
  CHECK(contains(error_of([&] { opt.step(); }),
                 "parameter 'w' has shape [2,3] but its gradient has shape [6]"));
}

TEST_CASE("optim: GradAccumulator gives the gradient of the full batch") {
  optim::GradAccumulator acc{3};
  CHECK(acc.steps() == 3);
  CHECK(acc.loss_scale() == doctest::Approx(1.0 / 3));
  std::vector<bool> pattern;
  for (int i = 0; i < 7; ++i) pattern.push_back(acc.should_step());
  CHECK(pattern == std::vector<bool>{false, false, true, false, false, true, false});
  CHECK(acc.micro_step() == 1);
  acc.reset();
  CHECK(acc.micro_step() == 0);
  CHECK(contains(error_of([] { optim::GradAccumulator bad{0}; }), "steps must be at least 1"));
  // 2 micro-batches of 3 rows with loss/2 == one batch of 6 rows (mean losses).
  nq::Generator gen(7);
  Tensor x = nq::randn({6, 4}, nq::kFloat64, &gen), y = nq::randn({6, 1}, nq::kFloat64, &gen);
  Tensor w = nq::randn({4, 1}, nq::kFloat64, &gen).requires_grad_();
  nq::square(nq::matmul(x, w) - y).mean().backward();
  const auto full = w.grad().to_vector<double>();
  w.zero_grad(true);
  optim::GradAccumulator two{2};
  int steps = 0;
  for (int mb = 0; mb < 2; ++mb) {
    Tensor xb = x.narrow(0, 3 * mb, 3), yb = y.narrow(0, 3 * mb, 3);
    (nq::square(nq::matmul(xb, w) - yb).mean() * two.loss_scale()).backward();
    if (two.should_step()) ++steps;
  }
  CHECK(steps == 1);
  check_close(w.grad().to_vector<double>(), full, 1e-14, "accumulated gradient");
}
