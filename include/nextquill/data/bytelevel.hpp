#pragma once
// GPT-2's byte-level alphabet (every byte is a printable character) and its
// pre-tokenizer, the two text transforms under the BPE tokenizer (bpe.hpp).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nextquill/data/unicode.hpp"

namespace nq::data {

// ---------------------------------------------------------------------------
// GPT-2's byte <-> character alphabet (bytes_to_unicode in OpenAI's encoder.py):
// the 188 printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' map to themselves, the
// other 68 to U+0100.. in byte order. Byte-token id i is the byte kOrder[i]
// (the printable ones first), as in encoder.json.
namespace bytelevel {

struct Tables {
  std::array<char32_t, 256> cp{};         // byte -> character
  std::array<uint8_t, 256> order{};       // byte-token id -> byte
  std::array<int16_t, 324> byte_of{};     // character -> byte, -1 if none
  std::array<int16_t, 256> id_of_byte{};  // byte -> byte-token id
};

inline constexpr Tables make_tables() {
  Tables t{};
  auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  int id = 0;
  for (int b = 0; b < 256; ++b)
    if (printable(b)) t.order[size_t(id++)] = uint8_t(b);
  for (int b = 0; b < 256; ++b)
    if (!printable(b)) t.order[size_t(id++)] = uint8_t(b);
  int extra = 0;
  for (int b = 0; b < 256; ++b) t.cp[size_t(b)] = printable(b) ? char32_t(b) : char32_t(256 + extra++);
  for (auto& v : t.byte_of) v = -1;
  for (int b = 0; b < 256; ++b) t.byte_of[t.cp[size_t(b)]] = int16_t(b);
  for (int i = 0; i < 256; ++i) t.id_of_byte[t.order[size_t(i)]] = int16_t(i);
  return t;
}
inline constexpr Tables kTables = make_tables();

// The alphabet character of byte b, as UTF-8.
inline std::string byte_char(uint8_t b) {
  std::string s;
  unicode::append_utf8(s, kTables.cp[b]);
  return s;
}

// Raw bytes -> alphabet string ("\n hi" -> "ĊĠhi").
inline std::string encode(std::string_view raw) {
  std::string s;
  s.reserve(raw.size() + raw.size() / 4);
  for (unsigned char b : raw) unicode::append_utf8(s, kTables.cp[b]);
  return s;
}

// Alphabet string -> raw bytes, appended to out; false (out unspecified) when
// some character is not in the alphabet.
inline bool decode(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size();) {
    const unicode::Char c = unicode::decode_utf8(s, i);
    if (!c.valid || c.cp >= kTables.byte_of.size() || kTables.byte_of[c.cp] < 0) return false;
    out += char(kTables.byte_of[c.cp]);
    i += c.len;
  }
  return true;
}

}  // namespace bytelevel

// ---------------------------------------------------------------------------
// GPT-2 pre-tokenizer: calls emit(std::string_view piece) for each match of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// in order; the pieces concatenate to text. Alternatives are tried in that order
// at each position (leftmost-first, like the regex engines). For a whitespace
// run followed by a non-space, \s+(?!\S) backtracks by one character, which
// then starts the next piece (so " world" keeps its space).
template <typename Emit>
void gpt2_pretokenize(std::string_view text, Emit&& emit) {
  using unicode::CharClass;
  const size_t n = text.size();
  const auto* u = reinterpret_cast<const unsigned char*>(text.data());
  // Class and byte length of the character at i < n.
  auto at = [&](size_t i, CharClass& cls) -> size_t {
    if (u[i] < 0x80) {
      cls = unicode::detail::kAsciiClasses[u[i]];
      return 1;
    }
    const unicode::Char c = unicode::decode_utf8(text, i);
    cls = unicode::char_class(c);
    return c.len;
  };
  // End of the run of class `cls` starting at i.
  auto run_end = [&](size_t i, CharClass cls) {
    CharClass k;
    while (i < n) {
      const size_t len = at(i, k);
      if (k != cls) break;
      i += len;
    }
    return i;
  };
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    // 's 't 're 've 'm 'll 'd (lower case only, like the original regex)
    if (u[i] == '\'' && i + 1 < n) {
      const unsigned char c1 = u[i + 1];
      size_t len = 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        len = 2;
      } else if (i + 2 < n && ((c1 == 'r' && u[i + 2] == 'e') || (c1 == 'v' && u[i + 2] == 'e') ||
                               (c1 == 'l' && u[i + 2] == 'l'))) {
        len = 3;
      }
      if (len) {
        emit(text.substr(start, len));
        i += len;
        continue;
      }
    }
    CharClass k0;
    const size_t len0 = at(i, k0);
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' with the optional space
    if (u[i] == ' ' && i + 1 < n) {
      CharClass k1;
      const size_t len1 = at(i + 1, k1);
      if (k1 != CharClass::Space) {
        i = run_end(i + 1 + len1, k1);
        emit(text.substr(start, i - start));
        continue;
      }
    }
    if (k0 != CharClass::Space) {
      i = run_end(i + len0, k0);
      emit(text.substr(start, i - start));
      continue;
    }
    // '\s+(?!\S)' then '\s+': a whitespace run up to the end, or all of it but
    // its last character when something else follows (a 1-character run stays).
    size_t last = i, j = i + len0;
    CharClass k;
    while (j < n) {
      const size_t len = at(j, k);
      if (k != CharClass::Space) break;
      last = j;
      j += len;
    }
    i = (j < n && last > start) ? last : j;
    emit(text.substr(start, i - start));
  }
}

inline std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  gpt2_pretokenize(text, [&](std::string_view p) { out.push_back(p); });
  return out;
}

}  // namespace nq::data
