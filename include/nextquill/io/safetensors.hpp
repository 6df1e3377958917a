#pragma once
// Safetensors reader/writer (https://github.com/huggingface/safetensors).
// Layout: u64 little-endian header length N, N bytes of JSON header, data.
// Header: {"__metadata__": {str: str}?, name: {"dtype", "shape",
// "data_offsets": [begin, end]}...}; offsets are relative to the data region,
// which entries must cover exactly (no gaps, no overlaps, no trailing bytes).
// Everything malformed throws nq::Error("nq::safetensors: <file>: ...").
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "atomic_file.hpp"
#include "nextquill/core/error.hpp"

namespace nq::io {

// Raw bytes are reinterpreted in place, so only little-endian hosts work.
static_assert(std::endian::native == std::endian::little, "nq::io::safetensors assumes a little-endian host");

struct RawTensor {
  std::string dtype;           // "F64", "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;  // [] is a scalar
  std::vector<uint8_t> bytes;  // little-endian, row-major
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, RawTensor> tensors;
  // Read: tensor names in data-offset (file layout) order. Write: ignored,
  // tensors are laid out sorted by name so output is reproducible.
  std::vector<std::string> order;
};

// Element size in bytes, or 0 for an unknown dtype.
inline size_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

namespace detail {

using ojson = nlohmann::ordered_json;  // keeps header order for messages
constexpr uint64_t kMaxHeader = 100ull << 20;

struct Entry {
  std::string name;
  RawTensor info;  // bytes left empty
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::vector<Entry> entries;  // sorted by data offset
};

inline uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Validates the 8-byte prefix against the file size; returns N.
inline uint64_t check_prefix(const uint8_t* p, uint64_t size, const std::string& file) {
  if (size < 8) fail("safetensors", file, ": file too short (", size, " bytes, need at least 8)");
  uint64_t n = read_le64(p);
  if (n > kMaxHeader) fail("safetensors", file, ": header length ", n, " exceeds the 100 MB limit");
  if (n > size - 8)
    fail("safetensors", file, ": header length ", n, " runs past the end of the file (", size, " bytes)");
  return n;
}

// Reads a JSON integer into [0, INT64_MAX]; `what` names it in errors.
inline uint64_t nonneg_int(const ojson& v, const std::string& file, const std::string& what) {
  if (!v.is_number_integer()) fail("safetensors", file, ": ", what, " must be an integer, got ", v.dump());
  if (!v.is_number_unsigned()) fail("safetensors", file, ": ", what, " is negative (", v.dump(), ")");
  uint64_t x = v.get<uint64_t>();
  if (x > uint64_t(std::numeric_limits<int64_t>::max()))
    fail("safetensors", file, ": ", what, " is too large (", x, ")");
  return x;
}

inline Entry parse_entry(const std::string& name, const ojson& v, uint64_t data_size,
                         const std::string& file) {
  const std::string t = "tensor '" + name + "'";
  if (name.empty()) fail("safetensors", file, ": empty tensor name");
  if (!v.is_object()) fail("safetensors", file, ": ", t, ": entry must be an object, got ", v.type_name());
  for (auto& [key, _] : v.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      fail("safetensors", file, ": ", t, ": unexpected field '", key, "'");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) fail("safetensors", file, ": ", t, ": missing field '", key, "'");
  Entry e;
  e.name = name;
  const ojson& dt = v["dtype"];
  if (!dt.is_string()) fail("safetensors", file, ": ", t, ": 'dtype' must be a string");
  e.info.dtype = dt.get<std::string>();
  const uint64_t esize = dtype_size(e.info.dtype);
  if (esize == 0) fail("safetensors", file, ": ", t, ": unknown dtype '", e.info.dtype, "'");
  const ojson& sh = v["shape"];
  if (!sh.is_array()) fail("safetensors", file, ": ", t, ": 'shape' must be an array");
  // The product of the nonzero dimensions must fit int64 even when a 0
  // dimension makes the tensor empty: tensors form those products (element
  // counts, strides) whatever the order of the dimensions.
  uint64_t count = 1;  // of the nonzero dimensions
  bool overflow = false, zero = false;
  for (size_t i = 0; i < sh.size(); ++i) {
    uint64_t d = nonneg_int(sh[i], file, t + ": shape[" + std::to_string(i) + "]");
    e.info.shape.push_back(int64_t(d));
    if (d == 0)
      zero = true;
    else if (count > uint64_t(std::numeric_limits<int64_t>::max()) / d)
      overflow = true;
    else
      count *= d;
  }
  if (overflow || count > std::numeric_limits<uint64_t>::max() / esize)
    fail("safetensors", file, ": ", t, ": shape ", sh.dump(), " overflows the element or byte count");
  const uint64_t nbytes = zero ? 0 : count * esize;
  const ojson& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    fail("safetensors", file, ": ", t, ": 'data_offsets' must be an array of 2 integers");
  e.begin = nonneg_int(off[0], file, t + ": data_offsets[0]");
  e.end = nonneg_int(off[1], file, t + ": data_offsets[1]");
  if (e.begin > e.end) fail("safetensors", file, ": ", t, ": data_offsets ", off.dump(), " are reversed");
  if (e.end > data_size)
    fail("safetensors", file, ": ", t, ": data_offsets ", off.dump(), " out of range (data region is ",
         data_size, " bytes)");
  if (e.end - e.begin != nbytes)
    fail("safetensors", file, ": ", t, ": data_offsets ", off.dump(), " span ", e.end - e.begin,
         " bytes but shape ", sh.dump(), " of ", e.info.dtype, " needs ", nbytes);
  return e;
}

inline Header parse_header(const uint8_t* p, uint64_t n, uint64_t data_size, const std::string& file) {
  // The callback rejects duplicate keys, which plain parsing silently merges.
  std::vector<std::set<std::string>> seen;
  std::string dup;
  ojson::parser_callback_t cb = [&](int, ojson::parse_event_t ev, ojson& parsed) {
    if (ev == ojson::parse_event_t::object_start)
      seen.emplace_back();
    else if (ev == ojson::parse_event_t::object_end)
      seen.pop_back();
    else if (ev == ojson::parse_event_t::key && !seen.back().insert(parsed.get<std::string>()).second &&
             dup.empty())
      dup = parsed.get<std::string>();
    return true;
  };
  ojson j;
  try {
    j = ojson::parse(p, p + n, cb);
  } catch (const nlohmann::json::exception& ex) {
    fail("safetensors", file, ": header is not valid JSON (", ex.what(), ")");
  }
  if (!j.is_object()) fail("safetensors", file, ": header must be a JSON object, got ", j.type_name());
  if (!dup.empty()) fail("safetensors", file, ": duplicate key '", dup, "' in header");
  Header h;
  for (auto& [key, v] : j.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) fail("safetensors", file, ": __metadata__ must be an object, got ", v.type_name());
      for (auto& [mk, mv] : v.items()) {
        if (!mv.is_string())
          fail("safetensors", file, ": __metadata__ value for '", mk, "' must be a string, got ",
               mv.type_name());
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(key, v, data_size, file));
  }
  // Sorting by (begin, end) puts empty tensors first at a shared offset.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const Entry& e : h.entries) {
    if (e.begin < pos)
      fail("safetensors", file, ": tensor '", e.name, "' [", e.begin, ", ", e.end,
           ") overlaps the previous tensor");
    if (e.begin > pos)
      fail("safetensors", file, ": gap in data region before tensor '", e.name, "' (bytes ", pos, "..",
           e.begin, ")");
    pos = e.end;
  }
  if (pos != data_size)
    fail("safetensors", file, ": data region has ", data_size - pos, " unused trailing bytes after byte ",
         pos);
  return h;
}

