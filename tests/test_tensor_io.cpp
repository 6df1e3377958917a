// Tensor <-> safetensors conversion (F32, F64, F16, BF16, I64) and the check
// in the other direction: a file written by nextquill is committed
// (tests/fixtures/nq_written/tensors.safetensors) and verified by Python's
// safetensors + torch (tools/check_nq_written.py); this test asserts that
// nextquill still writes exactly those bytes.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nextquill/nextquill.hpp>

#include "test_util.hpp"

namespace {

// The tensors of the committed file; tools/check_nq_written.py rebuilds the
// same values in torch and compares.

std::map<std::string, nq::io::RawTensor> reference_tensors() {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          -2.5f,
                          3.14159265f,
                          1e-3f,
                          65504.0f,
                          1e-8f,
                          -1e20f,
                          0.33333334f,
                          std::numeric_limits<float>::infinity(),
                          6.1e-5f};
  nq::Tensor f = nq::from_vector(v, {3, 4});
  std::map<std::string, nq::io::RawTensor> m;
  m["f32"] = nq::io::to_raw(f, "F32");
  m["f64"] = nq::io::to_raw(f.to(nq::kFloat64), "F64");
  m["f16"] = nq::io::to_raw(f, "F16");
  m["bf16"] = nq::io::to_raw(f, "BF16");
  m["i64"] = nq::io::to_raw(nq::from_vector(std::vector<int64_t>{-3, 0, 7, int64_t(1) << 40}, {2, 2}));
  m["scalar"] = nq::io::to_raw(nq::scalar_tensor(2.5), "F32");
  return m;
}

}  // namespace

TEST_CASE("tensor_io: F16/BF16 round to nearest even, keep inf/nan, and read back") {
  const std::vector<float> v = {1.0f,
                                1.0009765625f /* 1 + 2^-10: exact in f16 */,
                                1.00048828125f /* tie */,
                                65519.0f,
                                65520.0f /* rounds to inf */,
                                5.96e-8f /* smallest subnormal */,
                                -0.0f,
                                std::numeric_limits<float>::quiet_NaN()};
  nq::Tensor t = nq::from_vector(v, {8});
  auto h = nq::io::as_f32(nq::io::to_raw(t, "F16"));
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == 1.0009765625f);
  CHECK(h[2] == 1.0f);  // tie to even
  CHECK(h[3] == 65504.0f);
  CHECK(std::isinf(h[4]));
  CHECK(h[5] == doctest::Approx(5.96e-8).epsilon(0.01));
  CHECK(std::signbit(h[6]));
  CHECK(std::isnan(h[7]));
  auto b = nq::io::as_f32(nq::io::to_raw(t, "BF16"));
  CHECK(b[0] == 1.0f);
  CHECK(b[1] == 1.0f);  // below bf16 resolution
  CHECK(std::isnan(b[7]));
  // from_raw converts any float dtype to the requested one.
  nq::Tensor back = nq::io::from_raw(nq::io::to_raw(t, "F64"), nq::kFloat32);
  CHECK(back.dtype() == nq::kFloat32);
  CHECK(back.to_vector<float>()[1] == v[1]);
}

TEST_CASE("tensor_io: save_tensors/load_tensors round trip with metadata") {
  const std::string path = "nq_test_tensor_io.safetensors";
  nq::Tensor a = nq::randn({4, 5}), ids = nq::from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  nq::io::save_tensors(path, {{"a", a}, {"ids", ids}}, {{"note", "hello"}});
  auto l = nq::io::load_tensors(path);
  CHECK(l.metadata.at("note") == "hello");
  CHECK(l.tensors.at("a").to_vector<float>() == a.to_vector<float>());
  CHECK(l.tensors.at("ids").to_vector<int64_t>() == ids.to_vector<int64_t>());
  CHECK(nqtest::contains(nqtest::error_of([&] {
                           nq::io::save_tensors(path, {{"a", a}, {"a", a}});
                         }),
                         "duplicate tensor name 'a'"));
  std::filesystem::remove(path);
}

TEST_CASE("tensor_io: nextquill writes exactly the committed file Python's safetensors verified") {
  nq::io::SafetensorsFile f;
  f.metadata = {{"writer", "nextquill"}, {"purpose", "checked by tools/check_nq_written.py"}};
  f.tensors = reference_tensors();
  const std::vector<uint8_t> now = nq::io::serialize_safetensors(f);
  const std::string path = std::string(NQ_TEST_DATA_DIR) + "/nq_written/tensors.safetensors";
  if (std::getenv("NQ_WRITE_FIXTURES")) nq::io::write_safetensors(path, f);
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "missing ", path, " (regenerate with NQ_WRITE_FIXTURES=1)");
  std::vector<uint8_t> committed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(committed == now);
}
