#pragma once
// The reverse pass. Collect the Nodes reachable from the root, count how many
// consumers each has, then run them in topological order (Kahn), summing the
// gradients that flow into each Node before calling its closure once. Leaves
// accumulate into .grad in place, so a .grad that is a view into a flat
// gradient buffer stays one. Without retain_graph each closure is freed after
// it runs (releasing saved tensors); a second pass through it is an error.
// A leaf with a grad_ready_hook (AutogradMeta) also has its incoming edges
// counted, and the hook runs when the last of them has been processed: its
// .grad is final for this pass. Leaves without a hook cost one branch.
// Fan-in sums in place once the engine owns the buffer (it allocated it),
// never into a tensor a closure returned (add's backward returns g itself to
// both inputs, so it may be shared). A slice's gradient (Edge::slice) goes
// straight into its part of one zero-initialised buffer per input.
#include <algorithm>
#include <optional>
#include <unordered_map>

#include "../ops/elementwise.hpp"
#include "profile.hpp"

namespace nq {

namespace detail {

// The part of a full-size gradient that a slice edge's gradient covers.
inline Tensor slice_of(const Tensor& full, const GradSlice& s) {
  return s.active() ? full.slice(s.dim, s.start, s.end, s.step) : full;
}

// A fresh contiguous tensor the engine owns (on g's device: g may alias
// other buffers): a copy of g, or, with an active slice, zeros of full_shape
// holding g in that slice.
inline Tensor owned_grad(const Tensor& g, const GradSlice& s, const Shape& full_shape) {
  Tensor c = s.active() ? zeros(full_shape, g.options()) : Tensor::empty(g.shape(), g.options());
  slice_of(c, s).copy_(g);
  return c;
}

// Adds g into the leaf's .grad; with an active slice, g is the gradient of
// that slice of the leaf (full_shape is the leaf's shape).
inline void accumulate_leaf(AutogradMeta& m, const Tensor& g, const GradSlice& s = {},
                            const Shape& full_shape = {}) {
  if (!m.grad) {
    m.grad = owned_grad(g, s, full_shape).impl_ptr();
    return;
  }
  Tensor acc = slice_of(Tensor(m.grad), s);
  NQ_CHECK(acc.shape() == g.shape(), "backward", "gradient of shape ", shape_str(g.shape()),
           " does not match existing .grad ", shape_str(acc.shape()));
  // One in-place pass (one kernel on CUDA, casting bf16 to an f32 .grad on
  // the fly); .grad stays where it lives, on its device and in its dtype.
  acc.add_(g);
}

// The gradient summed so far for a Node's output. `owned`: the engine
// allocated it, so later contributions may be added in place. `slices`: while
// it is zeros outside the slices written so far (listed), a slice disjoint
// from them is copied in rather than added.
struct PendingGrad {
  Tensor g;
  bool owned = false;
  std::optional<std::vector<GradSlice>> slices;
};

// Whether two slices of one tensor share no element (conservative: only
// unit-step slices along the same dim are told apart).
inline bool disjoint(const GradSlice& a, const GradSlice& b) {
  return a.dim == b.dim && a.step == 1 && b.step == 1 && (a.end <= b.start || b.end <= a.start);
}

// Adds gradient g, arriving along edge e, to the sum pending for e.fn.
inline void accumulate_pending(std::unordered_map<Node*, PendingGrad>& grads, const Edge& e,
                               const Tensor& g) {
  auto it = grads.find(e.fn.get());
  if (it == grads.end()) {
    if (!e.slice.active())
      grads.emplace(e.fn.get(), PendingGrad{g, false, std::nullopt});
    else
      grads.emplace(e.fn.get(), PendingGrad{owned_grad(g, e.slice, e.shape), true, std::vector{e.slice}});
    return;
  }
  PendingGrad& p = it->second;
  if (!e.slice.active()) {
    if (p.owned)
      p.g.add_(g);
    else
      p.g = add(p.g, g), p.owned = true;  // a new tensor: ours from now on
    p.slices.reset();
    return;
  }
  if (!p.owned) p.g = owned_grad(p.g, {}, {}), p.owned = true;  // a closure's tensor: copy before writing
  Tensor dst = slice_of(p.g, e.slice);
  if (p.slices && std::all_of(p.slices->begin(), p.slices->end(),
                              [&](const GradSlice& w) { return disjoint(w, e.slice); }))
    dst.copy_(g);  // still zeros there
  else
    dst.add_(g);
  if (p.slices) p.slices->push_back(e.slice);  // written: no longer zeros
}

inline void run_backward(const Tensor& root, const Tensor& grad_out, bool retain_graph) {
  NQ_CHECK(root.requires_grad(), "backward", "tensor ", root.brief(),
           " does not require grad and has no grad_fn (did you compute it under no_grad or from detached "
           "inputs?)");
  NQ_CHECK(grad_out.shape() == root.shape(), "backward", "upstream gradient ", shape_str(grad_out.shape()),
           " does not match tensor ", shape_str(root.shape()));
  NoGradGuard ng;
  if (!root.grad_fn()) {  // backward on a leaf
    accumulate_leaf(*root.meta_ptr(), grad_out);
    if (root.meta_ptr()->grad_ready_hook) root.meta_ptr()->grad_ready_hook();
    return;
  }
  // Dependency counts over the reachable graph (and, for hooked leaves, the
  // number of edges that still owe them a gradient).
  std::unordered_map<Node*, int> deps;
  std::unordered_map<AutogradMeta*, int> leaf_deps;
  std::vector<Node*> stack{root.grad_fn().get()};
  deps[stack[0]] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next)
      if (e.leaf && e.leaf->grad_ready_hook) {
        ++leaf_deps[e.leaf.get()];
      } else if (e.fn) {
        auto it = deps.find(e.fn.get());
        if (it == deps.end()) {
          deps[e.fn.get()] = 1;
          stack.push_back(e.fn.get());
        } else {
          ++it->second;
        }
      }
  }
  std::unordered_map<Node*, PendingGrad> grads;
  grads[root.grad_fn().get()] = PendingGrad{grad_out, false, std::nullopt};
  std::vector<Node*> ready{root.grad_fn().get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    // A node that no gradient reached still releases its consumers' counts.
    auto git = grads.find(n);
    std::vector<Tensor> in_grads(n->next.size());
    const bool reached = git != grads.end();
    if (reached) {
      Tensor g = std::move(git->second.g);
      grads.erase(git);
      NQ_CHECK(!n->released, "backward", "trying to backward through the graph a second time (op '", n->name,
               "', output ", shape_str(n->out_shape),
               "): its saved tensors were freed; pass retain_graph=true to the first backward()");
      if (auto m = n->retained.lock()) accumulate_leaf(*m, g);
      autograd::detail::ScopedOpTimer timer(n->name, g.device());  // no-op unless profiling
      in_grads = n->backward(g, *n);
      NQ_CHECK(in_grads.size() == n->next.size(), "backward", "op '", n->name, "' returned ", in_grads.size(),
               " gradients for ", n->next.size(), " inputs");
    }
    std::optional<autograd::detail::ScopedOpTimer> acc_timer;
    if (reached && autograd::backward_profiling()) acc_timer.emplace("(accumulate)", root.device());
    for (size_t i = 0; i < n->next.size(); ++i) {
      Edge& e = n->next[i];
      if (!e.active()) continue;
      Tensor& gi = in_grads[i];
      // Mixed precision on CUDA: a gradient computed in a wider dtype (an op
      // that promoted bf16 to f32) is cast to its input's dtype.
      if (gi.defined() && gi.device().is_cuda() && gi.dtype() != e.dtype && is_floating(gi.dtype()) &&
          is_floating(e.dtype))
        gi = gi.to(e.dtype);
      if (gi.defined()) {
        NQ_CHECK(e.grad_shape_is(gi.shape()) && gi.dtype() == e.dtype, "backward", "op '", n->name,
                 "' (output ", shape_str(n->out_shape), ") produced a gradient ", gi.brief(), " for input ",
                 i, " of shape ", shape_str(e.grad_shape()), " ", dtype_name(e.dtype));
        if (e.leaf)
          accumulate_leaf(*e.leaf, gi, e.slice, e.shape);
        else
          accumulate_pending(grads, e, gi);
      }
      if (e.fn && --deps[e.fn.get()] == 0) ready.push_back(e.fn.get());
      if (e.leaf && e.leaf->grad_ready_hook && --leaf_deps[e.leaf.get()] == 0) e.leaf->grad_ready_hook();
    }
    if (!retain_graph) {
      n->backward = nullptr;
      n->released = true;
    }
  }
}

}  // namespace detail

inline void Tensor::backward(bool retain_graph) const {
  NQ_CHECK(numel() == 1, "backward", "implicit upstream gradient needs a scalar, got ", brief(),
           "; pass grad_output explicitly");
  detail::run_backward(*this, ones(shape(), options()), retain_graph);  // on this tensor's device
}

inline void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  detail::run_backward(*this, grad_output, retain_graph);
}

inline void Tensor::zero_grad(bool set_to_none) {
  if (!impl_ || !impl_->meta || !impl_->meta->grad) return;
  if (set_to_none) {
    impl_->meta->grad.reset();
    return;
  }
  NoGradGuard ng;
  Tensor(impl_->meta->grad).zero_();
}

inline void Tensor::retain_grad() {
  NQ_CHECK(requires_grad(), "retain_grad", "tensor ", brief(), " does not require grad");
  if (grad_fn()) grad_fn()->retained = impl_->meta;
}

}  // namespace nq