inline SafetensorsFile make_file(Header&& h) {
  SafetensorsFile f;
  f.metadata = std::move(h.metadata);
  for (Entry& e : h.entries) {
    f.order.push_back(e.name);
    f.tensors.emplace(e.name, std::move(e.info));
  }
  return f;
}

// `file` labels errors: the output path, or "serialize".
inline uint64_t checked_nbytes(const std::string& name, const RawTensor& t, const std::string& file) {
  const uint64_t esize = dtype_size(t.dtype);
  if (esize == 0) fail("safetensors", file, ": tensor '", name, "': unknown dtype '", t.dtype, "'");
  uint64_t count = 1;  // of the nonzero dimensions, as the reader checks it
  bool zero = false;
  for (int64_t d : t.shape) {
    if (d < 0) fail("safetensors", file, ": tensor '", name, "': negative dimension ", d);
    if (d == 0) {
      zero = true;
      continue;
    }
    if (count > uint64_t(std::numeric_limits<int64_t>::max()) / uint64_t(d) ||
        count * uint64_t(d) > std::numeric_limits<uint64_t>::max() / esize)
      fail("safetensors", file, ": tensor '", name, "': shape overflows the element or byte count");
    count *= uint64_t(d);
  }
  const uint64_t n = zero ? 0 : count * esize;
  if (n != t.bytes.size())
    fail("safetensors", file, ": tensor '", name, "': has ", t.bytes.size(), " bytes, shape and dtype need ",
         n);
  return n;
}

