#pragma once
// Storage: one reference-counted, 64-byte aligned buffer. Tensors are views
// (shape, strides, offset) into a Storage, so reshape/transpose/slice share it.
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "../cuda/runtime.hpp"
#include "dtype.hpp"

namespace nq {

// CPU memory for tensors: 64-byte aligned blocks, with freed large blocks
// kept for reuse. Why: glibc hands blocks of 32 MiB and more back to the OS
// on free and maps fresh pages on the next malloc, so a training step that
// allocates the same big activations every iteration pays page faults on
// every first touch (measured: ~12 ms per 32 MiB GEMM output, a third of the
// GEMM). Reuse is by exact size, which is what a loop over fixed shapes needs.
class CpuAllocator {
 public:
  static constexpr size_t kMinCached = size_t(1) << 20;  // smaller blocks: malloc is fast enough

  static CpuAllocator& instance() {
    static auto* a = new CpuAllocator();  // never destroyed: tensors may outlive statics
    return *a;
  }

  void* allocate(size_t nbytes) {
    const size_t n = round(nbytes);
    if (n == 0) return nullptr;
    if (n >= kMinCached) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(n);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_ -= n;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, n);
    if (!p) {
      empty_cache();  // give the cache back and try once more
      p = std::aligned_alloc(64, n);
    }
    if (!p) throw std::bad_alloc();
    return p;
  }

  void release(void* p, size_t nbytes) {
    if (!p) return;
    const size_t n = round(nbytes);
    if (n >= kMinCached) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + n <= limit_) {
        free_.emplace(n, p);
        cached_ += n;
        return;
      }
    }
    std::free(p);
  }

  // Frees every cached block.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    cached_ = 0;
  }
  size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }
  // Upper bound on cached bytes (default 1 GiB, or NQ_CPU_CACHE_MB); 0 disables caching.
  void set_cache_limit(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      limit_ = bytes;
    }
    if (cached_bytes() > bytes) empty_cache();
  }

 private:
  CpuAllocator() {
    if (const char* env = std::getenv("NQ_CPU_CACHE_MB")) {
      char* end = nullptr;
      unsigned long long mb = std::strtoull(env, &end, 10);
      NQ_CHECK(*env != '\0' && *end == '\0', "CpuAllocator", "environment variable NQ_CPU_CACHE_MB='", env,
               "' is not a whole number of MiB");
      limit_ = static_cast<size_t>(mb) << 20;
    }
  }
  static size_t round(size_t n) { return (n + 63) / 64 * 64; }

  mutable std::mutex mu_;
  std::unordered_multimap<size_t, void*> free_;
  size_t cached_ = 0;
  size_t limit_ = size_t(1) << 30;
};

class Storage {
 public:
  // Allocates `nbytes` on `device`: CPU memory from CpuAllocator, CUDA memory
  // from the caching device allocator (cuda/runtime.hpp).
  Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (device.is_cpu()) {
      data_ = CpuAllocator::instance().allocate(nbytes);
    } else {
      NQ_CHECK(device.index >= 0 && device.index < cuda::device_count(), "Storage", "device ", device.str(),
               " is not available (", cuda::device_count(), " CUDA device(s) visible",
               NEXTQUILL_WITH_CUDA ? ")" : "; nextquill was built without CUDA)");
      data_ = cuda::device_alloc(nbytes, device.index);
    }
  }
  // Wraps memory owned elsewhere (no copy); `keep_alive` is released with us.
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive)
      : data_(data), nbytes_(nbytes), device_(device), owner_(std::move(keep_alive)), owns_(false) {}
  ~Storage() {
    if (!owns_) return;
    if (device_.is_cpu())
      CpuAllocator::instance().release(data_, nbytes_);
    else
      cuda::device_free(data_, nbytes_, device_.index);
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
