// CUDA runtime services (include/nextquill/cuda/runtime.hpp): device
// discovery, the caching allocator, the per-device stream, copies.
//
// Allocator: blocks are rounded (512 B below 1 MiB, 2 MiB multiples above)
// and kept on free lists keyed by their rounded size. Every nextquill kernel
// and copy runs on the one stream of its device, so work already queued that
// reads a freed block runs before any later work that writes the block's new
// owner: a freed block can be handed out again at once. The state is a leaked
// singleton and freeing never calls CUDA, so tensors destroyed at program exit
// (after the CUDA runtime has unloaded) cannot crash.
#include <cuda_runtime.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "common.cuh"

namespace nq::cuda {

namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;  // below: round to 512 B
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;  // 2 MiB

size_t round_size(size_t n) {
  if (n < kSmallLimit) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct DeviceState {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // rounded size -> blocks
  size_t allocated = 0, cached = 0, peak = 0;
  std::once_flag stream_once;
  cudaStream_t stream = nullptr;
};

// Sets the current device for a scope and restores it (no-op when equal).
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&prev) != cudaSuccess) {
      cudaGetLastError();
      prev = -1;
    }
    if (prev != device) NQ_CUDA_CHECK(cudaSetDevice(device), "cuda::set_device");
  }
  ~DeviceGuard() {
    int now = -1;
    if (prev >= 0 && cudaGetDevice(&now) == cudaSuccess && now != prev) cudaSetDevice(prev);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
};

DeviceState& state(int device, const char* op) {
  const int n = device_count();
  NQ_CHECK(device >= 0 && device < n, op, "device cuda:", device, " is not available (", n,
           " CUDA device(s) visible)");
  static auto* states = new std::vector<DeviceState>(static_cast<size_t>(n));  // leaked on purpose
  return (*states)[static_cast<size_t>(device)];
}

void free_cached_locked(DeviceState& s, int device) {
  if (s.free_blocks.empty()) return;
  DeviceGuard g(device);
  // Blocks may still be read by queued work: wait before returning memory.
  if (s.stream) cudaStreamSynchronize(s.stream);
  for (auto& kv : s.free_blocks)
    for (void* p : kv.second) cudaFree(p);
  s.free_blocks.clear();
  s.cached = 0;
}

std::string gib(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

}  // namespace

int device_count() {
  static const int count = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {  // no driver, no device, ...: CUDA is just absent
      cudaGetLastError();    // clear the error so later calls do not see it
      return 0;
    }
    return n;
  }();
  return count;
}

std::string device_name(int device) {
  state(device, "cuda::device_name");
  cudaDeviceProp p{};
  NQ_CUDA_CHECK(cudaGetDeviceProperties(&p, device), "cuda::device_name");
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor,
                p.multiProcessorCount, static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

void* device_alloc(size_t nbytes, int device) {
  if (nbytes == 0) return nullptr;
  DeviceState& s = state(device, "cuda::device_alloc");
  const size_t n = round_size(nbytes);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.free_blocks.find(n);
  void* p = nullptr;
  if (it != s.free_blocks.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    s.cached -= n;
  } else {
    DeviceGuard g(device);
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      free_cached_locked(s, device);  // give the cache back, then try once more
      e = cudaMalloc(&p, n);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail("cuda::device_alloc", "cannot allocate ", nbytes, " bytes (", gib(n), ") on cuda:", device, ": ",
           cudaGetErrorName(e), " (", gib(s.allocated), " in use by tensors, ", gib(s.cached), " cached)");
    }
  }
  s.allocated += n;
  if (s.allocated > s.peak) s.peak = s.allocated;
  return p;
}

void device_free(void* p, size_t nbytes, int device) {
  if (!p) return;
  if (device < 0 || device >= device_count()) return;
  DeviceState& s = state(device, "cuda::device_free");
  const size_t n = round_size(nbytes);
  std::lock_guard<std::mutex> lock(s.mu);
  s.free_blocks[n].push_back(p);  // never calls CUDA: safe during program exit
  s.cached += n;
  s.allocated -= n <= s.allocated ? n : s.allocated;
}

void empty_cache() {
  for (int d = 0; d < device_count(); ++d) {
    DeviceState& s = state(d, "cuda::empty_cache");
    std::lock_guard<std::mutex> lock(s.mu);
    free_cached_locked(s, d);
  }
}

size_t allocated_bytes(int device) {
  DeviceState& s = state(device, "cuda::allocated_bytes");
  std::lock_guard<std::mutex> lock(s.mu);
  return s.allocated;
}
size_t cached_bytes(int device) {
  DeviceState& s = state(device, "cuda::cached_bytes");
  std::lock_guard<std::mutex> lock(s.mu);
  return s.cached;
}
size_t peak_allocated_bytes(int device) {
  DeviceState& s = state(device, "cuda::peak_allocated_bytes");
  std::lock_guard<std::mutex> lock(s.mu);
  return s.peak;
}
void reset_peak(int device) {
  DeviceState& s = state(device, "cuda::reset_peak");
  std::lock_guard<std::mutex> lock(s.mu);
  s.peak = s.allocated;
}

void* stream(int device) {
  DeviceState& s = state(device, "cuda::stream");
  std::call_once(s.stream_once, [&] {
    DeviceGuard g(device);
    NQ_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cuda::stream");
  });
  NQ_CHECK(s.stream, "cuda::stream", "stream creation for cuda:", device, " failed earlier");
  return s.stream;
}

void copy_h2d(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  auto st = static_cast<cudaStream_t>(stream(device));
  DeviceGuard g(device);
  NQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, st), "cuda::copy_h2d");
  // From pageable memory the call returns once the source has been staged, so
  // the caller may reuse it. From page-locked memory it may return at once:
  // wait then, since the caller owns that memory.
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, src) != cudaSuccess) {
    cudaGetLastError();
  } else if (attr.type == cudaMemoryTypeHost) {
    NQ_CUDA_CHECK(cudaStreamSynchronize(st), "cuda::copy_h2d");
  }
}

void copy_d2h(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  auto st = static_cast<cudaStream_t>(stream(device));
  DeviceGuard g(device);
  NQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, st), "cuda::copy_d2h");
  NQ_CUDA_CHECK(cudaStreamSynchronize(st), "cuda::copy_d2h");
}

void copy_d2d(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  auto st = static_cast<cudaStream_t>(stream(device));
  NQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, st), "cuda::copy_d2d");
}

void synchronize(int device) {
  auto st = static_cast<cudaStream_t>(stream(device));
  NQ_CUDA_CHECK(cudaStreamSynchronize(st), "cuda::synchronize");
  NQ_CUDA_CHECK(cudaGetLastError(), "cuda::synchronize");
}

int current_device() {
  int d = 0;
  if (device_count() == 0) return 0;
  NQ_CUDA_CHECK(cudaGetDevice(&d), "cuda::current_device");
  return d;
}

void set_device(int device) {
  state(device, "cuda::set_device");
  NQ_CUDA_CHECK(cudaSetDevice(device), "cuda::set_device");
}

}  // namespace nq::cuda
