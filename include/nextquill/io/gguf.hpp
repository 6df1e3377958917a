#pragma once
// GGUF v2/v3 files (llama.cpp's format): a strict reader that memory-maps the
// file, and a writer.
//
//   GGUF := "GGUF" u32 version u64 n_tensors u64 n_kv  kv[n_kv]  info[n_tensors]
//           padding to general.alignment  data
//   kv   := string key, u32 type, value        (arrays: u32 elem type, u64 count, elems)
//   info := string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset (into data)
//
// ne[0] is the fastest-varying dimension (a row), so a torch shape is ne
// reversed. Every check names the file, the key or tensor, and the byte
// offset; nothing is read past the end of the file, and sizes are checked
// against what the file can hold before anything is allocated.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "gguf_quants.hpp"
#include "mapped_file.hpp"

namespace nq::io::gguf {

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

inline const char* value_type_name(ValueType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "unknown";
}

// One metadata value. Scalars: integers in `i` (u64 values above 2^63 in `u`),
// floats in `f`, bools in `i` (0/1), strings in `s`. Arrays keep their element
// type and the elements in `ints`, `floats` or `strings`.
struct Value {
  ValueType type = ValueType::U8;
  ValueType elem = ValueType::U8;  // arrays only
  uint64_t offset = 0;             // byte offset of the value in the file
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  bool is_array() const { return type == ValueType::ARRAY; }
  size_t array_size() const {
    return elem == ValueType::STRING                            ? strings.size()
           : (elem == ValueType::F32 || elem == ValueType::F64) ? floats.size()
                                                                : ints.size();
  }
  std::string type_str() const {
    return is_array() ? std::string("array of ") + value_type_name(elem) : value_type_name(type);
  }
};

inline bool is_integer_type(ValueType t) {
  return t == ValueType::U8 || t == ValueType::I8 || t == ValueType::U16 || t == ValueType::I16 ||
         t == ValueType::U32 || t == ValueType::I32 || t == ValueType::U64 || t == ValueType::I64;
}

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ne[0] = row length
  uint32_t type = 0;
  uint64_t offset = 0;       // into the data section
  uint64_t info_offset = 0;  // byte offset of this tensor's info in the file
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
  }
  int64_t row_len() const { return ne.empty() ? 1 : ne[0]; }
  int64_t rows() const { return numel() / row_len(); }
  // The torch/nextquill shape: ne reversed.
  std::vector<int64_t> shape() const { return {ne.rbegin(), ne.rend()}; }
};

