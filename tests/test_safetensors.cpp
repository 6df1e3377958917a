#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "nextquill/io/safetensors.hpp"

#ifndef NQ_TEST_DATA_DIR
#define NQ_TEST_DATA_DIR "tests/fixtures"
#endif

namespace fs = std::filesystem;
using nq::io::RawTensor;
using nq::io::SafetensorsFile;

namespace {

// 8-byte little-endian length + header + `data_size` zero bytes.
std::vector<uint8_t> make_buffer(const std::string& header, size_t data_size, uint64_t claimed_len) {
  std::vector<uint8_t> b(8 + header.size() + data_size, 0);
  for (int i = 0; i < 8; ++i) b[i] = uint8_t(claimed_len >> (8 * i));
  std::copy(header.begin(), header.end(), b.begin() + 8);
  return b;
}
std::vector<uint8_t> make_buffer(const std::string& header, size_t data_size) {
  return make_buffer(header, data_size, header.size());
}

RawTensor raw(const std::string& dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  return RawTensor{dtype, std::move(shape), std::move(bytes)};
}

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("safetensors: write/read round trip") {
  SafetensorsFile f;
  f.metadata = {{"format", "pt"}, {"eps", "1e-5"}};
  f.tensors["w"] = nq::io::make_f64({2, 3}, {1, -2, 3.5, 1e300, -0.0, 1e-300});
  f.tensors["a_f32"] = raw("F32", {2}, std::vector<uint8_t>(8, 0x3f));
  f.tensors["idx"] = raw("I64", {3}, std::vector<uint8_t>(24, 7));
  f.tensors["half"] = raw("F16", {1, 1, 3}, {1, 2, 3, 4, 5, 6});
  f.tensors["empty"] = raw("BF16", {0, 4}, {});
  f.tensors["scalar"] = nq::io::make_f64({}, {42.0});

  const fs::path dir =
      fs::temp_directory_path() /
      ("nq_st_test_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  fs::create_directories(dir);
  const std::string path = (dir / "rt.safetensors").string();
  nq::io::write_safetensors(path, f);
  nq::io::write_safetensors(path, f);  // overwriting an existing file works

  const SafetensorsFile g = nq::io::read_safetensors(path);
  CHECK(g.metadata == f.metadata);
  REQUIRE(g.tensors.size() == f.tensors.size());
  for (const auto& kv : f.tensors) {  // not a structured binding: CAPTURE needs a lambda capture
    const std::string& name = kv.first;
    const RawTensor& t = kv.second;
    CAPTURE(name);
    REQUIRE(g.tensors.count(name) == 1);
    CHECK(g.tensors.at(name).dtype == t.dtype);
    CHECK(g.tensors.at(name).shape == t.shape);
    CHECK(g.tensors.at(name).bytes == t.bytes);
  }
  // Layout is sorted by name; `order` reports the layout (empty tensors tie).
  CHECK(g.order.size() == 6);
  CHECK(g.order.back() == "w");
  CHECK(nq::io::as_f64(g.tensors.at("w"))[3] == 1e300);
  CHECK(nq::io::as_f64(g.tensors.at("scalar")) == std::vector<double>{42.0});

  const std::vector<uint8_t> bytes = slurp(path);
  CHECK(bytes == nq::io::serialize_safetensors(f));
  const uint64_t n = nq::io::detail::read_le64(bytes.data());
  CHECK(n % 8 == 0);
  CHECK(bytes[8] == '{');
  CHECK(nq::io::parse_safetensors(bytes.data(), bytes.size(), "mem").tensors.at("idx").bytes ==
        f.tensors["idx"].bytes);

  int files = 0;  // no leftover temporary file
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  CHECK(files == 1);
  fs::remove_all(dir);

  // The writer refuses inconsistent tensors before touching the disk.
  SafetensorsFile bad;
  bad.tensors["x"] = raw("F32", {3}, std::vector<uint8_t>(8));
  CHECK_THROWS_WITH_AS(nq::io::serialize_safetensors(bad), doctest::Contains("tensor 'x'"), nq::Error);
  bad.tensors["x"] = raw("F128", {1}, std::vector<uint8_t>(16));
  CHECK_THROWS_AS(nq::io::serialize_safetensors(bad), nq::Error);
  CHECK_THROWS_WITH_AS(nq::io::read_safetensors((dir / "missing.safetensors").string()),
                       doctest::Contains("missing.safetensors"), nq::Error);
}

TEST_CASE("safetensors: half and bfloat16 conversion") {
  // F16 bits: 1, -2, 65504 (max), 2^-24 (min subnormal), +inf, -0, 2^-14 (min normal)
  const std::vector<uint16_t> h = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x8000, 0x0400};
  RawTensor t = raw("F16", {7}, std::vector<uint8_t>(14));
  std::memcpy(t.bytes.data(), h.data(), 14);
  const auto v = nq::io::as_f64(t);
  CHECK(v[0] == 1.0);
  CHECK(v[1] == -2.0);
  CHECK(v[2] == 65504.0);
  CHECK(v[3] == std::ldexp(1.0, -24));
  CHECK(std::isinf(v[4]));
  CHECK((v[5] == 0.0 && std::signbit(v[5])));
  CHECK(v[6] == std::ldexp(1.0, -14));
  RawTensor nan = raw("F16", {1}, {0x01, 0x7E});
  CHECK(std::isnan(nq::io::as_f32(nan)[0]));

  const std::vector<uint16_t> b = {0x3F80, 0xC040, 0x4049};
  RawTensor bt = raw("BF16", {3}, std::vector<uint8_t>(6));
  std::memcpy(bt.bytes.data(), b.data(), 6);
  CHECK(nq::io::as_f64(bt) == std::vector<double>{1.0, -3.0, 3.140625});

  RawTensor i = raw("I64", {2}, std::vector<uint8_t>(16));
  const int64_t iv[2] = {-100, 5};
  std::memcpy(i.bytes.data(), iv, 16);
  CHECK(nq::io::as_f64(i) == std::vector<double>{-100.0, 5.0});
}

TEST_CASE("safetensors: PyTorch-generated fixtures") {
  const fs::path ops = fs::path(NQ_TEST_DATA_DIR) / "ops";
  REQUIRE(fs::exists(ops / "softmax_lastdim.safetensors"));

  const auto f = nq::io::read_safetensors((ops / "softmax_lastdim.safetensors").string());
  CHECK(f.metadata.at("op") == "softmax");
  CHECK(f.metadata.at("dim") == "-1");
  const RawTensor& out = f.tensors.at("out");
  CHECK(out.dtype == "F64");
  REQUIRE(out.shape == std::vector<int64_t>{3, 4, 7});
  const auto p = nq::io::as_f64(out);
  for (size_t row = 0; row < 12; ++row) {
    double s = 0;
    for (size_t j = 0; j < 7; ++j) s += p[row * 7 + j];
    CHECK(s == doctest::Approx(1.0).epsilon(1e-12));
  }

  const auto ce = nq::io::read_safetensors((ops / "cross_entropy_mean.safetensors").string());
  CHECK(ce.tensors.at("targets").dtype == "I64");
  CHECK(ce.tensors.at("out").shape.empty());  // 0-d loss
  int ignored = 0;
  for (double t : nq::io::as_f64(ce.tensors.at("targets"))) ignored += (t == -100.0);
  CHECK(ignored == 2);

  // Every fixture parses and re-serializes byte for byte (same layout rules).
  int count = 0;
  for (const auto& e : fs::directory_iterator(ops)) {
    if (e.path().extension() != ".safetensors") continue;
    CAPTURE(e.path().string());
    const auto bytes = slurp(e.path());
    const auto file = nq::io::read_safetensors(e.path().string());
    CHECK(nq::io::serialize_safetensors(file) == bytes);
    ++count;
  }
  CHECK(count >= 10);
}

TEST_CASE("safetensors: malformed inputs throw nq::Error naming the file") {
  const std::string name = "bad_input.safetensors";
  auto expect_error = [&](const std::vector<uint8_t>& buf, const std::string& want) {
    CAPTURE(want);
    try {
      nq::io::parse_safetensors(buf.data(), buf.size(), name);
      FAIL("no exception");
    } catch (const nq::Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.rfind("nq::safetensors: ", 0) == 0);
      CHECK(msg.find(name) != std::string::npos);
      CHECK(msg.find(want) != std::string::npos);
    }
  };
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  {  // sanity: the well-formed buffer (with space padding) parses
    const auto good = make_buffer("{" + ok_entry + "}   ", 8);
    CHECK(nq::io::parse_safetensors(good.data(), good.size(), name).tensors.at("t").shape ==
          std::vector<int64_t>{2});
  }

