#pragma once
// Storage: one reference-counted, 64-byte aligned buffer. Tensors are views
// (shape, strides, offset) into a Storage, so reshape/transpose/slice share it.
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "dtype.hpp"

namespace nq {

class Storage {
 public:
  // Allocates `nbytes` on `device` (CPU only here; the CUDA backend adds its
  // caching allocator behind the same interface).
  Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    NQ_CHECK(device.is_cpu(), "Storage", "device ", device.str(),
             " is not available in this build (CPU only)");
    size_t rounded = ((nbytes + 63) / 64) * 64;
    data_ = rounded ? std::aligned_alloc(64, rounded) : nullptr;
    if (rounded && !data_) throw std::bad_alloc();
  }
  // Wraps memory owned elsewhere (no copy); `keep_alive` is released with us.
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive)
      : data_(data), nbytes_(nbytes), device_(device), owner_(std::move(keep_alive)), owns_(false) {}
  ~Storage() {
    if (owns_) std::free(data_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::shared_ptr<void> owner_;
  bool owns_ = true;
};

}  // namespace nq
