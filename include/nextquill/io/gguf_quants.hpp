#pragma once
// ggml tensor types: their block sizes, and dequantization to float32.
//
// A quantized row is a sequence of blocks; each block holds `block_elems`
// values in `block_bytes` bytes (little-endian, packed, no padding). The
// formulas below follow ggml's reference dequantizers operation by operation
// (same products, same order), so the result equals gguf-py's
// `gguf.quants.dequantize` bit for bit in fp32.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "../core/error.hpp"
#include "../cpu/parallel.hpp"

namespace nq::io::gguf {

enum class GGMLType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
};

struct TypeInfo {
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
  bool dequantizable;  // nextquill can turn it into float32
};

// Every type ggml defines today, so that files using the others still parse
// (their sizes are needed to check offsets); nullptr for an unknown id.
inline const TypeInfo* type_info(uint32_t type) {
  struct Entry {
    uint32_t id;
    TypeInfo info;
  };
  static const Entry table[] = {
      {0, {"F32", 1, 4, true}},          {1, {"F16", 1, 2, true}},          {2, {"Q4_0", 32, 18, true}},
      {3, {"Q4_1", 32, 20, true}},       {6, {"Q5_0", 32, 22, true}},       {7, {"Q5_1", 32, 24, true}},
      {8, {"Q8_0", 32, 34, true}},       {9, {"Q8_1", 32, 36, false}},      {10, {"Q2_K", 256, 84, true}},
      {11, {"Q3_K", 256, 110, true}},    {12, {"Q4_K", 256, 144, true}},    {13, {"Q5_K", 256, 176, true}},
      {14, {"Q6_K", 256, 210, true}},    {15, {"Q8_K", 256, 292, false}},   {16, {"IQ2_XXS", 256, 66, false}},
      {17, {"IQ2_XS", 256, 74, false}},  {18, {"IQ3_XXS", 256, 98, false}}, {19, {"IQ1_S", 256, 50, false}},
      {20, {"IQ4_NL", 32, 18, false}},   {21, {"IQ3_S", 256, 110, false}},  {22, {"IQ2_S", 256, 82, false}},
      {23, {"IQ4_XS", 256, 136, false}}, {24, {"I8", 1, 1, false}},         {25, {"I16", 1, 2, false}},
      {26, {"I32", 1, 4, false}},        {27, {"I64", 1, 8, false}},        {28, {"F64", 1, 8, false}},
      {29, {"IQ1_M", 256, 56, false}},   {30, {"BF16", 1, 2, true}},        {34, {"TQ1_0", 256, 54, false}},
      {35, {"TQ2_0", 256, 66, false}},   {39, {"MXFP4", 32, 17, false}},    {40, {"NVFP4", 64, 36, false}},
      {41, {"Q1_0", 128, 18, false}},
  };
  for (const Entry& e : table)
    if (e.id == type) return &e.info;
  return nullptr;
}

inline std::string type_name(uint32_t type) {
  const TypeInfo* t = type_info(type);
  return t ? std::string(t->name) : "unknown type " + std::to_string(type);
}

