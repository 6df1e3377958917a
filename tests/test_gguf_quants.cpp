// Dequantization of every ggml type nextquill reads, bit for bit against
// gguf-py's `gguf.quants.dequantize`, and the reader on files gguf-py wrote
// (tools/make_gguf_fixtures.py).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "nextquill/io/gguf.hpp"

namespace gg = nq::io::gguf;

namespace {
const std::string kDir = std::string(NQ_TEST_DATA_DIR) + "/gguf/";
}

TEST_CASE("gguf quants: every type equals gguf-py's dequantize bit for bit") {
  const gg::File f = gg::File::open(kDir + "quants.gguf");
  int checked = 0;
  for (const char* name : {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                           "Q4_K", "Q5_K", "Q6_K"}) {
    CAPTURE(name);
    const gg::TensorInfo* q = f.find_tensor(std::string("q.") + name);
    const gg::TensorInfo* r = f.find_tensor(std::string("ref.") + name);
    REQUIRE(q);
    REQUIRE(r);
    CHECK(gg::type_name(q->type) == name);
    CHECK(q->shape() == r->shape());
    const std::vector<float> got = f.dequantize(*q), want = f.dequantize(*r);
    REQUIRE(got.size() == want.size());
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += std::memcmp(&got[i], &want[i], 4) != 0;
    CHECK(differ == 0);
    ++checked;
  }
  CHECK(checked == 13);
}

TEST_CASE("gguf quants: metadata of every value type written by gguf-py") {
  const gg::File f = gg::File::open(kDir + "quants.gguf");
  CHECK(f.version() == 3);
  CHECK(f.get_string("general.architecture") == "test");
  CHECK(f.get_int("test.u8") == 200);
  CHECK(f.get_int("test.i8") == -100);
  CHECK(f.get_int("test.u16") == 60000);
  CHECK(f.get_int("test.i16") == -30000);
  CHECK(f.get_int("test.u32") == 4000000000ll);
  CHECK(f.get_int("test.i32") == -2000000000ll);
  CHECK(f.get_float("test.f32") == 0.25);
  CHECK(f.get_bool("test.bool"));
  CHECK(f.get_string("test.string") == "h\xc3\xa9llo");
  CHECK(f.get_int("test.u64") == (1ll << 40));
  CHECK(f.get_int("test.i64") == -(1ll << 40));
  CHECK(f.get_float("test.f64") == 0.1);
  CHECK(f.get_ints("test.ints") == std::vector<int64_t>{1, -2, 3});
  CHECK(f.get_strings("test.strings") == std::vector<std::string>{"a", "", "ccc"});
  CHECK(f.at("test.floats").floats == std::vector<double>{0.5, -1.5});
  CHECK(f.at("test.u8").type == gg::ValueType::U8);
  CHECK(f.at("test.ints").elem == gg::ValueType::I32);
}

TEST_CASE("gguf quants: general.alignment 64 from gguf-py") {
  const gg::File f = gg::File::open(kDir + "aligned64.gguf");
  CHECK(f.alignment() == 64);
  CHECK(f.data_offset() % 64 == 0);
  for (const auto& t : f.tensors()) CHECK(t.offset % 64 == 0);
  CHECK(f.dequantize(*f.find_tensor("a")) == std::vector<float>{0, 1, 2});
  const gg::TensorInfo& b = *f.find_tensor("b");
  CHECK(b.shape() == std::vector<int64_t>{2, 5});
  CHECK(f.dequantize(b) == std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("gguf quants: the type table") {
  CHECK(gg::type_info(12)->block_elems == 256);
  CHECK(gg::type_info(12)->block_bytes == 144);
  CHECK(gg::type_info(8)->block_bytes == 34);
  CHECK(gg::type_info(99) == nullptr);
  CHECK(gg::type_name(99) == "unknown type 99");
  CHECK(!gg::type_info(20)->dequantizable);  // IQ4_NL parses, is not dequantized
  CHECK(gg::quant::fp16_to_fp32(0x3c00) == 1.0f);
  CHECK(gg::quant::fp16_to_fp32(0x0001) == 5.9604644775390625e-08f);  // smallest subnormal
  CHECK(gg::quant::fp16_to_fp32(0xfbff) == -65504.0f);
}