  expect_error({1, 2, 3, 4, 5}, "too short");
  expect_error(make_buffer("{}", 0, 1000), "past the end");
  expect_error(make_buffer("{}", 0, 200ull << 20), "100 MB");
  expect_error(make_buffer(R"({"t": {"dtype": "F32",)", 0), "not valid JSON");
  expect_error(make_buffer("[1,2]", 0), "must be a JSON object");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8), "'t': missing field 'shape'");
  expect_error(make_buffer(R"({"t":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", 8),
               "'dtype' must be a string");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8),
               "'shape' must be an array");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8),
               "must be an integer");
  expect_error(make_buffer(R"({"t":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", 8),
               "unknown dtype 'Q7'");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
               "shape[0] is negative");
  expect_error(
      make_buffer(R"({"t":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
      "overflows");
  // Empty, but the other dimensions' product overflows int64 (tensors form it for strides; found by
  // tests/fuzz, fuzz_safetensors), for the reader and the writer.
  expect_error(
      make_buffer(R"({"t":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", 0),
      "overflows");
  {
    SafetensorsFile f;
    f.tensors["t"] = raw("F32", {4294967296, 0, 4294967296}, {});
    CHECK_THROWS_WITH_AS(nq::io::serialize_safetensors(f), doctest::Contains("overflows"), nq::Error);
    f.tensors["t"] = raw("F32", {0, 4294967296, 1 << 20}, {});  // 2^52 elements: fits
    const auto bytes = nq::io::serialize_safetensors(f);
    CHECK(nq::io::parse_safetensors(bytes.data(), bytes.size(), name).tensors.at("t").shape ==
          f.tensors["t"].shape);
  }
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8), "out of range");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
               "array of 2 integers");
  expect_error(make_buffer(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           12),
               "overlaps");
  expect_error(make_buffer(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                           12),
               "gap");
  expect_error(make_buffer("{" + ok_entry + "}", 12), "trailing");
  expect_error(make_buffer(R"({"__metadata__":{"eps":1e-5},)" + ok_entry + "}", 8), "'eps' must be a string");
  expect_error(make_buffer(R"({"__metadata__":[],)" + ok_entry + "}", 8), "__metadata__ must be an object");
  expect_error(make_buffer("{" + ok_entry + "," + ok_entry + "}", 8), "duplicate key 't'");
  expect_error(make_buffer(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8),
               "unexpected field 'x'");
  expect_error(make_buffer(R"({"t":[1,2]})", 8), "entry must be an object");
}