class File {
 public:
  // Maps and validates `path`. Throws nq::Error naming the file and offset.
  static File open(const std::string& path) {
    File f;
    f.path_ = path;
    f.map_ = std::make_shared<MappedFile>(path, "gguf");
    f.parse(f.map_->data(), f.map_->size());
    return f;
  }
  // The same over bytes held in memory (fuzzing, tests); `name` labels errors.
  static File parse_bytes(std::span<const uint8_t> bytes, const std::string& name) {
    File f;
    f.path_ = name;
    f.parse(bytes.data(), bytes.size());
    return f;
  }

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  bool has(std::string_view key) const { return find(key) != nullptr; }
  const Value* find(std::string_view key) const {
    auto it = index_.find(std::string(key));
    return it == index_.end() ? nullptr : &kv_[it->second].second;
  }
  const TensorInfo* find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }

  // Typed getters: a missing key is an error naming it, a value of another
  // type an error naming both types and the value's byte offset.
  const Value& at(std::string_view key) const {
    const Value* v = find(key);
    if (!v) fail("gguf", path_, ": missing metadata key '", key, "'");
    return *v;
  }
  std::string get_string(std::string_view key) const {
    const Value& v = expect(key, ValueType::STRING, "a string");
    return v.s;
  }
  int64_t get_int(std::string_view key) const {
    const Value& v = at(key);
    if (!is_integer_type(v.type)) mismatch(key, v, "an integer");
    if (v.type == ValueType::U64 && v.u > uint64_t(INT64_MAX))
      fail("gguf", path_, ": metadata key '", key, "' (at byte ", v.offset, ") is ", v.u, ", too large");
    return v.i;
  }
  double get_float(std::string_view key) const {
    const Value& v = at(key);
    if (v.type != ValueType::F32 && v.type != ValueType::F64) mismatch(key, v, "a float");
    return v.f;
  }
  bool get_bool(std::string_view key) const { return expect(key, ValueType::BOOL, "a bool").i != 0; }
  const std::vector<std::string>& get_strings(std::string_view key) const {
    const Value& v = at(key);
    if (!v.is_array() || v.elem != ValueType::STRING) mismatch(key, v, "an array of strings");
    return v.strings;
  }
  const std::vector<int64_t>& get_ints(std::string_view key) const {
    const Value& v = at(key);
    if (!v.is_array() || !is_integer_type(v.elem)) mismatch(key, v, "an array of integers");
    return v.ints;
  }
  // Optional versions: nullopt when the key is absent (a wrong type still fails).
  std::optional<std::string> opt_string(std::string_view key) const {
    return has(key) ? std::optional(get_string(key)) : std::nullopt;
  }
  std::optional<int64_t> opt_int(std::string_view key) const {
    return has(key) ? std::optional(get_int(key)) : std::nullopt;
  }
  std::optional<double> opt_float(std::string_view key) const {
    return has(key) ? std::optional(get_float(key)) : std::nullopt;
  }
  std::optional<bool> opt_bool(std::string_view key) const {
    return has(key) ? std::optional(get_bool(key)) : std::nullopt;
  }

  // A tensor dequantized to float32, row-major in the torch shape.
  std::vector<float> dequantize(const TensorInfo& t) const {
    std::vector<float> out(size_t(t.numel()));
    dequantize_into(t, out.data());
    return out;
  }
  void dequantize_into(const TensorInfo& t, float* dst) const {
    const TypeInfo* ti = type_info(t.type);
    NQ_CHECK(ti && ti->dequantizable, "gguf", path_, ": tensor '", t.name, "' (info at byte ", t.info_offset,
             ") has type ", type_name(t.type), ", which nextquill cannot dequantize");
    gguf::dequantize(t.type, t.data, dst, t.rows(), t.row_len());
  }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;  // null for parse_bytes (the caller keeps the bytes)
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::map<std::string, size_t, std::less<>> index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;

  [[noreturn]] void mismatch(std::string_view key, const Value& v, const char* want) const {
    fail("gguf", path_, ": metadata key '", key, "' (at byte ", v.offset, ") is ", v.type_str(),
         ", expected ", want);
  }
  const Value& expect(std::string_view key, ValueType t, const char* want) const {
    const Value& v = at(key);
    if (v.type != t) mismatch(key, v, want);
    return v;
  }

  // A bounds-checked little-endian cursor over the file.
  struct Cursor {
    const uint8_t* base;
    uint64_t size, pos;
    const std::string& path;

    void need(uint64_t n, const char* what) const {
      if (n > size - pos)
        fail("gguf", path, ": truncated file: ", what, " at byte ", pos, " needs ", n, " byte(s), ",
             size - pos, " left (file size ", size, ")");
    }
    template <typename T>
    T read(const char* what) {
      need(sizeof(T), what);
      T v;
      std::memcpy(&v, base + pos, sizeof(T));
      pos += sizeof(T);
      return v;
    }
    std::string read_string(const char* what) {
      const uint64_t at = pos;
      const uint64_t n = read<uint64_t>(what);
      if (n > size - pos)
        fail("gguf", path, ": truncated file: ", what, " at byte ", at, " claims ", n, " bytes, but only ",
             size - pos, " remain in the file");
      std::string s(reinterpret_cast<const char*>(base + pos), size_t(n));
      pos += n;
      return s;
    }
  };

  static uint64_t scalar_size(ValueType t) {
    switch (t) {
      case ValueType::U8:
      case ValueType::I8:
      case ValueType::BOOL:
        return 1;
      case ValueType::U16:
      case ValueType::I16:
        return 2;
      case ValueType::U32:
      case ValueType::I32:
      case ValueType::F32:
        return 4;
      case ValueType::U64:
      case ValueType::I64:
      case ValueType::F64:
        return 8;
      default:
        return 0;
    }
  }

  // Reads one scalar of type t into v (ints/floats/bools), or appends it to
  // v's array when `into_array`.
  void read_scalar(Cursor& c, ValueType t, Value& v, bool into_array, const std::string& key) const {
    int64_t iv = 0;
    double fv = 0;
    bool is_float = false;
    switch (t) {
      case ValueType::U8:
        iv = c.read<uint8_t>("a u8");
        break;
      case ValueType::I8:
        iv = c.read<int8_t>("an i8");
        break;
      case ValueType::U16:
        iv = c.read<uint16_t>("a u16");
        break;
      case ValueType::I16:
        iv = c.read<int16_t>("an i16");
        break;
      case ValueType::U32:
        iv = c.read<uint32_t>("a u32");
        break;
      case ValueType::I32:
        iv = c.read<int32_t>("an i32");
        break;
      case ValueType::I64:
        iv = c.read<int64_t>("an i64");
        break;
      case ValueType::U64: {
        const uint64_t u = c.read<uint64_t>("a u64");
        if (!into_array) v.u = u;
        iv = int64_t(u);  // get_int refuses values above INT64_MAX
        if (into_array && u > uint64_t(INT64_MAX))
          fail("gguf", path_, ": metadata key '", key, "': array element ", v.ints.size(), " is ", u,
               ", too large");
        break;
      }
      case ValueType::BOOL: {
        const uint64_t at = c.pos;
        const uint8_t b = c.read<uint8_t>("a bool");
        if (b > 1)
          fail("gguf", path_, ": metadata key '", key, "': bool at byte ", at, " is ", int(b),
               ", not 0 or 1");
        iv = b;
        break;
      }
      case ValueType::F32:
        fv = c.read<float>("an f32"), is_float = true;
        break;
      case ValueType::F64:
        fv = c.read<double>("an f64"), is_float = true;
        break;
      default:
        fail("gguf", path_, ": metadata key '", key, "': not a scalar type");
    }
    if (into_array) {
      if (is_float)
        v.floats.push_back(fv);
      else
        v.ints.push_back(iv);
    } else if (is_float) {
      v.f = fv;
    } else {
      v.i = iv;
      if (t != ValueType::U64) v.u = uint64_t(iv);
    }
  }

  void parse(const uint8_t* base, uint64_t size) {
    Cursor c{base, size, 0, path_};
    if (size < 4 || std::memcmp(base, "GGUF", 4) != 0) {
      std::string got;
      for (uint64_t i = 0; i < std::min<uint64_t>(size, 4); ++i) {
        const char ch = char(base[i]);
        got += (ch >= 32 && ch < 127) ? std::string(1, ch) : "\\x" + hex_byte(base[i]);
      }
      fail("gguf", path_, ": not a GGUF file: byte 0 should start with the magic 'GGUF', found '", got, "'",
           size < 4 ? " (file shorter than 4 bytes)" : "");
    }
    c.pos = 4;
    version_ = c.read<uint32_t>("the version");
    if (version_ != 2 && version_ != 3)
      fail("gguf", path_, ": GGUF version ", version_, " at byte 4 is not supported (versions 2 and 3 are)");
    const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
    const uint64_t n_kv = c.read<uint64_t>("the metadata count");
    // Each KV takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor
    // info 8 + 4 + 8 + 4 + 8: counts the file cannot hold are refused before
    // anything is reserved.
    if (n_kv > (size - c.pos) / 13)
      fail("gguf", path_, ": metadata count ", n_kv, " at byte 16 is more than the file can hold");
    if (n_tensors > (size - c.pos) / 32)
      fail("gguf", path_, ": tensor count ", n_tensors, " at byte 8 is more than the file can hold");
    kv_.reserve(size_t(n_kv));
    for (uint64_t k = 0; k < n_kv; ++k) {
      const uint64_t key_at = c.pos;
      std::string key = c.read_string("a metadata key");
      if (key.empty()) fail("gguf", path_, ": metadata key ", k, " at byte ", key_at, " is empty");
      if (index_.count(key))
        fail("gguf", path_, ": metadata key '", key, "' at byte ", key_at, " appears twice");
      Value v;
      const uint64_t type_at = c.pos;
      const uint32_t t = c.read<uint32_t>("a metadata value type");
      if (t > 12)
        fail("gguf", path_, ": metadata key '", key, "': unknown value type ", t, " at byte ", type_at);
      v.type = ValueType(t);
      v.offset = c.pos;
      if (v.type == ValueType::STRING) {
        v.s = c.read_string("a string value");
      } else if (v.type == ValueType::ARRAY) {
        const uint64_t et_at = c.pos;
        const uint32_t et = c.read<uint32_t>("an array element type");
        if (et > 12 || ValueType(et) == ValueType::ARRAY)
          fail("gguf", path_, ": metadata key '", key, "': array element type ", et, " at byte ", et_at,
               et > 12 ? " is unknown" : " (nested arrays) is not supported");
        v.elem = ValueType(et);
        const uint64_t count_at = c.pos;
        const uint64_t n = c.read<uint64_t>("an array length");
        const uint64_t min_elem = v.elem == ValueType::STRING ? 8 : scalar_size(v.elem);
        if (n > (size - c.pos) / min_elem)
          fail("gguf", path_, ": metadata key '", key, "': array length ", n, " at byte ", count_at,
               " is more than the file can hold");
        if (v.elem == ValueType::STRING) {
          v.strings.reserve(size_t(n));
          for (uint64_t e = 0; e < n; ++e) v.strings.push_back(c.read_string("an array string"));
        } else {
          (v.elem == ValueType::F32 || v.elem == ValueType::F64 ? v.floats.reserve(size_t(n))
                                                                : v.ints.reserve(size_t(n)));
          for (uint64_t e = 0; e < n; ++e) read_scalar(c, v.elem, v, true, key);
        }
      } else {
        read_scalar(c, v.type, v, false, key);
      }
      index_.emplace(key, kv_.size());
      kv_.emplace_back(std::move(key), std::move(v));
    }
    if (const Value* a = find("general.alignment")) {
      if (a->type != ValueType::U32) mismatch("general.alignment", *a, "u32");
      if (a->i == 0 || (a->i & (a->i - 1)) != 0)
        fail("gguf", path_, ": general.alignment (at byte ", a->offset, ") is ", a->i,
             ", not a power of two");
      alignment_ = uint64_t(a->i);
    }
    tensors_.reserve(size_t(n_tensors));
    for (uint64_t k = 0; k < n_tensors; ++k) {
      TensorInfo t;
      t.info_offset = c.pos;
      t.name = c.read_string("a tensor name");
      const std::string where =
          "tensor '" + t.name + "' (info at byte " + std::to_string(t.info_offset) + ")";
      if (t.name.empty())
        fail("gguf", path_, ": tensor ", k, " (info at byte ", t.info_offset, ") has no name");
      if (tensor_index_.count(t.name)) fail("gguf", path_, ": ", where, " appears twice");
      const uint32_t nd = c.read<uint32_t>("a tensor's dimension count");
      if (nd < 1 || nd > 4) fail("gguf", path_, ": ", where, " has ", nd, " dimensions (1 to 4 allowed)");
      uint64_t numel = 1;
      for (uint32_t d = 0; d < nd; ++d) {
        const uint64_t ne = c.read<uint64_t>("a tensor dimension");
        if (ne == 0 || ne > uint64_t(INT64_MAX) / numel)
          fail("gguf", path_, ": ", where, ": dimension ", d, " is ", ne,
               ne == 0 ? " (empty tensors are not allowed)" : ", the element count overflows");
        numel *= ne;
        t.ne.push_back(int64_t(ne));
      }
      const uint64_t type_at = c.pos;
      t.type = c.read<uint32_t>("a tensor type");
      const TypeInfo* ti = type_info(t.type);
      if (!ti) fail("gguf", path_, ": ", where, ": unknown ggml type ", t.type, " at byte ", type_at);
      if (t.ne[0] % ti->block_elems != 0)
        fail("gguf", path_, ": ", where, ": row length ", t.ne[0], " is not a multiple of ", ti->name,
             "'s block of ", ti->block_elems, " elements");
      const uint64_t blocks = numel / uint64_t(ti->block_elems);
      if (blocks > uint64_t(INT64_MAX) / uint64_t(ti->block_bytes))
        fail("gguf", path_, ": ", where, ": byte size overflows");
      t.nbytes = blocks * uint64_t(ti->block_bytes);
      t.offset = c.read<uint64_t>("a tensor offset");
      if (t.offset % alignment_ != 0)
        fail("gguf", path_, ": ", where, ": data offset ", t.offset, " is not a multiple of the alignment ",
             alignment_);
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    data_offset_ = (c.pos + alignment_ - 1) / alignment_ * alignment_;
    if (data_offset_ > size && !tensors_.empty())
      fail("gguf", path_, ": truncated file: the data section would start at byte ", data_offset_,
           ", past the end (file size ", size, ")");
    const uint64_t data_size = size > data_offset_ ? size - data_offset_ : 0;
    std::vector<const TensorInfo*> by_offset;
    for (auto& t : tensors_) {
      if (t.offset > data_size || t.nbytes > data_size - t.offset)
        fail("gguf", path_, ": truncated file: tensor '", t.name, "' spans bytes ", data_offset_ + t.offset,
             " to ", data_offset_ + t.offset + t.nbytes, " of a ", size, "-byte file");
      t.data = base + data_offset_ + t.offset;
      by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < by_offset.size(); ++k) {
      const TensorInfo& a = *by_offset[k - 1];
      const TensorInfo& b = *by_offset[k];
      if (b.offset < a.offset + a.nbytes)
        fail("gguf", path_, ": tensors '", a.name, "' (data bytes ", a.offset, "..", a.offset + a.nbytes,
             ") and '", b.name, "' (from ", b.offset, ") overlap");
    }
  }

  static std::string hex_byte(uint8_t b) {
    const char* d = "0123456789abcdef";
    return {d[b >> 4], d[b & 15]};
  }
};

