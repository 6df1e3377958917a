#pragma once
// Optimizer base class, parameter groups and checkpoint state.
//
// An optimizer owns a list of ParamGroups; each group holds named leaf
// parameters plus the group's learning rate and weight decay (everything else,
// such as AdamW's betas, is optimizer-wide and lives in the subclass's
// Options). step() updates every parameter whose .grad() is defined and skips
// the others (frozen or unused parameters), as PyTorch does.
//
// The update of one parameter is a single flat loop over data_ptr<T>() of the
// parameter, its gradient and its state buffers, split across threads with
// cpu::parallel_for when the tensor is large. Parameters and gradients must
// therefore be contiguous and of the same dtype (float32 or float64) and on
// the same device; anything else is an error naming the parameter. On CUDA the
// update is one fused kernel per parameter (kernels/optim.cu) and the state
// buffers live on the parameter's device. (nextquill's models keep parameters
// as views into one flat buffer and gradients as views into another; views of
// whole rows are contiguous, which is all this relies on.)
//
// Checkpoints: state_tensors() lists the per-parameter buffers as
// "<kind>.<parameter name>" (e.g. "exp_avg.h.0.attn.w"), and state_meta() the
// scalars as strings (optimizer name, step counts, group learning rates and
// weight decays, options). load_state(tensors, meta) restores both after
// validating everything, so a failed load leaves the optimizer unchanged.
// Floating-point values are written in shortest round-trip form, so a
// save/load cycle continues bit for bit.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../cpu/parallel.hpp"
#include "../cuda/optim.hpp"
#include "../ops/data.hpp"
#include "../ops/factory.hpp"

namespace nq::optim {

using NamedParams = std::vector<std::pair<std::string, Tensor>>;

struct ParamGroup {
  NamedParams params;
  // NaN (the default) means "the optimizer's Options::lr".
  double lr = std::numeric_limits<double>::quiet_NaN();
  double weight_decay = 0;
  // The base learning rate LR schedules multiply; LRScheduler sets it to `lr`
  // when it is first attached (NaN until then). Saved with the optimizer state.
  double initial_lr = std::numeric_limits<double>::quiet_NaN();
};

// The default rule of make_param_groups: no weight decay for tensors with
// fewer than 2 dims (biases, norm gains) and for embedding tables, recognised
// by a name containing "embed", "wte" (token embedding) or "wpe" (position
// embedding).
inline bool default_no_decay(const std::string& name, const Tensor& t) {
  if (t.dim() < 2) return true;
  for (const char* part : {"embed", "wte", "wpe"})
    if (name.find(part) != std::string::npos) return true;
  return false;
}

using NoDecayPredicate = std::function<bool(const std::string& name, const Tensor& t)>;

// Splits parameters into two groups: [0] with `weight_decay`, [1] with none
// (those for which no_decay(name, tensor) is true). Both groups are always
// returned, possibly empty, so indices are stable; their lr is left NaN (the
// optimizer's default). Parameters that do not require grad are left out.
inline std::vector<ParamGroup> make_param_groups(const NamedParams& named, double weight_decay,
                                                 const NoDecayPredicate& no_decay = default_no_decay) {
  NQ_CHECK(no_decay, "make_param_groups", "the no-decay predicate is empty");
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = weight_decay;
  groups[1].weight_decay = 0;
  for (const auto& [name, t] : named) {
    NQ_CHECK(t.defined(), "make_param_groups", "parameter '", name, "' is undefined");
    if (!t.requires_grad()) continue;
    groups[no_decay(name, t) ? 1 : 0].params.emplace_back(name, t);
  }
  return groups;
}

namespace detail {

// Elements per thread chunk in the update loops.
inline constexpr int64_t kUpdateGrain = int64_t(1) << 15;
// Elements per inner block of an update (a few arrays of it stay in L1).
inline constexpr int64_t kBlock = 512;

inline std::string format_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip form
  return std::string(buf, r.ptr);
}

inline const std::string& meta_get(const std::map<std::string, std::string>& meta, const std::string& key,
                                   const char* op) {
  auto it = meta.find(key);
  if (it == meta.end()) fail(op, "missing metadata key '", key, "'");
  return it->second;
}

inline double parse_double(const std::string& s, const std::string& key, const char* op) {
  double v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty())
    fail(op, "metadata '", key, "': cannot parse '", s, "' as a number");
  return v;
}

