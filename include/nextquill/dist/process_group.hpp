#pragma once
// ProcessGroup: the collectives data-parallel training needs (in-place sum
// all-reduce, broadcast, barrier) behind one abstract interface, so training
// code is written once and runs on one process (LocalProcessGroup, a no-op)
// or on many (MPIProcessGroup in dist/mpi.hpp, compiled only with MPI).
//
// Buffers are raw CPU pointers with an element count (float, double or
// int64); the Tensor overloads take contiguous CPU tensors. The non-blocking
// all-reduce returns a Work to test or wait on; the buffer must stay alive and
// untouched until it completes. Backends that cannot overlap run the
// collective at once and return finished Work.
//
// As with any collective library, every rank must issue the same collectives
// in the same order with matching sizes.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace nq::dist {

// A collective in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Non-blocking: true once complete. Also lets the backend make progress,
  // so calling it now and then during other work keeps the transfer moving.
  virtual bool test() = 0;
  // Blocks until complete.
  virtual void wait() = 0;
};

// Work that was finished when it was created.
class CompletedWork final : public Work {
 public:
  bool test() override { return true; }
  void wait() override {}
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  ProcessGroup() = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi"

  // ---- all-reduce (sum, in place): every rank ends with the element-wise total
  void all_reduce_sum(float* data, int64_t n) { all_reduce(data, n, kFloat32, "all_reduce_sum"); }
  void all_reduce_sum(double* data, int64_t n) { all_reduce(data, n, kFloat64, "all_reduce_sum"); }
  void all_reduce_sum(int64_t* data, int64_t n) { all_reduce(data, n, kInt64, "all_reduce_sum"); }
  void all_reduce_sum(const Tensor& t) {
    check_tensor(t, "all_reduce_sum");
    all_reduce(t.raw_data_ptr(), t.numel(), t.dtype(), "all_reduce_sum");
  }
  // One value summed over the ranks (e.g. a loss or a token count).
  double all_reduce_sum(double value) {
    all_reduce(&value, 1, kFloat64, "all_reduce_sum");
    return value;
  }

  // Non-blocking versions: `data` must not be read or written until the
  // returned Work completes.
  [[nodiscard]] std::unique_ptr<Work> all_reduce_sum_async(float* data, int64_t n) {
    return all_reduce_async(data, n, kFloat32, "all_reduce_sum_async");
  }
  [[nodiscard]] std::unique_ptr<Work> all_reduce_sum_async(double* data, int64_t n) {
    return all_reduce_async(data, n, kFloat64, "all_reduce_sum_async");
  }
  [[nodiscard]] std::unique_ptr<Work> all_reduce_sum_async(const Tensor& t) {
    check_tensor(t, "all_reduce_sum_async");
    return all_reduce_async(t.raw_data_ptr(), t.numel(), t.dtype(), "all_reduce_sum_async");
  }

  // ---- broadcast: root's bytes overwrite every other rank's buffer
  void broadcast(void* data, int64_t bytes, int root) {
    NQ_CHECK(bytes >= 0, "ProcessGroup.broadcast", "negative size ", bytes);
    NQ_CHECK(data || bytes == 0, "ProcessGroup.broadcast", "null buffer of ", bytes, " bytes");
    check_root(root, "ProcessGroup.broadcast");
    if (world_size() > 1 && bytes > 0) do_broadcast(data, bytes, root);
  }
  // Any dtype: the bytes are copied as they are.
  void broadcast(const Tensor& t, int root) {
    check_tensor(t, "broadcast", /*any_dtype=*/true);
    broadcast(t.raw_data_ptr(), t.numel() * int64_t(element_size(t.dtype())), root);
  }
  // A trivially copyable value from root (e.g. a seed or a size).
  template <typename T>
  T broadcast_value(T value, int root) {
    static_assert(std::is_trivially_copyable_v<T>, "broadcast_value needs a trivially copyable type");
    broadcast(&value, int64_t(sizeof(T)), root);
    return value;
  }

  // ---- barrier: returns once every rank has entered it
  void barrier() {
    if (world_size() > 1) do_barrier();
  }

 protected:
  // Backends implement these; arguments are validated, world_size() > 1 and
  // n > 0. dtype is kFloat32, kFloat64 or kInt64.
  virtual void do_all_reduce_sum(void* data, int64_t n, DType dtype) = 0;
  virtual std::unique_ptr<Work> do_all_reduce_sum_async(void* data, int64_t n, DType dtype) {
    do_all_reduce_sum(data, n, dtype);
    return std::make_unique<CompletedWork>();
  }
  virtual void do_broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void do_barrier() = 0;

 private:
  void all_reduce(void* data, int64_t n, DType dt, const char* what) {
    check_buffer(data, n, what);
    if (world_size() > 1 && n > 0) do_all_reduce_sum(data, n, dt);
  }
  std::unique_ptr<Work> all_reduce_async(void* data, int64_t n, DType dt, const char* what) {
    check_buffer(data, n, what);
    if (world_size() > 1 && n > 0) return do_all_reduce_sum_async(data, n, dt);
    return std::make_unique<CompletedWork>();
  }
  static void check_buffer(const void* data, int64_t n, const char* what) {
    NQ_CHECK(n >= 0, "ProcessGroup", what, ": negative element count ", n);
    NQ_CHECK(data || n == 0, "ProcessGroup", what, ": null buffer of ", n, " elements");
  }
  static void check_tensor(const Tensor& t, const char* what, bool any_dtype = false) {
    NQ_CHECK(t.defined(), "ProcessGroup", what, ": undefined tensor");
    NQ_CHECK(t.device().is_cpu(), "ProcessGroup", what, ": tensor ", t.brief(), " is on ", t.device(),
             " (CPU tensors only)");
    NQ_CHECK(t.is_contiguous(), "ProcessGroup", what, ": tensor ", t.brief(), " is not contiguous");
    NQ_CHECK(any_dtype || t.dtype() == kFloat32 || t.dtype() == kFloat64 || t.dtype() == kInt64,
             "ProcessGroup", what, ": dtype ", dtype_name(t.dtype()),
             " is not supported (float32, float64, int64)");
  }
  void check_root(int root, const char* op) const {
    NQ_CHECK(root >= 0 && root < world_size(), op, "root ", root, " is not a rank of this group (world size ",
             world_size(), ")");
  }
};

// One process, no communication: rank 0 of 1. Every collective is a no-op,
// so code written against ProcessGroup runs unchanged (and bit-identically)
// without MPI.
class LocalProcessGroup final : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "local"; }

 protected:
  // Never called: the base class skips collectives when world_size() == 1.
  void do_all_reduce_sum(void*, int64_t, DType) override {}
  void do_broadcast(void*, int64_t, int) override {}
  void do_barrier() override {}
};

}  // namespace nq::dist