// Builds a GGUF v3 file: metadata in insertion order, tensors laid out in
// insertion order at `alignment`. Tensor data is given already encoded in
// its ggml type (F32 floats, F16 halves, quantized blocks...).
class Writer {
 public:
  explicit Writer(uint32_t alignment = 32) : alignment_(alignment) {
    NQ_CHECK(alignment && (alignment & (alignment - 1)) == 0, "gguf", "Writer: alignment ", alignment,
             " is not a power of two");
    if (alignment != 32) set_u32("general.alignment", alignment);
  }

  void set_string(const std::string& key, const std::string& v) { kv(key, ValueType::STRING, str(v)); }
  void set_u32(const std::string& key, uint32_t v) { kv(key, ValueType::U32, pod(v)); }
  void set_i32(const std::string& key, int32_t v) { kv(key, ValueType::I32, pod(v)); }
  void set_u64(const std::string& key, uint64_t v) { kv(key, ValueType::U64, pod(v)); }
  void set_f32(const std::string& key, float v) { kv(key, ValueType::F32, pod(v)); }
  void set_bool(const std::string& key, bool v) { kv(key, ValueType::BOOL, std::string(1, char(v ? 1 : 0))); }
  void set_strings(const std::string& key, const std::vector<std::string>& v) {
    std::string b = pod(uint32_t(ValueType::STRING)) + pod(uint64_t(v.size()));
    for (const auto& s : v) b += str(s);
    kv(key, ValueType::ARRAY, b);
  }
  void set_i32s(const std::string& key, const std::vector<int32_t>& v) {
    std::string b = pod(uint32_t(ValueType::I32)) + pod(uint64_t(v.size()));
    for (int32_t x : v) b += pod(x);
    kv(key, ValueType::ARRAY, b);
  }
  // A raw key/value (tests: any type, including malformed payloads).
  void set_raw(const std::string& key, uint32_t type, std::string payload) {
    kv_ += str(key) + pod(type) + payload;
    ++n_kv_;
  }

