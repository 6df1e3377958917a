#pragma once
// A Node is one recorded op in the graph: its name (for errors), one Edge per
// differentiable input, and the backward closure written next to the op's
// forward. An Edge points at the Node that produced the input, or, for a leaf
// that requires grad, at the leaf's AutogradMeta where .grad accumulates. An
// input that does not require grad gets an empty Edge, and the closure skips
// its gradient (Node::needs), so frozen weights cost no backward work.
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.hpp"

namespace nq {

// Set on the edge of an op whose output is a slice of its input (slice,
// narrow, select, split, chunk): the closure returns the slice-shaped
// gradient and the engine writes it into elements [start, end) step `step`
// along `dim` of one gradient buffer per input. Without it every slice would
// allocate and zero-fill a full-size gradient, and fan-in would sum them
// (a q/k/v split: three zero-filled (B,T,3C) tensors and two full adds).
struct GradSlice {
  int64_t dim = -1, start = 0, end = 0, step = 1;
  bool active() const { return dim >= 0; }
  Shape shape_in(Shape full) const {  // the slice's shape within a full-size gradient
    full[static_cast<size_t>(dim)] = (end - start + step - 1) / step;
    return full;
  }
};

struct Edge {
  std::shared_ptr<Node> fn;
  std::shared_ptr<AutogradMeta> leaf;
  Shape shape;  // the input's shape: gradients must match it (or slice.shape_in(shape))
  DType dtype = DType::Float32;
  GradSlice slice;
  bool active() const { return fn || leaf; }
  Shape grad_shape() const { return slice.active() ? slice.shape_in(shape) : shape; }
  bool grad_shape_is(const Shape& s) const {  // grad_shape() == s, without a copy in the common case
    return slice.active() ? s == slice.shape_in(shape) : s == shape;
  }
};

struct Node {
  // grads[i] is the gradient for input i, or undefined when !needs(i).
  using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out, const Node& node)>;

  std::string name;
  Shape out_shape;  // for error messages
  std::vector<Edge> next;
  BackwardFn backward;
  bool released = false;                 // closure freed after a backward pass
  std::weak_ptr<AutogradMeta> retained;  // output meta when retain_grad() was called

  bool needs(size_t i) const { return i < next.size() && next[i].active(); }
};

inline bool any_requires_grad(std::initializer_list<const Tensor*> ts) {
  for (auto* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// Records `out = op(inputs...)` in the graph when grad mode is on and some
// input requires grad. Returns `out` (now a non-leaf) either way.
inline Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs,
                     Node::BackwardFn backward) {
  if (!GradMode::is_enabled()) return out;
  bool any = false;
  for (const auto& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return out;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->out_shape = out.shape();
  node->next.reserve(inputs.size());
  for (const auto& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      e.shape = t.shape();
      e.dtype = t.dtype();
      if (t.grad_fn())
        e.fn = t.grad_fn();
      else
        e.leaf = t.meta_ptr();
    }
    node->next.push_back(std::move(e));
  }
  node->backward = std::move(backward);
  auto& m = out.meta();
  m.requires_grad = true;
  m.grad_fn = std::move(node);
  return out;
}

}  // namespace nq
