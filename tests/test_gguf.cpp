// The GGUF container: metadata of every type, tensor infos, the writer, and
// the bad-input catalogue (each case a clear nq::Error naming the place).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "nextquill/io/gguf.hpp"

namespace gg = nq::io::gguf;

namespace {

template <typename T>
std::string pod(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}
std::string gstr(const std::string& s) { return pod(uint64_t(s.size())) + s; }

std::string error_of_bytes(const std::string& b) {
  try {
    gg::File::parse_bytes({reinterpret_cast<const uint8_t*>(b.data()), b.size()}, "bad.gguf");
  } catch (const nq::Error& e) {
    return e.what();
  }
  return "";
}
gg::File parse(const std::string& b) {
  return gg::File::parse_bytes({reinterpret_cast<const uint8_t*>(b.data()), b.size()}, "t.gguf");
}

// A valid file with one 64-element F32 tensor and a few keys.
gg::Writer small_writer() {
  gg::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  std::vector<float> v(64);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.5f;
  w.add_f32("a.weight", {32, 2}, v);
  return w;
}

// Header: magic, version, tensor count, kv count.
std::string header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  return "GGUF" + pod(version) + pod(n_tensors) + pod(n_kv);
}

}  // namespace

TEST_CASE("gguf: writer and reader round-trip every metadata type and the tensor data") {
  gg::Writer w(64);
  w.set_string("s", "h\xc3\xa9llo");
  w.set_u32("u32", 4000000000u);
  w.set_i32("i32", -7);
  w.set_u64("u64", 1ull << 40);
  w.set_f32("f32", 0.25f);
  w.set_bool("b", true);
  w.set_strings("strs", {"a", "", "ccc"});
  w.set_i32s("ints", {1, -2, 3});
  w.set_raw("u8", 0, pod(uint8_t(200)));
  w.set_raw("i8", 1, pod(int8_t(-100)));
  w.set_raw("u16", 2, pod(uint16_t(60000)));
  w.set_raw("i16", 3, pod(int16_t(-30000)));
  w.set_raw("i64", 11, pod(int64_t(-(1ll << 50))));
  w.set_raw("f64", 12, pod(1.0 / 3.0));
  w.set_raw("f32s", 9, pod(uint32_t(6)) + pod(uint64_t(2)) + pod(1.5f) + pod(-2.0f));
  std::vector<float> a(96), b(32);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) - 40.f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = 1.f / float(i + 1);
  w.add_f32("a", {32, 3}, a);
  w.add_f32("b", {32}, b);
  const std::string bytes = w.bytes();
  gg::File f = parse(bytes);
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 64);
  CHECK(f.data_offset() % 64 == 0);
  CHECK(f.get_string("s") == "h\xc3\xa9llo");
  CHECK(f.get_int("u32") == 4000000000ll);
  CHECK(f.get_int("i32") == -7);
  CHECK(f.get_int("u64") == (1ll << 40));
  CHECK(f.get_float("f32") == 0.25);
  CHECK(f.get_bool("b"));
  CHECK(f.get_strings("strs") == std::vector<std::string>{"a", "", "ccc"});
  CHECK(f.get_ints("ints") == std::vector<int64_t>{1, -2, 3});
  CHECK(f.get_int("u8") == 200);
  CHECK(f.get_int("i8") == -100);
  CHECK(f.get_int("u16") == 60000);
  CHECK(f.get_int("i16") == -30000);
  CHECK(f.get_int("i64") == -(1ll << 50));
  CHECK(f.get_float("f64") == 1.0 / 3.0);
  CHECK(f.at("f32s").floats == std::vector<double>{1.5, -2.0});
  CHECK(f.metadata().size() == 16);  // 15 set + general.alignment
  REQUIRE(f.tensors().size() == 2);
  const gg::TensorInfo* ta = f.find_tensor("a");
  REQUIRE(ta);
  CHECK(ta->shape() == std::vector<int64_t>{3, 32});
  CHECK(ta->offset % 64 == 0);
  CHECK(f.dequantize(*ta) == a);
  CHECK(f.dequantize(*f.find_tensor("b")) == b);
  CHECK(f.opt_int("absent") == std::nullopt);
  CHECK_FALSE(f.find_tensor("c"));
}