  // ne: ggml order (ne[0] = row length); data: the encoded bytes.
  void add_tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, std::string data) {
    const TypeInfo* ti = type_info(type);
    NQ_CHECK(ti, "gguf", "Writer: tensor '", name, "': unknown type ", type);
    int64_t numel = 1;
    for (int64_t d : ne) numel *= d;
    NQ_CHECK(
        ne[0] % ti->block_elems == 0 && int64_t(data.size()) == numel / ti->block_elems * ti->block_bytes,
        "gguf", "Writer: tensor '", name, "': ", data.size(), " bytes do not match its shape and type ",
        ti->name);
    tensors_.push_back({name, std::move(ne), type, std::move(data)});
  }
  void add_f32(const std::string& name, std::vector<int64_t> ne, std::span<const float> v) {
    add_tensor(name, std::move(ne), uint32_t(GGMLType::F32),
               std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
  }

  // The whole file.
  std::string bytes() const {
    std::string out = "GGUF" + pod(uint32_t(3)) + pod(uint64_t(tensors_.size())) + pod(n_kv_) + kv_;
    uint64_t off = 0;
    for (const auto& t : tensors_) {
      out += str(t.name) + pod(uint32_t(t.ne.size()));
      for (int64_t d : t.ne) out += pod(uint64_t(d));
      out += pod(t.type) + pod(off);
      off = align(off + t.data.size());
    }
    out.resize(size_t(align(out.size())), '\0');
    for (const auto& t : tensors_) {
      out += t.data;
      out.resize(size_t(align(out.size())), '\0');
    }
    return out;
  }
  // Writes through a temporary file and a rename.
  void write(const std::string& path) const { write_file_atomic(path, "gguf", bytes()); }

 private:
  struct Pending {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    std::string data;
  };
  uint32_t alignment_;
  std::string kv_;
  uint64_t n_kv_ = 0;
  std::vector<Pending> tensors_;

  template <typename T>
  static std::string pod(T v) {
    return std::string(reinterpret_cast<const char*>(&v), sizeof v);
  }
  static std::string str(const std::string& s) { return pod(uint64_t(s.size())) + s; }
  uint64_t align(uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }
  void kv(const std::string& key, ValueType t, const std::string& payload) {
    set_raw(key, uint32_t(t), payload);
  }
};

}  // namespace nq::io::gguf