namespace quant {

// IEEE half to float, exact (subnormals, infinities and NaN included).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline float rdh(const uint8_t* p) { return fp16_to_fp32(rd16(p)); }

// The 6-bit scale and min of sub-block j in the 12 packed bytes of Q4_K/Q5_K.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = uint8_t((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// One block each: src points at the block, y receives block_elems floats.
inline void q4_0(const uint8_t* b, float* y) {  // d, qs[16]
  const float d = rdh(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = float((qs[j] & 0xf) - 8) * d;
    y[j + 16] = float((qs[j] >> 4) - 8) * d;
  }
}
inline void q4_1(const uint8_t* b, float* y) {  // d, m, qs[16]
  const float d = rdh(b), m = rdh(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(qs[j] & 0xf) * d + m;
    y[j + 16] = float(qs[j] >> 4) * d + m;
  }
}
inline void q5_0(const uint8_t* b, float* y) {  // d, qh (u32), qs[16]
  const float d = rdh(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int hi0 = int((qh >> j) << 4) & 0x10, hi1 = int(qh >> (j + 12)) & 0x10;
    y[j] = float(((qs[j] & 0xf) | hi0) - 16) * d;
    y[j + 16] = float(((qs[j] >> 4) | hi1) - 16) * d;
  }
}
inline void q5_1(const uint8_t* b, float* y) {  // d, m, qh (u32), qs[16]
  const float d = rdh(b), m = rdh(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int hi0 = int((qh >> j) << 4) & 0x10, hi1 = int(qh >> (j + 12)) & 0x10;
    y[j] = float((qs[j] & 0xf) | hi0) * d + m;
    y[j + 16] = float((qs[j] >> 4) | hi1) * d + m;
  }
}
inline void q8_0(const uint8_t* b, float* y) {  // d, qs[32] (int8)
  const float d = rdh(b);
  for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
}
inline void q2_k(const uint8_t* b, float* y) {  // scales[16], qs[64], d, dmin
  const uint8_t* sc = b;
  const uint8_t* q = b + 16;
  const float d = rdh(b + 80), dmin = rdh(b + 82);
  int is = 0;
  for (int n = 0; n < 256; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t s = sc[is++];
        const float dl = d * float(s & 0xf), ml = dmin * float(s >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}
inline void q3_k(const uint8_t* b, float* y) {  // hmask[32], qs[64], scales[12], d
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const float d = rdh(b + 108);
  // Sixteen 6-bit scales: low 4 bits in bytes 0..7, high 2 bits in bytes 8..11.
  int8_t scales[16];
  const uint8_t* s = b + 96;
  for (int i = 0; i < 16; ++i) {
    const int lo = i < 8 ? (s[i] & 0xf) : (s[i - 8] >> 4);
    const int hi = (s[8 + (i % 4)] >> (2 * (i / 4))) & 3;
    scales[i] = int8_t((lo | (hi << 4)) - 32);
  }
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d * float(scales[is++]);
        for (int l = 16 * half; l < 16 * half + 16; ++l)
          *y++ = dl * float(int((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      }
      m = uint8_t(m << 1);
    }
    q += 32;
  }
}
inline void q4_k(const uint8_t* b, float* y) {  // d, dmin, scales[12], qs[128]
  const float d = rdh(b), dmin = rdh(b + 2);
  const uint8_t* sc = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0; j < 8; j += 2) {
    uint8_t s0, m0, s1, m1;
    scale_min_k4(j, sc, s0, m0);
    scale_min_k4(j + 1, sc, s1, m1);
    const float d1 = d * float(s0), mm1 = dmin * float(m0);
    const float d2 = d * float(s1), mm2 = dmin * float(m1);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xf) - mm1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - mm2;
    q += 32;
  }
}
inline void q5_k(const uint8_t* b, float* y) {  // d, dmin, scales[12], qh[32], qs[128]
  const float d = rdh(b), dmin = rdh(b + 2);
  const uint8_t* sc = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < 8; j += 2) {
    uint8_t s0, m0, s1, m1;
    scale_min_k4(j, sc, s0, m0);
    scale_min_k4(j + 1, sc, s1, m1);
    const float d1 = d * float(s0), mm1 = dmin * float(m0);
    const float d2 = d * float(s1), mm2 = dmin * float(m1);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xf) + ((qh[l] & u1) ? 16 : 0)) - mm1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - mm2;
    ql += 32;
    u1 = uint8_t(u1 << 2);
    u2 = uint8_t(u2 << 2);
  }
}
inline void q6_k(const uint8_t* b, float* y) {  // ql[128], qh[64], scales[16] (int8), d
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = rdh(b + 208);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is + 0]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

inline void row(GGMLType t, const uint8_t* src, float* y, int64_t n) {
  auto blocks = [&](auto fn, int64_t elems, int64_t bytes) {
    for (int64_t i = 0; i < n / elems; ++i) fn(src + i * bytes, y + i * elems);
  };
  switch (t) {
    case GGMLType::F32:
      std::memcpy(y, src, size_t(n) * 4);
      break;
    case GGMLType::F16:
      for (int64_t i = 0; i < n; ++i) y[i] = rdh(src + 2 * i);
      break;
    case GGMLType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t bits = uint32_t(rd16(src + 2 * i)) << 16;
        std::memcpy(y + i, &bits, 4);
      }
      break;
    case GGMLType::Q4_0:
      blocks(q4_0, 32, 18);
      break;
    case GGMLType::Q4_1:
      blocks(q4_1, 32, 20);
      break;
    case GGMLType::Q5_0:
      blocks(q5_0, 32, 22);
      break;
    case GGMLType::Q5_1:
      blocks(q5_1, 32, 24);
      break;
    case GGMLType::Q8_0:
      blocks(q8_0, 32, 34);
      break;
    case GGMLType::Q2_K:
      blocks(q2_k, 256, 84);
      break;
    case GGMLType::Q3_K:
      blocks(q3_k, 256, 110);
      break;
    case GGMLType::Q4_K:
      blocks(q4_k, 256, 144);
      break;
    case GGMLType::Q5_K:
      blocks(q5_k, 256, 176);
      break;
    case GGMLType::Q6_K:
      blocks(q6_k, 256, 210);
      break;
    default:
      fail("gguf: cannot dequantize ggml type ", type_name(uint32_t(t)));
  }
}

}  // namespace quant

// `rows` rows of `row_len` values of `type` (row_len a multiple of the block)
// from src into dst, in parallel over rows.
inline void dequantize(uint32_t type, const uint8_t* src, float* dst, int64_t rows, int64_t row_len) {
  const TypeInfo* ti = type_info(type);
  NQ_CHECK(ti && ti->dequantizable, "gguf: cannot dequantize ", type_name(type));
  NQ_CHECK(row_len % ti->block_elems == 0, "gguf: a row of ", row_len, " values is not a multiple of ",
           ti->name, "'s block of ", ti->block_elems);
  const int64_t row_bytes = row_len / ti->block_elems * ti->block_bytes;
  const auto t = GGMLType(type);
  // About 64 K values per task: large enough to amortise the fork.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(row_len, 1));
  cpu::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) quant::row(t, src + r * row_bytes, dst + r * row_len, row_len);
  });
}

}  // namespace nq::io::gguf