inline int64_t parse_int(const std::string& s, const std::string& key, const char* op) {
  int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty())
    fail(op, "metadata '", key, "': cannot parse '", s, "' as an integer");
  return v;
}

inline double meta_double(const std::map<std::string, std::string>& meta, const std::string& key,
                          const char* op) {
  return parse_double(meta_get(meta, key, op), key, op);
}

inline int64_t meta_int(const std::map<std::string, std::string>& meta, const std::string& key,
                        const char* op) {
  return parse_int(meta_get(meta, key, op), key, op);
}

}  // namespace detail

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;

  // "SGD", "AdamW": the op name in errors and the "optimizer" metadata entry.
  const std::string& name() const { return name_; }

  // Zeroes every parameter's .grad in place (views into a flat gradient
  // buffer stay valid), or drops them with set_to_none. On CUDA a contiguous
  // gradient is one memset on the device.
  void zero_grad(bool set_to_none = false) {
    for (auto& g : groups_)
      for (auto& [n, p] : g.params) {
#if NEXTQUILL_WITH_CUDA
        Tensor gr = p.grad();
        if (!set_to_none && gr.defined() && gr.device().is_cuda() && gr.is_contiguous()) {
          cuda::zero_(gr);
          continue;
        }
#endif
        p.zero_grad(set_to_none);
      }
  }

  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Every parameter, group by group (e.g. for clip_grad_norm).
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> out;
    for (const auto& g : groups_)
      for (const auto& [n, p] : g.params) out.push_back(p);
    return out;
  }

  // Learning rate of all groups, or of one.
  void set_lr(double lr) {
    check_lr(lr);
    for (auto& g : groups_) g.lr = lr;
  }
  void set_lr(size_t group, double lr) {
    check_group(group);
    check_lr(lr);
    groups_[group].lr = lr;
  }
  double lr(size_t group = 0) const {
    check_group(group);
    return groups_[group].lr;
  }

  // Number of step() calls so far (restored by load_state).
  int64_t step_count() const { return step_count_; }

  // The per-parameter state buffers as ("<kind>.<param name>", tensor). The
  // tensors are the live buffers, not copies: serialise or clone them before
  // the next step() if they must not change.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& g : groups_)
      for (const auto& [pname, p] : g.params) {
        auto it = state_.find(pname);
        if (it == state_.end()) continue;
        for (size_t k = 0; k < kinds_.size(); ++k)
          out.emplace_back(kinds_[k] + "." + pname, it->second.buffers[k]);
      }
    return out;
  }

  // Scalars of the state: "optimizer", "step_count", "num_groups",
  // "group.<g>.num_params", "group.<g>.lr", "group.<g>.weight_decay",
  // "group.<g>.initial_lr" (when set), "step.<param name>" (per-parameter
  // step, for every parameter with state) and the subclass's options.
  std::map<std::string, std::string> state_meta() const {
    std::map<std::string, std::string> m;
    m["optimizer"] = name_;
    m["step_count"] = std::to_string(step_count_);
    m["num_groups"] = std::to_string(groups_.size());
    for (size_t i = 0; i < groups_.size(); ++i) {
      const std::string pre = "group." + std::to_string(i) + ".";
      m[pre + "num_params"] = std::to_string(groups_[i].params.size());
      m[pre + "lr"] = detail::format_double(groups_[i].lr);
      m[pre + "weight_decay"] = detail::format_double(groups_[i].weight_decay);
      if (!std::isnan(groups_[i].initial_lr))
        m[pre + "initial_lr"] = detail::format_double(groups_[i].initial_lr);
    }
    for (const auto& [pname, st] : state_) m["step." + pname] = std::to_string(st.step);
    save_options(m);
    return m;
  }

  // Restores what state_tensors()/state_meta() returned. Checks, before
  // changing anything: the optimizer name, the group layout, that every
  // tensor entry is "<kind>.<param>" for a known kind and parameter with the
  // parameter's shape, and that every parameter with a "step.<param>" entry
  // has all its buffers (and no buffer lacks one). Metadata keys it does not
  // know are ignored, so the map may be shared with other checkpoint parts.
  // Tensors are copied (converted to the parameter's dtype if needed).
  void load_state(const std::vector<std::pair<std::string, Tensor>>& tensors,
                  const std::map<std::string, std::string>& meta) {
    const std::string opname = name_ + ".load_state";
    const char* op = opname.c_str();
    const std::string& saved_name = detail::meta_get(meta, "optimizer", op);
    NQ_CHECK(saved_name == name_, op, "the state was saved by ", saved_name, ", not ", name_);
    const int64_t steps = detail::meta_int(meta, "step_count", op);
    NQ_CHECK(steps >= 0, op, "negative step_count ", steps);
    const int64_t ngroups = detail::meta_int(meta, "num_groups", op);
    NQ_CHECK(ngroups == int64_t(groups_.size()), op, "the state has ", ngroups,
             " parameter groups, this optimizer ", groups_.size());
    struct GroupScalars {
      double lr, wd, initial_lr;
    };
    std::vector<GroupScalars> scalars;
    for (size_t i = 0; i < groups_.size(); ++i) {
      const std::string pre = "group." + std::to_string(i) + ".";
      const int64_t np = detail::meta_int(meta, pre + "num_params", op);
      NQ_CHECK(np == int64_t(groups_[i].params.size()), op, "group ", i, " has ", groups_[i].params.size(),
               " parameters here but ", np, " in the state");
      GroupScalars s{detail::meta_double(meta, pre + "lr", op),
                     detail::meta_double(meta, pre + "weight_decay", op),
                     std::numeric_limits<double>::quiet_NaN()};
      if (meta.count(pre + "initial_lr")) s.initial_lr = detail::meta_double(meta, pre + "initial_lr", op);
      NQ_CHECK(std::isfinite(s.lr) && s.lr >= 0, op, "group ", i, ": invalid lr ", s.lr);
      NQ_CHECK(std::isfinite(s.wd) && s.wd >= 0, op, "group ", i, ": invalid weight_decay ", s.wd);
      scalars.push_back(s);
    }
    // Parameters by name.
    std::map<std::string, const Tensor*> params;
    for (const auto& g : groups_)
      for (const auto& [pname, p] : g.params) params[pname] = &p;
    // Per-parameter steps from the metadata.
    std::map<std::string, ParamState> fresh;
    const std::string step_prefix = "step.";
    for (auto it = meta.lower_bound(step_prefix); it != meta.end() && it->first.starts_with(step_prefix);
         ++it) {
      const std::string pname = it->first.substr(step_prefix.size());
      NQ_CHECK(params.count(pname), op, "metadata '", it->first, "' names no parameter of this optimizer");
      ParamState st;
      st.step = detail::parse_int(it->second, it->first, op);
      NQ_CHECK(st.step >= 0, op, "metadata '", it->first, "': negative step ", st.step);
      st.buffers.resize(kinds_.size());
      fresh.emplace(pname, std::move(st));
    }
    // Buffers.
    for (const auto& [ename, t] : tensors) {
      const size_t dot = ename.find('.');
      const std::string kind = dot == std::string::npos ? ename : ename.substr(0, dot);
      auto kit = std::find(kinds_.begin(), kinds_.end(), kind);
      if (dot == std::string::npos || kit == kinds_.end()) {
        std::string expected;
        for (const auto& k : kinds_) expected += (expected.empty() ? "" : ", ") + k + ".<param>";
        fail(op, "unexpected state entry '", ename, "' (expected ", expected, ")");
      }
      const std::string pname = ename.substr(dot + 1);
      auto pit = params.find(pname);
      NQ_CHECK(pit != params.end(), op, "state entry '", ename, "' names no parameter of this optimizer");
      auto sit = fresh.find(pname);
      NQ_CHECK(sit != fresh.end(), op, "state entry '", ename, "' has no 'step.", pname, "' in the metadata");
      NQ_CHECK(t.defined(), op, "state entry '", ename, "' is undefined");
      NQ_CHECK(is_floating(t.dtype()), op, "state entry '", ename, "' has dtype ", dtype_name(t.dtype()));
      NQ_CHECK(t.shape() == pit->second->shape(), op, "state entry '", ename, "' has shape ",
               shape_str(t.shape()), " but parameter '", pname, "' has shape ",
               shape_str(pit->second->shape()));
      Tensor& slot = sit->second.buffers[size_t(kit - kinds_.begin())];
      NQ_CHECK(!slot.defined(), op, "state entry '", ename, "' appears twice");
      slot = t;  // copied below, once everything has been checked
    }
    for (const auto& [pname, st] : fresh)
      for (size_t k = 0; k < kinds_.size(); ++k)
        NQ_CHECK(st.buffers[k].defined(), op, "missing state entry '", kinds_[k], ".", pname, "'");
    load_options(meta);  // validates fully before assigning; the last step that may throw on bad input
    for (auto& [pname, st] : fresh)
      for (Tensor& b : st.buffers) {
        const Tensor& p = *params[pname];
        Tensor c = Tensor::empty(b.shape(), p.options());  // on the parameter's device
        NoGradGuard ng;
        c.copy_(b.device() == p.device() ? b.detach() : b.detach().to(p.device()));
        b = c;
      }
    state_ = std::move(fresh);
    step_count_ = steps;
    for (size_t i = 0; i < groups_.size(); ++i) {
      groups_[i].lr = scalars[i].lr;
      groups_[i].weight_decay = scalars[i].wd;
      groups_[i].initial_lr = scalars[i].initial_lr;
    }
  }

 protected:
  struct ParamState {
    std::vector<Tensor> buffers;  // one per kind, contiguous, the parameter's shape and dtype
    int64_t step = 0;             // updates this parameter has received
  };

  // `kinds` names the per-parameter buffers ("exp_avg", ...). Groups whose lr
  // is NaN take `default_lr`.
  Optimizer(std::string name, std::vector<ParamGroup> groups, double default_lr,
            std::vector<std::string> kinds)
      : name_(std::move(name)), groups_(std::move(groups)), kinds_(std::move(kinds)) {
    const char* op = name_.c_str();
    std::set<std::string> names;
    std::set<const TensorImpl*> seen;
    size_t total = 0;
    for (size_t i = 0; i < groups_.size(); ++i) {
      ParamGroup& g = groups_[i];
      if (std::isnan(g.lr)) g.lr = default_lr;
      NQ_CHECK(std::isfinite(g.lr) && g.lr >= 0, op, "group ", i, ": invalid learning rate ", g.lr);
      NQ_CHECK(std::isfinite(g.weight_decay) && g.weight_decay >= 0, op, "group ", i,
               ": invalid weight_decay ", g.weight_decay);
      for (const auto& [pname, p] : g.params) {
        NQ_CHECK(!pname.empty(), op, "group ", i, ": a parameter has an empty name");
        NQ_CHECK(names.insert(pname).second, op, "parameter name '", pname, "' appears twice");
        NQ_CHECK(p.defined(), op, "parameter '", pname, "' is undefined");
        NQ_CHECK(seen.insert(p.impl()).second, op, "parameter '", pname, "' is listed twice (same tensor)");
        NQ_CHECK(p.dtype() == kFloat32 || p.dtype() == kFloat64, op, "parameter '", pname, "' has dtype ",
                 dtype_name(p.dtype()), " (float32/float64 only)");
        NQ_CHECK(p.device().is_cpu() || (NEXTQUILL_WITH_CUDA && p.device().is_cuda()), op, "parameter '",
                 pname, "' is on ", p.device(), ", which this build cannot update");
        NQ_CHECK(p.is_leaf(), op, "parameter '", pname, "' is not a leaf tensor (it has a grad_fn)");
        NQ_CHECK(p.is_contiguous(), op, "parameter '", pname, "' ", p.brief(), " is not contiguous");
      }
      total += g.params.size();
    }
    NQ_CHECK(total > 0, op, "got an empty parameter list");
  }

  // Groups from a plain list, named "0", "1", ...
  static std::vector<ParamGroup> single_group(const std::vector<Tensor>& params, double lr, double wd) {
    ParamGroup g;
    for (size_t i = 0; i < params.size(); ++i) g.params.emplace_back(std::to_string(i), params[i]);
    g.lr = lr;
    g.weight_decay = wd;
    return {std::move(g)};
  }
  static std::vector<ParamGroup> single_group(NamedParams params, double lr, double wd) {
    ParamGroup g;
    g.params = std::move(params);
    g.lr = lr;
    g.weight_decay = wd;
    return {std::move(g)};
  }

  // Subclasses store and restore their options in the metadata. load_options
  // must check everything before assigning anything.
  virtual void save_options(std::map<std::string, std::string>& meta) const = 0;
  virtual void load_options(const std::map<std::string, std::string>& meta) = 0;

  // Calls f(group, name, param, grad) for every parameter with a gradient,
  // after checking that both are contiguous with the same shape and dtype.
  template <typename F>
  void for_each_update(F&& f) {
    const char* op = name_.c_str();
    for (auto& g : groups_)
      for (auto& [pname, p] : g.params) {
        Tensor grad = p.grad();
        if (!grad.defined()) continue;
        NQ_CHECK(p.is_contiguous(), op, "parameter '", pname, "' ", p.brief(), " is not contiguous");
        NQ_CHECK(grad.dtype() == p.dtype(), op, "parameter '", pname, "' is ", dtype_name(p.dtype()),
                 " but its gradient is ", dtype_name(grad.dtype()));
        NQ_CHECK(grad.device() == p.device(), op, "parameter '", pname, "' is on ", p.device(),
                 " but its gradient on ", grad.device());
        NQ_CHECK(grad.shape() == p.shape(), op, "parameter '", pname, "' has shape ", shape_str(p.shape()),
                 " but its gradient has shape ", shape_str(grad.shape()));
        NQ_CHECK(grad.is_contiguous(), op, "the gradient of parameter '", pname, "' ", grad.brief(),
                 " is not contiguous");
        f(g, pname, p, grad);
      }
  }

  // The state of parameter `pname`, allocating zeroed buffers on first use.
  // `fresh` tells the caller whether they were just allocated.
  ParamState& state_for(const std::string& pname, const Tensor& p, bool* fresh = nullptr) {
    auto it = state_.find(pname);
    if (fresh) *fresh = it == state_.end();
    if (it != state_.end()) return it->second;
    ParamState st;
    for (size_t k = 0; k < kinds_.size(); ++k) st.buffers.push_back(zeros(p.shape(), p.options()));
    return state_.emplace(pname, std::move(st)).first->second;
  }

  int64_t step_count_ = 0;

 private:
  void check_group(size_t group) const {
    NQ_CHECK(group < groups_.size(), name_.c_str(), "group index ", group, " out of range (", groups_.size(),
             " groups)");
  }
  void check_lr(double lr) const {
    NQ_CHECK(std::isfinite(lr) && lr >= 0, name_.c_str(), "invalid learning rate ", lr);
  }

  std::string name_;
  std::vector<ParamGroup> groups_;
  std::vector<std::string> kinds_;
  std::map<std::string, ParamState> state_;
};

}  // namespace nq::optim
