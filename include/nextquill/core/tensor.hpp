#pragma once
// Tensor: a cheap handle (shared_ptr) to a TensorImpl = a strided view into a
// Storage, plus autograd metadata. Copying a Tensor copies the handle, never
// the data; views (reshape, transpose, narrow, expand, ...) share storage.
//
// Autograd is define-by-run: an op whose inputs require grad records a Node
// holding its backward closure and Edges to its inputs' Nodes (or, for
// leaves, to their AutogradMeta where .grad accumulates). See
// autograd/engine.hpp for the reverse pass.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../autograd/grad_mode.hpp"
#include "dtype.hpp"
#include "shape.hpp"
#include "storage.hpp"

namespace nq {

class Tensor;
struct Node;
struct TensorImpl;

// Per-tensor autograd state. Only allocated for tensors that take part in
// autograd, so plain data tensors stay small.
struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient (leaves, retain_grad)
  std::shared_ptr<Node> grad_fn;     // the op that produced this tensor (non-leaves)
  // Leaves only: called by backward() once per pass, right after the last
  // gradient of that pass has been accumulated into .grad (never when the
  // pass does not reach the leaf). Lets data-parallel training start reducing
  // a gradient while the rest of the backward pass runs (dist/ddp.hpp).
  std::function<void()> grad_ready_hook;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  std::shared_ptr<AutogradMeta> meta;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- construction ------------------------------------------------------
  // Uninitialised contiguous tensor.
  static Tensor empty(const Shape& shape, TensorOptions opts = {}) {
    for (auto d : shape) NQ_CHECK(d >= 0, "empty", "negative size in shape ", shape_str(shape));
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(numel_of(shape) * element_size(opts.dtype), opts.device);
    impl->shape = shape;
    impl->strides = contiguous_strides(shape);
    impl->dtype = opts.dtype;
    Tensor t(std::move(impl));
    if (opts.requires_grad) t.set_requires_grad(true);
    return t;
  }
  // A view of `base`'s storage with a new geometry (no autograd).
  static Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = base.impl_->storage;
    impl->shape = std::move(shape);
    impl->strides = std::move(strides);
    impl->offset = offset;
    impl->dtype = base.dtype();
    return Tensor(std::move(impl));
  }

  // ---- geometry ----------------------------------------------------------
  bool defined() const { return static_cast<bool>(impl_); }
  const Shape& shape() const { return checked()->shape; }
  const Shape& sizes() const { return shape(); }
  const Strides& strides() const { return checked()->strides; }
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
  int64_t stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
  int64_t numel() const { return numel_of(shape()); }
  int64_t offset() const { return checked()->offset; }
  DType dtype() const { return checked()->dtype; }
  Device device() const { return checked()->storage->device(); }
  const std::shared_ptr<Storage>& storage() const { return checked()->storage; }
  bool is_contiguous() const {
    const auto& s = shape();
    const auto& st = strides();
    int64_t acc = 1;
    for (size_t i = s.size(); i-- > 0;) {
      if (s[i] != 1 && st[i] != acc) return false;
      acc *= s[i];
    }
    return true;
  }
  bool shares_storage_with(const Tensor& o) const { return storage() == o.storage(); }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // Pointer to element [0,...,0]; checks the element type.
  template <typename T>
  T* data_ptr() const {
    NQ_CHECK(dtype() == dtype_of<T>(), "data_ptr", "tensor has dtype ", dtype_name(dtype()), ", requested ",
             dtype_name(dtype_of<T>()));
    return static_cast<T*>(storage()->data()) + offset();
  }
  void* raw_data_ptr() const {
    return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(element_size(dtype()));
  }

  // ---- autograd ------------------------------------------------------------
  bool requires_grad() const { return impl_ && impl_->meta && impl_->meta->requires_grad; }
  // Marks a leaf as a parameter whose .grad should be accumulated.
  Tensor& set_requires_grad(bool on = true) {
    NQ_CHECK(!on || is_floating(dtype()), "requires_grad", "only floating tensors can require grad, got ",
             dtype_name(dtype()));
    NQ_CHECK(is_leaf() || on, "requires_grad",
             "cannot clear requires_grad on a non-leaf tensor; use detach()");
    meta().requires_grad = on;
    return *this;
  }
  Tensor& requires_grad_(bool on = true) { return set_requires_grad(on); }
  bool is_leaf() const { return !(impl_ && impl_->meta && impl_->meta->grad_fn); }
  const std::shared_ptr<Node>& grad_fn() const {
    static const std::shared_ptr<Node> none;
    return impl_ && impl_->meta ? impl_->meta->grad_fn : none;
  }
  Tensor grad() const {
    return impl_ && impl_->meta && impl_->meta->grad ? Tensor(impl_->meta->grad) : Tensor();
  }
  void set_grad(const Tensor& g) { meta().grad = g.impl_; }
  // Zeroes .grad in place (keeps views into a flat gradient buffer valid), or
  // drops it with set_to_none.
  inline void zero_grad(bool set_to_none = false);
  // Keep .grad for this non-leaf after backward (for inspection).
  inline void retain_grad();
  // Reverse pass from this tensor. Without an explicit upstream gradient the
  // tensor must be a scalar (upstream 1).
  inline void backward(bool retain_graph = false) const;
  inline void backward(const Tensor& grad_output, bool retain_graph = false) const;
  // Same storage, cut from the graph.
  Tensor detach() const {
    Tensor t = make_view(*this, shape(), strides(), offset());
    return t;
  }

  AutogradMeta& meta() {
    if (!checked()->meta) impl_->meta = std::make_shared<AutogradMeta>();
    return *impl_->meta;
  }
  const std::shared_ptr<AutogradMeta>& meta_ptr() const { return checked()->meta; }

  // ---- views (ops/view.hpp) -----------------------------------------------
  inline Tensor view(const Shape& s) const;
  inline Tensor reshape(const Shape& s) const;
  inline Tensor permute(const std::vector<int64_t>& dims) const;
  inline Tensor transpose(int64_t d0, int64_t d1) const;
  inline Tensor t() const;  // transpose of the last two dims
  inline Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  inline Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  inline Tensor select(int64_t dim, int64_t index) const;
  inline Tensor expand(const Shape& s) const;
  inline Tensor squeeze(int64_t dim) const;
  inline Tensor squeeze() const;
  inline Tensor unsqueeze(int64_t dim) const;
  inline Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  inline Tensor contiguous() const;
  inline Tensor clone() const;
  inline Tensor to(DType d) const;
  // Copy to another device (differentiable; the gradient comes back to this
  // tensor's device). Same device: returns *this.
  inline Tensor to(Device d) const;
  inline Tensor cpu() const;
  inline Tensor cuda(int index = 0) const;
  // Options matching this tensor: dtype and device (requires_grad off).
  TensorOptions options() const { return TensorOptions(dtype()).with_device(device()); }

  // ---- reductions (ops/reduce.hpp) -----------------------------------------
  inline Tensor sum() const;
  inline Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  inline Tensor mean() const;
  inline Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  inline Tensor max(int64_t dim, bool keepdim = false) const;

  // ---- element access / in-place data ops (no autograd) -------------------
  inline double item() const;
  template <typename T>
  std::vector<T> to_vector() const;
  inline Tensor& fill_(double v);
  inline Tensor& zero_();
  inline Tensor& copy_(const Tensor& src);  // broadcasts src; converts dtype
  inline Tensor& add_(const Tensor& src);   // *this += src; broadcasts src; converts dtype

  // Short text like "Tensor[2,3] float32".
  std::string brief() const {
    if (!impl_) return "Tensor(undefined)";
    return "Tensor" + shape_str(shape()) + " " + dtype_name(dtype());
  }

 private:
  TensorImpl* checked() const {
    NQ_CHECK(impl_, "Tensor", "use of an undefined tensor");
    return impl_.get();
  }
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace nq