// The 8-byte prefix plus JSON header, space-padded so data starts 8-aligned.
inline std::string build_header(const SafetensorsFile& f, const std::string& file) {
  ojson j = ojson::object();
  if (!f.metadata.empty()) j["__metadata__"] = f.metadata;
  uint64_t off = 0;
  for (const auto& [name, t] : f.tensors) {  // std::map: sorted by name
    if (name.empty() || name == "__metadata__")
      fail("safetensors", file, ": invalid tensor name '", name, "'");
    const uint64_t n = checked_nbytes(name, t, file);
    j[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string js;
  try {
    js = j.dump();
  } catch (const nlohmann::json::exception& ex) {  // e.g. invalid UTF-8 in a name
    fail("safetensors", file, ": cannot encode header (", ex.what(), ")");
  }
  js.append((8 - js.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (size_t i = 0; i < 8; ++i) out[i] = char((uint64_t(js.size()) >> (8 * i)) & 0xff);
  return out + js;
}

}  // namespace detail

inline SafetensorsFile parse_safetensors(const uint8_t* data, size_t size,
                                         const std::string& name_for_errors) {
  const uint64_t n = detail::check_prefix(data, size, name_for_errors);
  const uint8_t* base = data + 8 + n;
  auto h = detail::parse_header(data + 8, n, size - 8 - n, name_for_errors);
  for (detail::Entry& e : h.entries) e.info.bytes.assign(base + e.begin, base + e.end);
  return detail::make_file(std::move(h));
}

// Reads the header first, then each tensor straight into its buffer, so a
// large checkpoint is not held twice in memory.
inline SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("safetensors", path, ": cannot open file");
  const std::streamoff end = in.tellg();
  if (end < 0 || !std::filesystem::is_regular_file(path))
    fail("safetensors", path, ": not a readable regular file");
  const uint64_t size = uint64_t(end);
  uint8_t prefix[8] = {};
  in.seekg(0);
  in.read(reinterpret_cast<char*>(prefix), std::streamsize(std::min<uint64_t>(8, size)));
  const uint64_t n = detail::check_prefix(prefix, size, path);
  std::vector<uint8_t> hdr(n);
  if (!in.read(reinterpret_cast<char*>(hdr.data()), std::streamsize(n)))
    fail("safetensors", path, ": read error in header");
  auto h = detail::parse_header(hdr.data(), n, size - 8 - n, path);
  for (detail::Entry& e : h.entries) {  // sorted and contiguous: read sequentially
    e.info.bytes.resize(e.end - e.begin);
    if (!in.read(reinterpret_cast<char*>(e.info.bytes.data()), std::streamsize(e.info.bytes.size())))
      fail("safetensors", path, ": read error in tensor '", e.name, "'");
  }
  return detail::make_file(std::move(h));
}

inline std::vector<uint8_t> serialize_safetensors(const SafetensorsFile& f) {
  const std::string hdr = detail::build_header(f, "serialize");
  std::vector<uint8_t> out(hdr.begin(), hdr.end());
  for (const auto& [name, t] : f.tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

// Writes the file atomically (io/atomic_file.hpp): readers never see a
// half-written file.
inline void write_safetensors(const std::string& path, const SafetensorsFile& f) {
  const std::string hdr = detail::build_header(f, path);  // validates before touching disk
  write_file_atomic(path, "safetensors", [&](std::ostream& out) {
    out.write(hdr.data(), std::streamsize(hdr.size()));
    for (const auto& [name, t] : f.tensors)
      out.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
  });
}

namespace detail {
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {  // zero / subnormal: mant * 2^-24, exact in float
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / nan
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));         // rebias 15 -> 127
}

template <typename Out>
std::vector<Out> convert(const RawTensor& t, const char* fn) {
  const size_t esize = dtype_size(t.dtype);
  if (esize == 0 || t.bytes.size() % esize != 0)
    fail("safetensors", fn, ": bad tensor (dtype '", t.dtype, "', ", t.bytes.size(), " bytes)");
  const size_t n = t.bytes.size() / esize;
  std::vector<Out> out(n);
  const uint8_t* p = t.bytes.data();
  auto each = [&](auto tag, auto&& f) {
    using S = decltype(tag);
    for (size_t i = 0; i < n; ++i) {
      S s;
      std::memcpy(&s, p + i * sizeof(S), sizeof(S));  // bytes may be unaligned
      out[i] = static_cast<Out>(f(s));
    }
  };
  auto id = [](auto s) { return s; };
  const std::string& d = t.dtype;
  if (d == "F64")
    each(double{}, id);
  else if (d == "F32")
    each(float{}, id);
  else if (d == "F16")
    each(uint16_t{}, half_to_float);
  else if (d == "BF16")
    each(uint16_t{}, [](uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); });
  else if (d == "I64")
    each(int64_t{}, id);
  else if (d == "I32")
    each(int32_t{}, id);
  else if (d == "I16")
    each(int16_t{}, id);
  else if (d == "I8")
    each(int8_t{}, id);
  else if (d == "U8" || d == "BOOL")
    each(uint8_t{}, id);
  else
    fail("safetensors", fn, ": unsupported dtype '", d, "'");
  return out;
}
}  // namespace detail

// Element-wise conversion; I64 values beyond 2^53 lose precision in as_f64.
inline std::vector<double> as_f64(const RawTensor& t) { return detail::convert<double>(t, "as_f64"); }
inline std::vector<float> as_f32(const RawTensor& t) { return detail::convert<float>(t, "as_f32"); }

// Builds an F64 tensor, mostly for tests and small exports.
inline RawTensor make_f64(std::vector<int64_t> shape, const std::vector<double>& values) {
  RawTensor t{"F64", std::move(shape), std::vector<uint8_t>(values.size() * 8)};
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  detail::checked_nbytes("tensor", t, "make_f64");
  return t;
}

}  // namespace nq::io