TEST_CASE("gguf: typed getters name the key, both types and the byte offset") {
  gg::File f = parse(small_writer().bytes());
  const auto err = [&](auto&& fn) {
    try {
      fn();
    } catch (const nq::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string e1 = err([&] { (void)f.get_int("general.architecture"); });
  CHECK(e1.find("t.gguf") != std::string::npos);
  CHECK(e1.find("'general.architecture'") != std::string::npos);
  CHECK(e1.find("is string, expected an integer") != std::string::npos);
  CHECK(e1.find("at byte ") != std::string::npos);
  CHECK(err([&] { (void)f.get_string("llama.block_count"); }).find("is u32, expected a string") !=
        std::string::npos);
  CHECK(err([&] { (void)f.get_int("llama.head_count"); }).find("missing metadata key 'llama.head_count'") !=
        std::string::npos);
  CHECK(err([&] { (void)f.get_strings("llama.block_count"); }).find("expected an array of strings") !=
        std::string::npos);
}

TEST_CASE("gguf: a file on disk is mapped and read like bytes in memory") {
  const auto path = std::filesystem::temp_directory_path() / "nq_test_gguf_map.gguf";
  small_writer().write(path.string());
  gg::File f = gg::File::open(path.string());
  CHECK(f.get_int("llama.block_count") == 2);
  const auto v = f.dequantize(*f.find_tensor("a.weight"));
  CHECK(v[63] == 31.5f);
  std::filesystem::remove(path);
  CHECK(std::string(std::filesystem::exists(path) ? "exists" : "gone") == "gone");
}

// The bad-input catalogue: each entry is a malformed file and the words its
// error must contain.
TEST_CASE("gguf: malformed files give clear errors, never a crash") {
  const std::string good = small_writer().bytes();
  gg::File gf = parse(good);
  const gg::TensorInfo& t = gf.tensors().at(0);
  // Byte offsets of fields inside `good`, from the parsed layout.
  const size_t info = size_t(t.info_offset);
  const size_t after_name = info + 8 + t.name.size();  // n_dims
  const size_t type_at = after_name + 4 + 8 * t.ne.size();
  const size_t offset_at = type_at + 4;
  auto patched = [&](size_t at, const std::string& bytes) {
    std::string b = good;
    b.replace(at, bytes.size(), bytes);
    return b;
  };
  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"empty file", "", {"not a GGUF file", "shorter than 4 bytes"}},
      {"bad magic", "GGML" + good.substr(4), {"not a GGUF file", "'GGML'"}},
      {"version 1", patched(4, pod(uint32_t(1))), {"version 1", "not supported"}},
      {"version 4", patched(4, pod(uint32_t(4))), {"version 4", "not supported"}},
      {"truncated header", good.substr(0, 12), {"truncated file", "the tensor count"}},
      {"truncated in the metadata", good.substr(0, 60), {"truncated file", "at byte"}},
      {"truncated tensor data", good.substr(0, good.size() - 8), {"truncated file", "tensor 'a.weight'"}},
      {"huge metadata count", header(3, 0, 1ull << 60), {"metadata count", "more than the file can hold"}},
      {"huge tensor count", header(3, 1ull << 62, 0), {"tensor count", "more than the file can hold"}},
      {"huge string length",
       header(3, 0, 1) + pod(uint64_t(1) << 62) + "k" + std::string(16, '\0'),
       {"claims", "bytes", "remain in the file"}},
      {"huge array length",
       header(3, 0, 1) + gstr("k") + pod(uint32_t(9)) + pod(uint32_t(5)) + pod(uint64_t(1) << 61),
       {"'k'", "array length", "more than the file can hold"}},
      {"unknown value type",
       header(3, 0, 1) + gstr("k") + pod(uint32_t(13)) + pod(uint32_t(0)),
       {"'k'", "unknown value type 13"}},
      {"nested array",
       header(3, 0, 1) + gstr("k") + pod(uint32_t(9)) + pod(uint32_t(9)) + pod(uint64_t(0)),
       {"nested arrays"}},
      {"bad bool",
       header(3, 0, 1) + gstr("k") + pod(uint32_t(7)) + std::string(1, '\x02'),
       {"bool", "not 0 or 1"}},
      {"duplicate key",
       header(3, 0, 2) + gstr("k") + pod(uint32_t(4)) + pod(uint32_t(1)) + gstr("k") + pod(uint32_t(4)) +
           pod(uint32_t(2)),
       {"'k'", "appears twice"}},
      {"alignment not a power of two",
       header(3, 0, 1) + gstr("general.alignment") + pod(uint32_t(4)) + pod(uint32_t(24)),
       {"general.alignment", "not a power of two"}},
      {"alignment of the wrong type",
       header(3, 0, 1) + gstr("general.alignment") + pod(uint32_t(10)) + pod(uint64_t(32)),
       {"general.alignment", "expected u32"}},
      {"unknown tensor type",
       patched(type_at, pod(uint32_t(99))),
       {"tensor 'a.weight'", "unknown ggml type 99"}},
      {"row not a multiple of the block",
       patched(type_at, pod(uint32_t(12))),  // Q4_K: 256 per block
       {"tensor 'a.weight'", "row length 32", "not a multiple", "Q4_K"}},
      {"misaligned offset",
       patched(offset_at, pod(uint64_t(4))),
       {"offset 4", "not a multiple of the alignment"}},
      {"offset past the end", patched(offset_at, pod(uint64_t(1) << 40)), {"truncated file", "spans bytes"}},
      {"too many dimensions", patched(after_name, pod(uint32_t(5))), {"5 dimensions"}},
      {"zero dimension", patched(after_name + 4, pod(uint64_t(0))), {"dimension 0 is 0"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const std::string e = error_of_bytes(c.bytes);
    REQUIRE(!e.empty());
    CHECK(e.find("bad.gguf") != std::string::npos);
    for (const auto& w : c.expect) {
      CAPTURE(w);
      CHECK(e.find(w) != std::string::npos);
    }
  }
}

TEST_CASE("gguf: overlapping tensors and duplicate tensor names are refused") {
  gg::Writer w;
  std::vector<float> v(32, 1.f);
  w.add_f32("x", {32}, v);
  w.add_f32("y", {32}, v);
  std::string b = w.bytes();
  gg::File f = parse(b);
  const gg::TensorInfo& y = *f.find_tensor("y");
  // y's offset field: after its name and one dimension.
  const size_t y_off = size_t(y.info_offset) + 8 + 1 + 4 + 8 + 4;
  std::string overlap = b;
  overlap.replace(y_off, 8, pod(uint64_t(0)));
  const std::string e = error_of_bytes(overlap);
  CHECK(e.find("overlap") != std::string::npos);
  std::string dup = b;
  dup[size_t(y.info_offset) + 8] = 'x';
  CHECK(error_of_bytes(dup).find("tensor 'x'") != std::string::npos);
  CHECK(error_of_bytes(dup).find("appears twice") != std::string::npos);
}
