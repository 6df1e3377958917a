#pragma once
// Pre-tokenizers of byte-level BPE models, named as llama.cpp names them in
// GGUF's `tokenizer.ggml.pre`. Each splits text into pieces that BPE then
// encodes separately; the pieces concatenate back to the text.
//
//   gpt2       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm     every \p{N} character on its own (HF Digits(individual_digits)),
//              then gpt2 on the rest
//   llama-bpe  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//              ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+        (Llama 3)
//   qwen2      the same with \p{N} one at a time                        (Qwen2/2.5)
//
// Hand-written scanners (no regex engine): at each position the alternatives
// are tried in order, leftmost-first, with the backtracking the regexes imply.
// Malformed UTF-8 bytes are characters of class Other (HF never sees them:
// its input is a valid string).
#include <string>
#include <string_view>

#include "nextquill/core/error.hpp"
#include "nextquill/data/bytelevel.hpp"
#include "nextquill/data/unicode.hpp"

namespace nq::data {

enum class PreTokenizer { GPT2, SmolLM, Llama3, Qwen2 };

inline const char* pretokenizer_name(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::GPT2:
      return "gpt2";
    case PreTokenizer::SmolLM:
      return "smollm";
    case PreTokenizer::Llama3:
      return "llama-bpe";
    case PreTokenizer::Qwen2:
      return "qwen2";
  }
  return "gpt2";
}

// llama.cpp's names, plus aliases for models whose GGUF files use another
// name for the same regex. Unknown names are an error naming `where`.
inline PreTokenizer pretokenizer_from_name(std::string_view name, const std::string& where) {
  if (name == "gpt2" || name == "default" || name.empty()) return PreTokenizer::GPT2;
  if (name == "smollm") return PreTokenizer::SmolLM;
  if (name == "llama-bpe" || name == "llama3") return PreTokenizer::Llama3;
  if (name == "qwen2") return PreTokenizer::Qwen2;
  fail("BPETokenizer", where, ": pre-tokenizer '", std::string(name),
       "' is not supported (gpt2, smollm, llama-bpe, qwen2)");
}

namespace detail {

// Llama 3 / Qwen2: `digits_max` is 3 for \p{N}{1,3}, 1 for \p{N}.
template <typename Emit>
void llama3_pretokenize(std::string_view text, size_t digits_max, Emit&& emit) {
  using unicode::CharClass;
  const size_t n = text.size();
  const auto* u = reinterpret_cast<const unsigned char*>(text.data());
  struct C {
    CharClass cls;
    size_t len;
    char32_t cp;
  };
  auto at = [&](size_t i) -> C {
    if (u[i] < 0x80) return {unicode::detail::kAsciiClasses[u[i]], 1, u[i]};
    const unicode::Char c = unicode::decode_utf8(text, i);
    return {unicode::char_class(c), c.len, c.valid ? c.cp : char32_t(0xFFFFFFFF)};
  };
  auto is_crlf = [](char32_t cp) { return cp == '\r' || cp == '\n'; };
  auto letters_end = [&](size_t i) {
    while (i < n) {
      const C c = at(i);
      if (c.cls != CharClass::Letter) break;
      i += c.len;
    }
    return i;
  };
  // A case-insensitive ASCII letter; 's' also matches U+017F (long s), which
  // case-folds to it.
  auto ci = [&](size_t i, char lower, size_t& len) {
    if (i >= n) return false;
    if ((u[i] | 0x20) == lower && u[i] < 0x80) {
      len = 1;
      return true;
    }
    if (lower == 's' && i + 1 < n && u[i] == 0xC5 && u[i + 1] == 0xBF) {
      len = 2;
      return true;
    }
    return false;
  };
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (u[i] == '\'') {
      size_t l1 = 0, l2 = 0, len = 0;
      if (ci(i + 1, 's', l1) || ci(i + 1, 't', l1) || ci(i + 1, 'm', l1) || ci(i + 1, 'd', l1))
        len = 1 + l1;
      else if ((ci(i + 1, 'r', l1) && ci(i + 1 + l1, 'e', l2)) ||
               (ci(i + 1, 'v', l1) && ci(i + 1 + l1, 'e', l2)) ||
               (ci(i + 1, 'l', l1) && ci(i + 1 + l1, 'l', l2)))
        len = 1 + l1 + l2;
      if (len) {
        emit(text.substr(start, len));
        i += len;
        continue;
      }
    }
    const C c0 = at(i);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c0.cls == CharClass::Letter) {
      i = letters_end(i + c0.len);
      emit(text.substr(start, i - start));
      continue;
    }
    if (c0.cls != CharClass::Number && !is_crlf(c0.cp) && i + c0.len < n &&
        at(i + c0.len).cls == CharClass::Letter) {
      i = letters_end(i + c0.len);
      emit(text.substr(start, i - start));
      continue;
    }
    // \p{N}{1,digits_max}
    if (c0.cls == CharClass::Number) {
      i += c0.len;
      for (size_t k = 1; k < digits_max && i < n; ++k) {
        const C c = at(i);
        if (c.cls != CharClass::Number) break;
        i += c.len;
      }
      emit(text.substr(start, i - start));
      continue;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    {
      size_t j = i;
      if (u[j] == ' ' && j + 1 < n) ++j;
      size_t k = j;
      while (k < n) {
        const C c = at(k);
        if (c.cls != CharClass::Other) break;
        k += c.len;
      }
      if (k > j) {
        while (k < n && (u[k] == '\r' || u[k] == '\n')) ++k;
        emit(text.substr(start, k - start));
        i = k;
        continue;
      }
    }
    // Here c0 is whitespace. W = the whitespace run from i.
    size_t w_end = i, last_start = i, last_crlf_end = 0;
    while (w_end < n) {
      const C c = at(w_end);
      if (c.cls != CharClass::Space) break;
      last_start = w_end;
      if (is_crlf(c.cp)) last_crlf_end = w_end + c.len;
      w_end += c.len;
    }
    // \s*[\r\n]+: up to the last newline of the run.
    if (last_crlf_end > 0) {
      i = last_crlf_end;
    } else if (w_end == n || last_start == start) {
      // \s+(?!\S) to the end of the text; or \s+ for a single space before a non-space
      i = w_end;
    } else {
      // \s+(?!\S): the run but its last character, which then starts the next piece
      i = last_start;
    }
    emit(text.substr(start, i - start));
  }
}

}  // namespace detail

// Calls emit(std::string_view piece) for each piece of text, in order.
template <typename Emit>
void pretokenize(PreTokenizer kind, std::string_view text, Emit&& emit) {
  switch (kind) {
    case PreTokenizer::GPT2:
      gpt2_pretokenize(text, emit);
      return;
    case PreTokenizer::Llama3:
      detail::llama3_pretokenize(text, 3, emit);
      return;
    case PreTokenizer::Qwen2:
      detail::llama3_pretokenize(text, 1, emit);
      return;
    case PreTokenizer::SmolLM: {
      size_t seg = 0;
      for (size_t i = 0; i < text.size();) {
        const unicode::Char c = unicode::decode_utf8(text, i);
        if (unicode::char_class(c) != unicode::CharClass::Number) {
          i += c.len;
          continue;
        }
        if (i > seg) gpt2_pretokenize(text.substr(seg, i - seg), emit);
        emit(text.substr(i, c.len));
        i += c.len;
        seg = i;
      }
      if (seg < text.size()) gpt2_pretokenize(text.substr(seg), emit);
      return;
    }
  }
}

}  // namespace nq::data
