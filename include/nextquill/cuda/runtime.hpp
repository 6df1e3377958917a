#pragma once
// CUDA runtime services behind the tensor library: device discovery, the
// caching device allocator, host<->device copies and the one stream every
// nextquill kernel runs on. Implemented in kernels/runtime.cu (library target
// nextquill::cuda). Without NEXTQUILL_WITH_CUDA the same functions exist as
// inline stubs: device_count() is 0 and anything that would touch a device
// throws a clear nq::Error, so CPU-only code never needs an #if.
#include <cstddef>
#include <cstdint>
#include <string>

#include "../config.hpp"
#include "../core/error.hpp"

namespace nq::cuda {

// Number of usable CUDA devices: 0 when the build has no CUDA, when no driver
// is installed, or when no GPU is visible. Never throws.
int device_count();
inline bool is_available() { return device_count() > 0; }
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)"; throws when absent.
std::string device_name(int device = 0);

// Caching allocator. Blocks are stream-ordered on stream(device), so a freed
// block can be handed out again at once without synchronising. nbytes == 0
// gives nullptr. Out of memory: empties the cache, retries, then throws an
// nq::Error naming the request and the bytes in use.
void* device_alloc(size_t nbytes, int device);
void device_free(void* p, size_t nbytes, int device);
void empty_cache();                 // frees every cached block (all devices)
size_t allocated_bytes(int device);  // in live tensors
size_t cached_bytes(int device);     // held in the cache
size_t peak_allocated_bytes(int device);
void reset_peak(int device);

// Copies on stream(device). Device-to-host waits for the stream so the host
// data is ready on return; host-to-device may return before the copy ends
// only when the source is the allocator's own pinned staging (never user
// memory).
void copy_h2d(void* dst, const void* src, size_t nbytes, int device);
void copy_d2h(void* dst, const void* src, size_t nbytes, int device);
void copy_d2d(void* dst, const void* src, size_t nbytes, int device);

// The stream nextquill's kernels run on (a cudaStream_t, typed void* so this
// header needs no CUDA headers). One per device; created on first use.
void* stream(int device);
void synchronize(int device);  // waits for stream(device); throws on a pending kernel error
int current_device();
void set_device(int device);

}  // namespace nq::cuda

#if !NEXTQUILL_WITH_CUDA
namespace nq::cuda {
[[noreturn]] inline void no_cuda(const char* what) {
  fail(what, "nextquill was built without CUDA (configure with -DNEXTQUILL_WITH_CUDA=ON)");
}
inline int device_count() { return 0; }
inline std::string device_name(int) { no_cuda("cuda::device_name"); }
inline void* device_alloc(size_t, int) { no_cuda("cuda::device_alloc"); }
inline void device_free(void*, size_t, int) {}
inline void empty_cache() {}
inline size_t allocated_bytes(int) { return 0; }
inline size_t cached_bytes(int) { return 0; }
inline size_t peak_allocated_bytes(int) { return 0; }
inline void reset_peak(int) {}
inline void copy_h2d(void*, const void*, size_t, int) { no_cuda("cuda::copy_h2d"); }
inline void copy_d2h(void*, const void*, size_t, int) { no_cuda("cuda::copy_d2h"); }
inline void copy_d2d(void*, const void*, size_t, int) { no_cuda("cuda::copy_d2d"); }
inline void* stream(int) { no_cuda("cuda::stream"); }
inline void synchronize(int) {}
inline int current_device() { return 0; }
inline void set_device(int) { no_cuda("cuda::set_device"); }
}  // namespace nq::cuda
#endif
