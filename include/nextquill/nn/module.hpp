#pragma once
// Module: a named tree of parameters, buffers and child modules (libtorch
// style). Names are dotted paths, e.g. "layers.0.attn.q_proj.weight".
//
// Flat parameters (llm.c style): flatten_parameters() moves every parameter
// of the tree into ONE contiguous storage and every trainable parameter's
// gradient into ONE contiguous gradient storage; each parameter stays a named
// view (its TensorImpl is rebound in place, so every handle a module holds
// sees the move). The optimizer, clipping, zeroing and checkpointing are then
// single loops over flat buffers. Frozen parameters (requires_grad false, e.g.
// base weights under LoRA) get no gradient slot at all.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../autograd/engine.hpp"
#include "../ops/api.hpp"
#include "../ops/data.hpp"
#include "../ops/factory.hpp"

namespace nq::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// One flat storage for all parameters (and one for trainable gradients).
struct FlatParameters {
  Tensor data;  // (N) every parameter, in named_parameters() order
  Tensor grad;  // (G) gradients of trainable parameters only; undefined if none
  struct Slot {
    std::string name;
    int64_t offset = 0;        // into data
    int64_t grad_offset = -1;  // into grad, -1 when frozen
    Tensor param;
  };
  std::vector<Slot> slots;
  int64_t trainable_numel = 0;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  explicit Module(std::string type_name = "Module") : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // ---- registration --------------------------------------------------------
  // Registers `t` as a trainable parameter (a leaf that requires grad) and
  // returns the stored handle.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true) {
    check_new_name(name);
    t = t.detach();
    if (requires_grad) t.set_requires_grad(true);
    params_.emplace_back(name, t);
    return params_.back().second;
  }
  // Non-trainable state saved with the model (e.g. running statistics).
  Tensor register_buffer(const std::string& name, Tensor t) {
    check_new_name(name);
    buffers_.emplace_back(name, t.detach());
    return buffers_.back().second;
  }
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_new_name(name);
    NQ_CHECK(m, "Module", "register_module('", name, "'): null module");
    children_.emplace_back(name, m);
    return m;
  }
  // Replaces an existing child (e.g. to wrap it); the new one takes its name.
  void replace_module(const std::string& name, std::shared_ptr<Module> m) {
    for (auto& [n, c] : children_)
      if (n == name) {
        c = std::move(m);
        return;
      }
    fail("Module", type_name_, " has no child module '", name, "'");
  }

  // ---- traversal -------------------------------------------------------------
  NamedTensors named_parameters(bool recurse = true) const {
    NamedTensors out;
    std::set<const TensorImpl*> seen;  // a tied tensor is listed once
    collect("", recurse, [&](const std::string& p, const Module& m) {
      for (const auto& [n, t] : m.params_)
        if (seen.insert(t.impl()).second) out.emplace_back(p + n, t);
    });
    return out;
  }
  std::vector<Tensor> parameters(bool recurse = true) const {
    std::vector<Tensor> out;
    for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
    return out;
  }
  // Parameters that require grad.
  NamedTensors named_trainable_parameters() const {
    NamedTensors out;
    for (auto& [n, t] : named_parameters())
      if (t.requires_grad()) out.emplace_back(n, t);
    return out;
  }
  NamedTensors named_buffers() const {
    NamedTensors out;
    collect("", true, [&](const std::string& p, const Module& m) {
      for (const auto& [n, t] : m.buffers_) out.emplace_back(p + n, t);
    });
    return out;
  }
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  // Every module of the tree with its dotted path ("" for this one).
  std::vector<std::pair<std::string, Module*>> named_modules() {
    std::vector<std::pair<std::string, Module*>> out;
    walk("", [&](const std::string& p, Module& m) {
      out.emplace_back(p.empty() ? p : p.substr(0, p.size() - 1), &m);
    });
    return out;
  }
  int64_t num_parameters(bool trainable_only = false) const {
    int64_t n = 0;
    for (auto& [name, t] : named_parameters())
      if (!trainable_only || t.requires_grad()) n += t.numel();
    return n;
  }

  // Parameters then buffers, by name: what checkpoints store.
  NamedTensors state_dict() const {
    NamedTensors out = named_parameters();
    for (auto& b : named_buffers()) out.push_back(b);
    return out;
  }
  // Copies values by name. strict: every entry must match a parameter or
  // buffer of the same shape and every parameter/buffer must be given.
  void load_state_dict(const std::map<std::string, Tensor>& src, bool strict = true) {
    NoGradGuard ng;
    std::set<std::string> used;
    std::vector<std::string> missing;
    for (auto& [name, t] : state_dict()) {
      auto it = src.find(name);
      if (it == src.end()) {
        missing.push_back(name);
        continue;
      }
      NQ_CHECK(it->second.shape() == t.shape(), "load_state_dict", "'", name, "' has shape ",
               shape_str(it->second.shape()), " in the source but ", shape_str(t.shape()), " in the model");
      Tensor dst = t;
      dst.copy_(it->second.to(dst.device()));  // a CPU state dict loads into a model on any device
      used.insert(name);
    }
    if (!strict) return;
    if (!missing.empty()) fail("load_state_dict", "missing entries: ", join(missing));
    std::vector<std::string> unexpected;
    for (auto& [name, t] : src)
      if (!used.count(name)) unexpected.push_back(name);
    if (!unexpected.empty()) fail("load_state_dict", "unexpected entries: ", join(unexpected));
  }

  // ---- modes -------------------------------------------------------------------
  virtual void train(bool on = true) {
    training_ = on;
    for (auto& [n, c] : children_) c->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Freezes (false) or unfreezes every parameter of the tree.
  void requires_grad_(bool on) {
    for (auto& [n, t] : named_parameters()) {
      Tensor p = t;
      p.set_requires_grad(on);
    }
  }

  // ---- devices ---------------------------------------------------------------------
  // The device of the first parameter (else the first buffer; CPU when the
  // tree holds no tensors). A tree lives on one device: see to().
  Device device() const {
    auto ps = named_parameters();
    if (!ps.empty()) return ps.front().second.device();
    auto bs = named_buffers();
    return bs.empty() ? Device::cpu() : bs.front().second.device();
  }
  // Moves every parameter and buffer of the tree to `d` (e.g. Device::cuda(0)),
  // keeping dtype (parameters stay fp32 on the GPU: the master weights),
  // requires_grad, names and the flat layout: the flat parameter and gradient
  // buffers move as two copies and every parameter is rebound in place to its
  // old offset in the new storage, so every handle the modules (and tied
  // weights) hold sees the move and .grad stays a view of the flat gradient
  // buffer. Gradients move with their parameters. Call it on the root (the
  // module that owns the flat buffers) and before building an optimizer:
  // optimizer state made earlier stays on the old device. Build on the CPU,
  // then move: initialisers draw on the host so a model is the same on both.
  Module& to(Device d) {
    NoGradGuard ng;
    if (is_flat() && flat_.data.device() != d) {
      Tensor data = flat_.data.to(d);
      Tensor grad = flat_.grad.defined() ? flat_.grad.to(d) : Tensor();
      for (auto& s : flat_.slots) {
        TensorImpl* impl = s.param.impl();
        if (impl->storage != flat_.data.storage()) continue;  // rebound since: moved below
        impl->storage = data.storage();                       // same offset and strides in the copy
        if (s.grad_offset >= 0 && grad.defined()) {
          Tensor p = s.param;
          p.set_grad(grad.narrow(0, s.grad_offset, s.param.numel()).view(s.param.shape()));
        }
      }
      flat_.data = data;
      flat_.grad = grad;
    }
    for (auto& [n, t] : named_parameters()) move_impl(t, d);
    for (auto& [n, t] : named_buffers()) move_impl(t, d);
    return *this;
  }
  Module& cuda(int index = 0) { return to(Device::cuda(index)); }
  Module& cpu() { return to(Device::cpu()); }

  // ---- flat buffers --------------------------------------------------------------
  // (Re)builds the flat parameter and gradient storages for this tree. Call
  // after the tree is complete and again after adding parameters (LoRA) or
  // changing which ones are trainable. Values are preserved.
  const FlatParameters& flatten_parameters() {
    FlatParameters f;
    auto named = named_parameters();
    DType dt = named.empty() ? kFloat32 : named.front().second.dtype();
    int64_t n = 0, g = 0;
    auto align = [](int64_t x) { return (x + 15) / 16 * 16; };  // 64-byte aligned views
    for (auto& [name, t] : named) {
      NQ_CHECK(t.dtype() == dt, "flatten_parameters", "parameter '", name, "' has dtype ",
               dtype_name(t.dtype()), " but others have ", dtype_name(dt));
      FlatParameters::Slot s{name, n, -1, t};
      n = align(n + t.numel());
      if (t.requires_grad()) {
        s.grad_offset = g;
        g = align(g + t.numel());
      }
      f.slots.push_back(std::move(s));
    }
    // The flat buffers live where the parameters live (one device per tree).
    const Device dev = named.empty() ? Device::cpu() : named.front().second.device();
    for (auto& [name, t] : named)
      NQ_CHECK(t.device() == dev, "flatten_parameters", "parameter '", name, "' is on ", t.device().str(),
               " but others are on ", dev.str(), " (move the whole tree with Module::to)");
    const TensorOptions fo = TensorOptions(dt).with_device(dev);
    f.data = zeros({n}, fo);
    if (g > 0) f.grad = zeros({g}, fo);
    for (auto& s : f.slots) {
      Tensor view = f.data.narrow(0, s.offset, s.param.numel()).view(s.param.shape());
      view.copy_(s.param);
      TensorImpl* impl = s.param.impl();  // rebind in place: every holder sees it
      impl->storage = f.data.storage();
      impl->offset = s.offset;
      impl->strides = contiguous_strides(impl->shape);
      if (s.grad_offset >= 0) {
        Tensor gv = f.grad.narrow(0, s.grad_offset, s.param.numel()).view(s.param.shape());
        s.param.set_grad(gv);
        f.trainable_numel += s.param.numel();
      } else if (s.param.meta_ptr()) {
        s.param.meta().grad.reset();
      }
    }
    flat_ = std::move(f);
    return flat_;
  }
  bool is_flat() const { return flat_.data.defined(); }
  const FlatParameters& flat() const {
    NQ_CHECK(is_flat(), "Module", "flatten_parameters() was not called on this ", type_name_);
    return flat_;
  }
  // Zeroes gradients: one memset over the flat gradient buffer when flat.
  void zero_grad() {
    if (is_flat() && flat_.grad.defined()) {
      // A parameter whose .grad was replaced (set_to_none) gets its view back.
      for (auto& s : flat_.slots)
        if (s.grad_offset >= 0 &&
            (!s.param.grad().defined() || s.param.grad().storage() != flat_.grad.storage())) {
          Tensor p = s.param;
          p.set_grad(flat_.grad.narrow(0, s.grad_offset, s.param.numel()).view(s.param.shape()));
        }
      flat_.grad.zero_();
      return;
    }
    for (auto& [n, t] : named_parameters()) {
      Tensor p = t;
      if (p.grad().defined()) p.zero_grad();
    }
  }

 protected:
  void check_new_name(const std::string& name) const {
    NQ_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module", type_name_, ": invalid name '",
             name, "' (non-empty, no dots)");
    auto clash = [&](const auto& v) {
      return std::any_of(v.begin(), v.end(), [&](const auto& p) { return p.first == name; });
    };
    NQ_CHECK(!clash(params_) && !clash(buffers_) && !clash(children_), "Module", type_name_, ": name '", name,
             "' is already registered");
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 20; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 20) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  }
  // Rebinds one parameter's or buffer's TensorImpl to a contiguous copy on
  // `d` (in place, so every holder sees it); its gradient moves along.
  static void move_impl(const Tensor& t, Device d) {
    if (t.device() == d) return;
    Tensor moved = t.detach().to(d).contiguous();
    TensorImpl* impl = t.impl();
    impl->storage = moved.storage();
    impl->offset = moved.offset();
    impl->strides = moved.strides();
    Tensor g = t.grad();
    if (g.defined() && g.device() != d) {
      Tensor p = t;
      p.set_grad(g.detach().to(d).contiguous());
    }
  }
  template <typename F>
  void collect(const std::string& prefix, bool recurse, F&& f) const {
    f(prefix, *this);
    if (!recurse) return;
    for (const auto& [n, c] : children_) c->collect(prefix + n + ".", true, f);
  }
  template <typename F>
  void walk(const std::string& prefix, F&& f) {
    f(prefix, *this);
    for (auto& [n, c] : children_) c->walk(prefix + n + ".", f);
  }

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  FlatParameters flat_;
};

}  // namespace nq::nn
