#pragma once
// Stochastic gradient descent with momentum, exactly torch.optim.SGD:
//
//   d = g + weight_decay * p                      (when weight_decay != 0)
//   buf = d                                       (first step of this parameter)
//   buf = momentum * buf + (1 - dampening) * d    (later steps)
//   d = nesterov ? d + momentum * buf : buf       (when momentum != 0)
//   p = p - lr * d
//
// lr and weight_decay are per group (ParamGroup); momentum, dampening and
// nesterov are optimizer-wide. The state is one buffer per parameter,
// "momentum.<param name>", allocated at that parameter's first update (none
// when momentum is 0).
#include <type_traits>

#include "optimizer.hpp"

namespace nq::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  // Used for the groups the plain-list constructors build; groups passed in
  // explicitly keep their own.
  double weight_decay = 0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(const std::vector<Tensor>& params, SGDOptions opts)
      : SGD(single_group(params, opts.lr, opts.weight_decay), opts) {}
  SGD(NamedParams params, SGDOptions opts)
      : SGD(single_group(std::move(params), opts.lr, opts.weight_decay), opts) {}
  // Groups keep their lr (NaN: opts.lr) and weight_decay.
  SGD(std::vector<ParamGroup> groups, SGDOptions opts)
      : Optimizer("SGD", std::move(groups), opts.lr, {"momentum"}), opts_(opts) {
    check(opts_, "SGD");
  }

  const SGDOptions& options() const { return opts_; }

  void step() override {
    ++step_count_;
    for_each_update([&](ParamGroup& group, const std::string& pname, Tensor& p, Tensor& g) {
      const double lr = group.lr, wd = group.weight_decay, mom = opts_.momentum;
      Tensor buf;
      bool first = false;
      if (mom != 0) {
        ParamState& st = state_for(pname, p, &first);
        ++st.step;
        buf = st.buffers[0];
      }
#if NEXTQUILL_WITH_CUDA
      if (p.device().is_cuda()) {  // one fused kernel, the same arithmetic
        cuda::sgd_step(p, g, buf, lr, wd, mom, opts_.dampening, opts_.nesterov, first);
        return;
      }
#endif
      visit_float(p.dtype(), "SGD", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* pp = p.data_ptr<T>();
        const T* gp = g.data_ptr<T>();
        T* bp = buf.defined() ? buf.data_ptr<T>() : nullptr;
        const T tlr = T(lr), twd = T(wd), tmom = T(mom), tdamp = T(1 - opts_.dampening);
        const int mode = !bp ? 0 : first ? 1 : 2;  // no momentum / first step / later steps
        // One branch-free loop per case, so that each vectorises.
        auto run = [&](auto has_decay, auto mode_c, auto nesterov_c) {
          constexpr bool kDecay = decltype(has_decay)::value;
          [[maybe_unused]] constexpr bool kNesterov = decltype(nesterov_c)::value;
          constexpr int kMode = decltype(mode_c)::value;
          cpu::parallel_for(0, p.numel(), detail::kUpdateGrain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              T d = gp[i];
              if constexpr (kDecay) d = d + twd * pp[i];
              if constexpr (kMode == 1) bp[i] = d;
              if constexpr (kMode == 2) bp[i] = bp[i] * tmom + tdamp * d;
              if constexpr (kMode != 0) d = kNesterov ? d + tmom * bp[i] : bp[i];
              pp[i] = pp[i] + (-tlr) * d;
            }
          });
        };
        auto with_nesterov = [&](auto has_decay, auto mode_c) {
          if (opts_.nesterov && mode != 0)
            run(has_decay, mode_c, std::true_type{});
          else
            run(has_decay, mode_c, std::false_type{});
        };
        auto with_mode = [&](auto has_decay) {
          if (mode == 0)
            with_nesterov(has_decay, std::integral_constant<int, 0>{});
          else if (mode == 1)
            with_nesterov(has_decay, std::integral_constant<int, 1>{});
          else
            with_nesterov(has_decay, std::integral_constant<int, 2>{});
        };
        if (wd != 0)
          with_mode(std::true_type{});
        else
          with_mode(std::false_type{});
      });
    });
  }

 protected:
  void save_options(std::map<std::string, std::string>& meta) const override {
    meta["momentum"] = detail::format_double(opts_.momentum);
    meta["dampening"] = detail::format_double(opts_.dampening);
    meta["nesterov"] = opts_.nesterov ? "1" : "0";
  }
  void load_options(const std::map<std::string, std::string>& meta) override {
    const char* op = "SGD.load_state";
    SGDOptions o = opts_;
    o.momentum = detail::meta_double(meta, "momentum", op);
    o.dampening = detail::meta_double(meta, "dampening", op);
    const std::string& n = detail::meta_get(meta, "nesterov", op);
    NQ_CHECK(n == "0" || n == "1", op, "metadata 'nesterov': expected 0 or 1, got '", n, "'");
    o.nesterov = n == "1";
    check(o, op);
    opts_ = o;
  }

 private:
  static void check(const SGDOptions& o, const char* op) {
    NQ_CHECK(std::isfinite(o.momentum) && o.momentum >= 0, op, "invalid momentum ", o.momentum);
    NQ_CHECK(std::isfinite(o.dampening), op, "invalid dampening ", o.dampening);
    NQ_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), op,
             "nesterov momentum requires momentum > 0 and dampening = 0 (got momentum ", o.momentum,
             ", dampening ", o.dampening, ")");
  }

  SGDOptions opts_;
};

}  // namespace nq::optim
