#pragma once
// Python string semantics the metric tokenizers depend on: code points,
// str.lower(), str.isspace(), str.split(), str.rstrip(), and the character
// classes of the regular-expression engines the reference packages use.
//
// Text is UTF-8. A byte that does not start well-formed UTF-8 becomes the code
// point U+DC00 + byte (Python's "surrogateescape"), so every byte string has a
// code-point form that encodes back to the same bytes.
//
// Tables (text_tables.hpp) come from enumerating every code point in Python
// 3.11 (Unicode 14.0) and the `regex` module; see tools/make_metric_fixtures.py.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nextquill/data/unicode.hpp"
#include "nextquill/eval/text_tables.hpp"

namespace nq::eval::text {

// UTF-8 -> code points (invalid bytes -> U+DC00 + byte).
inline std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const data::unicode::Char c = data::unicode::decode_utf8(s, i);
    out += c.valid ? c.cp : char32_t(0xDC00 + c.cp);
    i += c.len;
  }
  return out;
}

// Appends the UTF-8 form of cp (U+DC80..U+DCFF -> the raw byte).
inline void append(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out += char(cp - 0xDC00);
  } else if (cp >= 0xD800 && cp <= 0xDFFF) {
    data::unicode::append_utf8(out, 0xFFFD);  // other lone surrogates never arise from decode()
  } else {
    data::unicode::append_utf8(out, cp);
  }
}

inline std::string encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append(out, c);
  return out;
}

// Property bits (tables::kRxWord, ...) of a code point.
inline uint8_t props(char32_t c) {
  using tables::kNumPropRuns;
  using tables::kProps;
  if (c >= 0x110000) return 0;
  size_t lo = 0, hi = kNumPropRuns;  // last run with first <= c
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    if (kProps[mid].first <= c)
      lo = mid;
    else
      hi = mid;
  }
  return kProps[lo].props;
}

inline bool rx_word(char32_t c) { return props(c) & tables::kRxWord; }    // `regex` \w
inline bool rx_digit(char32_t c) { return props(c) & tables::kRxDigit; }  // `regex` \d
inline bool re_word(char32_t c) { return props(c) & tables::kReWord; }    // `re` \w

// Unicode White_Space: \s of the `regex` module.
inline bool rx_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// str.isspace() (also \s of stdlib `re`): White_Space plus U+001C..U+001F.
inline bool py_space(char32_t c) { return rx_space(c) || (c >= 0x1C && c <= 0x1F); }

// str.lower() of one code point out of context (U+0130 gives its first part, 'i').
inline char32_t lower_simple(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c == 0x130) return U'i';
  using tables::kLower;
  using tables::kNumLowerRuns;
  size_t lo = 0, hi = kNumLowerRuns;  // first run with last >= c
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (kLower[mid].last < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < kNumLowerRuns && kLower[lo].first <= c && (c - kLower[lo].first) % kLower[lo].stride == 0)
    return char32_t(int64_t(c) + kLower[lo].delta);
  return c;
}

// str.lower(): the full mapping (U+0130 -> "i\u0307") with the Final_Sigma rule
// (U+03A3 -> U+03C2 after a cased letter, over case-ignorables, and not before one).
inline std::u32string py_lower(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size() + 2);
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x130) {
      out += U'i';
      out += char32_t(0x307);
    } else if (c == 0x3A3) {
      bool final_sigma = false;
      size_t j = i;
      while (j > 0 && (props(s[j - 1]) & tables::kCaseIgnorable)) --j;
      if (j > 0 && (props(s[j - 1]) & tables::kCased)) {
        size_t k = i + 1;
        while (k < s.size() && (props(s[k]) & tables::kCaseIgnorable)) ++k;
        final_sigma = k == s.size() || !(props(s[k]) & tables::kCased);
      }
      out += final_sigma ? char32_t(0x3C2) : char32_t(0x3C3);
    } else {
      out += lower_simple(c);
    }
  }
  return out;
}

inline std::string py_lower(std::string_view s) {
  bool ascii = true;
  for (char ch : s) ascii = ascii && static_cast<unsigned char>(ch) < 0x80;
  if (ascii) {
    std::string out(s);
    for (char& ch : out)
      if (ch >= 'A' && ch <= 'Z') ch = char(ch + 32);
    return out;
  }
  return encode(py_lower(decode(s)));
}

// str.split() with no argument: runs of str.isspace() characters separate, and
// leading/trailing ones are dropped. The views point into s.
inline std::vector<std::string_view> py_split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = std::string_view::npos;
  for (size_t i = 0; i < s.size();) {
    const data::unicode::Char c = data::unicode::decode_utf8(s, i);
    const bool space = c.valid && py_space(c.cp);
    if (space && start != std::string_view::npos) {
      out.push_back(s.substr(start, i - start));
      start = std::string_view::npos;
    } else if (!space && start == std::string_view::npos) {
      start = i;
    }
    i += c.len;
  }
  if (start != std::string_view::npos) out.push_back(s.substr(start));
  return out;
}

// str.rstrip(): drops trailing str.isspace() characters.
inline std::string_view py_rstrip(std::string_view s) {
  size_t end = s.size();
  size_t i = 0, last_keep = 0;
  while (i < end) {
    const data::unicode::Char c = data::unicode::decode_utf8(s, i);
    i += c.len;
    if (!(c.valid && py_space(c.cp))) last_keep = i;
  }
  return s.substr(0, last_keep);
}

}  // namespace nq::eval::text
