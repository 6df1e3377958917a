// Fuzzes the safetensors reader on a byte buffer (parse_safetensors) and the
// conversions of whatever parses: as_f32/as_f64, the F16/BF16 <-> float
// helpers, from_raw (bytes -> Tensor) and to_raw (Tensor -> bytes).
// nq::Error from the reader is the expected way to reject an input. A parsed
// file must also serialize and parse back to the same tensors, and every
// conversion must round-trip bit for bit (NaN payloads excepted).
#include <cmath>
#include <cstring>
#include <nextquill/nextquill.hpp>  // tensor_io.hpp needs the ops it declares

#include "fuzz_common.hpp"

namespace {

using nq::io::RawTensor;

bool same_file(const nq::io::SafetensorsFile& a, const nq::io::SafetensorsFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [name, t] : a.tensors) {
    auto it = b.tensors.find(name);
    if (it == b.tensors.end()) return false;
    const RawTensor& u = it->second;
    if (t.dtype != u.dtype || t.shape != u.shape || t.bytes != u.bytes) return false;
  }
  return true;
}

uint16_t u16_at(const RawTensor& t, size_t i) {
  uint16_t v;
  std::memcpy(&v, t.bytes.data() + 2 * i, 2);
  return v;
}

// Equal, or both NaN (a NaN's payload need not survive a conversion).
bool same_value(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

void check_conversions(const std::string& name, const RawTensor& t) {
  const std::string& d = t.dtype;
  const size_t esize = nq::io::dtype_size(d);
  const size_t n = t.bytes.size() / esize;
  const bool is_float = d == "F64" || d == "F32" || d == "F16" || d == "BF16";
  const bool is_int = d == "I64" || d == "I32" || d == "I16" || d == "I8" || d == "U8" || d == "BOOL";
  std::vector<double> f64;
  std::vector<float> f32;
  try {
    f64 = nq::io::as_f64(t);
    f32 = nq::io::as_f32(t);
  } catch (const nq::Error&) {
    NQ_FUZZ_CHECK(!is_float && !is_int, "as_f64/as_f32 rejected a supported dtype " + d + " of " + name);
    return;
  }
  NQ_FUZZ_CHECK(is_float || is_int, "as_f64 accepted dtype " + d);
  NQ_FUZZ_CHECK(f64.size() == n && f32.size() == n, name);
  if (d != "F64" && d != "I64" && d != "I32") {  // exact in float: as_f32 and as_f64 agree
    for (size_t i = 0; i < n; ++i) NQ_FUZZ_CHECK(same_value(f32[i], f64[i]), name);
  }

  // The 16-bit formats: widening then narrowing gives back the same bits.
  if (d == "F16" || d == "BF16") {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = u16_at(t, i);
      const float f = d == "F16" ? nq::io::detail::half_to_float(h) : std::bit_cast<float>(uint32_t(h) << 16);
      NQ_FUZZ_CHECK(same_value(f, f32[i]), name);
      const uint16_t back = d == "F16" ? nq::io::detail::float_to_half(f) : nq::io::detail::float_to_bf16(f);
      if (std::isnan(f))
        NQ_FUZZ_CHECK(std::isnan(d == "F16" ? nq::io::detail::half_to_float(back)
                                            : std::bit_cast<float>(uint32_t(back) << 16)),
                      name);
      else
        NQ_FUZZ_CHECK(back == h, name + ": " + d + " bits " + std::to_string(h) + " came back as " +
                                     std::to_string(back));
    }
  }

  // bytes -> Tensor -> bytes.
  const nq::DType target = d == "F64" ? nq::kFloat64 : nq::kFloat32;
  const nq::Tensor x = nq::io::from_raw(t, target, name);
  NQ_FUZZ_CHECK(x.numel() == int64_t(n), name);
  NQ_FUZZ_CHECK(size_t(x.dim()) == t.shape.size(), name);
  if (is_int) {
    NQ_FUZZ_CHECK(x.dtype() == nq::kInt64, name);
    const RawTensor r = nq::io::to_raw(x);
    NQ_FUZZ_CHECK(r.dtype == "I64" && r.shape == t.shape, name);
    const std::vector<double> v = nq::io::as_f64(r);
    if (d == "I64")
      NQ_FUZZ_CHECK(r.bytes == t.bytes, name);
    else
      for (size_t i = 0; i < n; ++i) NQ_FUZZ_CHECK(v[i] == f64[i], name);
    return;
  }
  const RawTensor r = nq::io::to_raw(x, d);
  NQ_FUZZ_CHECK(r.dtype == d && r.shape == t.shape && r.bytes.size() == t.bytes.size(), name);
  const std::vector<double> back = nq::io::as_f64(r);
  for (size_t i = 0; i < n; ++i)
    NQ_FUZZ_CHECK(same_value(back[i], f64[i]), name + ": element " + std::to_string(i) + " of " + d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nq::io::SafetensorsFile f;
  try {
    f = nq::io::parse_safetensors(data, size, "fuzz.safetensors");
  } catch (const nq::Error&) {
    return 0;
  }
  // What the reader promises about a file it accepts.
  NQ_FUZZ_CHECK(f.order.size() == f.tensors.size(), "order lists every tensor once");
  for (const std::string& name : f.order) {
    const RawTensor& t = f.tensors.at(name);
    uint64_t want = nq::io::dtype_size(t.dtype);
    NQ_FUZZ_CHECK(want > 0, "known dtype");
    for (int64_t dim : t.shape) {
      NQ_FUZZ_CHECK(dim >= 0, name);
      want *= uint64_t(dim);
    }
    NQ_FUZZ_CHECK(want == t.bytes.size(), name + ": byte count matches shape and dtype");
  }

  // The writer accepts what the reader accepted, and reading it back gives the same file.
  std::vector<uint8_t> bytes;
  try {
    bytes = nq::io::serialize_safetensors(f);
  } catch (const nq::Error& e) {
    NQ_FUZZ_CHECK(false, std::string("serialize rejected a parsed file: ") + e.what());
  }
  const nq::io::SafetensorsFile g = nq::io::parse_safetensors(bytes.data(), bytes.size(), "round trip");
  NQ_FUZZ_CHECK(same_file(f, g), "serialize + parse changed the file");

  for (const std::string& name : f.order) check_conversions(name, f.tensors.at(name));
  return 0;
}
