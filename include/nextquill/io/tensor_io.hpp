#pragma once
// Bridges nq::Tensor and safetensors: to_raw / from_raw convert between
// tensors and raw little-endian bytes (F64, F32, F16, BF16, I64), and
// save_tensors / load_tensors write and read whole named sets atomically.
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../ops/data.hpp"
#include "../ops/factory.hpp"
#include "../ops/view.hpp"
#include "safetensors.hpp"

namespace nq::io {

namespace detail {
// float -> IEEE half / bfloat16 with round-to-nearest-even; NaN stays NaN.
inline uint16_t float_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline uint16_t float_to_half(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow (>= 65520) -> inf
  if (a < 0x38800000u) {                                               // subnormal or zero in half
    // value * 2^24 rounded to nearest even gives the subnormal mantissa.
    const float v = std::bit_cast<float>(a) * 16777216.0f;
    const float r = std::nearbyint(v);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(r));
  }
  uint32_t m = a + 0xc8000fffu + ((a >> 13) & 1u);  // rebias 127 -> 15 and round
  return static_cast<uint16_t>(sign | (m >> 13));
}
}  // namespace detail

// Tensor -> raw bytes in `dtype` ("F32", "F64", "F16", "BF16"; int64 tensors
// are always written as "I64"). A tensor on the GPU is copied to the host
// first (a bf16/f16 one is widened to float32 on the device before the copy).
inline RawTensor to_raw(const Tensor& t_in, const std::string& dtype = "F32") {
  NoGradGuard ng;
  Tensor t = t_in.detach();
  if (t.device().is_cuda()) {
    if (t.dtype() == kBFloat16 || t.dtype() == kFloat16) t = t.to(kFloat32);
    t = t.cpu();
  }
  RawTensor r;
  r.shape.assign(t.shape().begin(), t.shape().end());
  const int64_t n = t.numel();
  if (t.dtype() == kInt64) {
    r.dtype = "I64";
    auto v = t.contiguous().to_vector<int64_t>();
    r.bytes.resize(n * 8);
    if (n) std::memcpy(r.bytes.data(), v.data(), r.bytes.size());
    return r;
  }
  r.dtype = dtype;
  if (dtype == "F64") {
    auto v = t.to_vector<double>();
    r.bytes.resize(n * 8);
    if (n) std::memcpy(r.bytes.data(), v.data(), r.bytes.size());
  } else if (dtype == "F32") {
    auto v = t.to_vector<float>();
    r.bytes.resize(n * 4);
    if (n) std::memcpy(r.bytes.data(), v.data(), r.bytes.size());
  } else if (dtype == "F16" || dtype == "BF16") {
    auto v = t.to_vector<float>();
    r.bytes.resize(n * 2);
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = dtype == "F16" ? detail::float_to_half(v[i]) : detail::float_to_bf16(v[i]);
      std::memcpy(r.bytes.data() + 2 * i, &h, 2);
    }
  } else {
    fail("safetensors", "to_raw: cannot write dtype '", dtype, "' (F32, F64, F16, BF16)");
  }
  return r;
}

// Raw bytes -> a new contiguous tensor. Floating data converts to `dtype`
// (float32 by default); integer data becomes int64.
inline Tensor from_raw(const RawTensor& r, DType dtype = kFloat32, const std::string& name = "tensor") {
  Shape shape(r.shape.begin(), r.shape.end());
  const bool is_int = r.dtype == "I64" || r.dtype == "I32" || r.dtype == "I16" || r.dtype == "I8" ||
                      r.dtype == "U8" || r.dtype == "BOOL";
  if (is_int) {
    auto v = as_f64(r);
    std::vector<int64_t> iv(v.size());
    if (r.dtype == "I64") {
      if (!r.bytes.empty()) std::memcpy(iv.data(), r.bytes.data(), r.bytes.size());
    } else {
      for (size_t i = 0; i < v.size(); ++i) iv[i] = static_cast<int64_t>(v[i]);
    }
    return from_vector(iv, shape, kInt64);
  }
  NQ_CHECK(r.dtype == "F64" || r.dtype == "F32" || r.dtype == "F16" || r.dtype == "BF16", "safetensors", name,
           ": unsupported dtype '", r.dtype, "'");
  if (dtype == kFloat64) return from_vector(as_f64(r), shape, kFloat64);
  return from_vector(as_f32(r), shape, dtype);
}

// Like from_raw, for model weights and optimizer state: these are always
// floating, so integer data (a wrong or hand-edited file) is an error naming
// the tensor, not a silent int64 tensor that fails later without context.
inline Tensor from_raw_weights(const RawTensor& r, DType dtype, const std::string& name) {
  NQ_CHECK(r.dtype == "F64" || r.dtype == "F32" || r.dtype == "F16" || r.dtype == "BF16", "safetensors", name,
           ": dtype '", r.dtype, "' is not a floating dtype; weights must be F32, F64, F16 or BF16");
  return from_raw(r, dtype, name);
}

// Writes named tensors (floating ones in `dtype`) plus string metadata,
// atomically (temp file + rename).
inline void save_tensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata = {},
                         const std::string& dtype = "F32") {
  SafetensorsFile f;
  f.metadata = metadata;
  for (const auto& [name, t] : tensors) {
    NQ_CHECK(!f.tensors.count(name), "safetensors", path, ": duplicate tensor name '", name, "'");
    f.tensors[name] = to_raw(t, dtype);
  }
  write_safetensors(path, f);
}

struct LoadedTensors {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;
};
inline LoadedTensors load_tensors(const std::string& path, DType dtype = kFloat32) {
  SafetensorsFile f = read_safetensors(path);
  LoadedTensors out;
  out.metadata = f.metadata;
  for (const auto& [name, r] : f.tensors) out.tensors[name] = from_raw(r, dtype, path + ": '" + name + "'");
  return out;
}

}  // namespace nq::io
