#pragma once
// Element types and devices. The enums already list the types and devices
// later backends add (bf16/fp16, CUDA) so that code switching on them is
// written once; CPU kernels dispatch on Float32/Float64 and reject the rest
// with a clear error.
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <type_traits>

#include "error.hpp"

namespace nq {

enum class DType : uint8_t { Float32, Float64, BFloat16, Float16, Int64 };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kBFloat16 = DType::BFloat16;
inline constexpr DType kFloat16 = DType::Float16;
inline constexpr DType kInt64 = DType::Int64;

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32:
      return "float32";
    case DType::Float64:
      return "float64";
    case DType::BFloat16:
      return "bfloat16";
    case DType::Float16:
      return "float16";
    case DType::Int64:
      return "int64";
  }
  return "?";
}

inline size_t element_size(DType d) {
  switch (d) {
    case DType::Float32:
      return 4;
    case DType::Float64:
      return 8;
    case DType::BFloat16:
    case DType::Float16:
      return 2;
    case DType::Int64:
      return 8;
  }
  return 0;
}

inline bool is_floating(DType d) { return d != DType::Int64; }

inline std::ostream& operator<<(std::ostream& os, DType d) { return os << dtype_name(d); }

// Host-side bfloat16 storage (the top 16 bits of a float32, round to nearest
// even). The CPU backend only moves and converts it (copy_, fill_,
// to_vector, device transfers); CPU kernels still reject it.
struct bfloat16 {
  uint16_t bits = 0;
  bfloat16() = default;
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  explicit bfloat16(T v) : bits(from_float(static_cast<float>(v))) {}
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  explicit operator T() const {
    return static_cast<T>(to_float());
  }
  float to_float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
};
static_assert(sizeof(bfloat16) == 2, "bfloat16 must be 2 bytes");

// C++ type -> DType.
template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::Float32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::Float64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return DType::Int64;
  else if constexpr (std::is_same_v<T, bfloat16>)
    return DType::BFloat16;
  else
    static_assert(sizeof(T) == 0, "nq: unsupported element type");
}

template <typename T>
struct type_tag {
  using type = T;
};

// Calls f(type_tag<T>{}) with T = float or double for a float dtype:
//   visit_float(x.dtype(), "exp", [&](auto tag) { using T = typename decltype(tag)::type; ... });
template <typename F>
decltype(auto) visit_float(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::Float32:
      return f(type_tag<float>{});
    case DType::Float64:
      return f(type_tag<double>{});
    default:
      break;
  }
  fail(op, "dtype ", dtype_name(d), " is not supported on CPU (float32/float64 only)");
}

// ---- devices ---------------------------------------------------------------
enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const {
    return type == DeviceType::CPU ? std::string("cpu") : "cuda:" + std::to_string(index);
  }
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

// What a factory builds: dtype, device, requires_grad. Implicit from a DType
// so that `nq::zeros({2, 3}, nq::kFloat64)` reads naturally.
struct TensorOptions {
  DType dtype = DType::Float32;
  Device device = Device::cpu();
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}  // NOLINT(implicit)
  TensorOptions with_dtype(DType d) const {
    auto o = *this;
    o.dtype = d;
    return o;
  }
  TensorOptions with_device(Device d) const {
    auto o = *this;
    o.device = d;
    return o;
  }
  TensorOptions with_requires_grad(bool r = true) const {
    auto o = *this;
    o.requires_grad = r;
    return o;
  }
};

}  // namespace nq
