#pragma once
// nltk's word tokenizer on one line: nltk.tokenize.word_tokenize(text,
// preserve_line=True), i.e. NLTKWordTokenizer().tokenize(text) (the improved
// Penn Treebank tokenizer), as in nltk 3.10.
//
// Without preserve_line, word_tokenize first splits sentences with the Punkt
// model from nltk_data (punkt_tab), which is trained data this project does not
// ship; the two agree on every single-sentence line and differ only on a
// sentence-final period inside a line ("Fix x. Add y": Punkt also splits "x.").
//
// The rules, applied in order as regex substitutions over the whole string
// (each scans left to right, matches do not overlap): opening quotes
// (« “ ‘ „ `+, a leading ", then " or '' after ( [ { < or a space become ``,
// a quote-like ' before a word is split off), punctuation (the final period,
// : and , before a non-digit or at the end, .., ; @ # $ % &, figure and em
// dashes, ? !, ' before a space, *), brackets, "--", then closing quotes (» ” ’,
// '' and " become ''), whitespace runs, clitics ('s 'm 'd ' 'll 're 've n't), the
// MacIntyre contractions (cannot, d'ye, gimme, gonna, gotta, lemme, more'n,
// wanna, 'tis, 'twas) and a final whitespace split. The character classes are
// those of the engines nltk uses: the `regex` module for most patterns, stdlib
// `re` for the contractions (text_tables.hpp).
#include <string>
#include <string_view>
#include <vector>

#include "nextquill/eval/text.hpp"

namespace nq::eval {

namespace detail::nltk {

using U = std::u32string;

inline bool in(char32_t c, std::u32string_view set) { return set.find(c) != std::u32string_view::npos; }

// " c " around every character in set.
inline U pad_chars(const U& s, std::u32string_view set) {
  U o;
  o.reserve(s.size() + 8);
  for (char32_t c : s) {
    if (in(c, set)) {
      o += U' ';
      o += c;
      o += U' ';
    } else {
      o += c;
    }
  }
  return o;
}

// Replaces every non-overlapping occurrence of lit (left to right) with rep.
inline U replace_lit(const U& s, std::u32string_view lit, std::u32string_view rep) {
  U o;
  o.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, lit.size(), lit) == 0) {
      o += rep;
      i += lit.size();
    } else {
      o += s[i++];
    }
  }
  return o;
}

// Case-insensitive match of one pattern letter (lower-case ASCII) in `re`
// (stdlib: I matches i, İ, ı; s matches ſ; k matches K) or `regex` (no ı).
inline bool ci_eq(char32_t c, char32_t letter, bool stdlib_re) {
  if (c == letter || c == letter - 32) return true;
  if (letter == U'i') return c == 0x130 || (stdlib_re && c == 0x131);
  if (letter == U's') return c == 0x17F;
  if (letter == U'k') return c == 0x212A;
  return false;
}

// Case-insensitive match of pattern text (lower-case ASCII and ') at s[i].
inline bool ci_match(const U& s, size_t i, std::u32string_view pat, bool stdlib_re) {
  if (i + pat.size() > s.size()) return false;
  for (size_t k = 0; k < pat.size(); ++k) {
    const char32_t p = pat[k];
    if (p >= U'a' && p <= U'z') {
      if (!ci_eq(s[i + k], p, stdlib_re)) return false;
    } else if (s[i + k] != p) {
      return false;
    }
  }
  return true;
}

// STARTING_QUOTES
inline U starting_quotes(const U& s0) {
  // ([«“‘„]|[`]+) -> " \1 "
  U s;
  s.reserve(s0.size() + 8);
  for (size_t i = 0; i < s0.size();) {
    const char32_t c = s0[i];
    if (c == 0xAB || c == 0x201C || c == 0x2018 || c == 0x201E) {
      s += U' ';
      s += c;
      s += U' ';
      ++i;
    } else if (c == U'`') {
      size_t j = i;
      while (j < s0.size() && s0[j] == U'`') ++j;
      s += U' ';
      s.append(s0, i, j - i);
      s += U' ';
      i = j;
    } else {
      s += c;
      ++i;
    }
  }
  // ^\" -> ``
  if (!s.empty() && s[0] == U'"') s = U"``" + s.substr(1);
  // (``) -> " \1 "
  s = replace_lit(s, U"``", U" `` ");
  // ([ \(\[{<])(\"|\'{2}) -> "\1 `` "
  {
    U o;
    o.reserve(s.size() + 8);
    for (size_t i = 0; i < s.size();) {
      const char32_t c = s[i];
      if (in(c, U" ([{<") && i + 1 < s.size()) {
        if (s[i + 1] == U'"') {
          o += c;
          o += U" `` ";
          i += 2;
          continue;
        }
        if (i + 2 < s.size() && s[i + 1] == U'\'' && s[i + 2] == U'\'') {
          o += c;
          o += U" `` ";
          i += 3;
          continue;
        }
      }
      o += c;
      ++i;
    }
    s.swap(o);
  }
  // (?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w) -> "\1 "
  {
    U o;
    o.reserve(s.size() + 8);
    const size_t n = s.size();
    for (size_t i = 0; i < n; ++i) {
      o += s[i];
      if (s[i] != U'\'') continue;
      if (i > 0 && text::rx_word(s[i - 1])) continue;
      if (i + 1 >= n || !text::rx_word(s[i + 1])) continue;
      bool clitic = false;
      for (std::u32string_view alt : {U"re", U"ve", U"ll", U"m", U"t", U"s", U"d", U"n"}) {
        const size_t end = i + 1 + alt.size();
        if (ci_match(s, i + 1, alt, /*stdlib_re=*/false) && (end == n || !text::rx_word(s[end]))) {
          clitic = true;
          break;
        }
      }
      if (!clitic) o += U' ';
    }
    s.swap(o);
  }
  return s;
}

// Finds the final-period match of ([^\.])(\.)(CLASS*)\s*$; returns the index of
// the period (or npos) and the end of the CLASS run.
inline size_t final_period(const U& s, std::u32string_view cls, size_t& run_end) {
  const size_t d = s.rfind(U'.');
  if (d == U::npos || d == 0 || s[d - 1] == U'.') return U::npos;
  size_t p = d + 1;
  while (p < s.size() && in(s[p], cls)) ++p;
  size_t q = p;
  while (q < s.size() && text::rx_space(s[q])) ++q;
  if (q != s.size()) return U::npos;
  run_end = p;
  return d;
}

// PUNCTUATION
inline U punctuation(U s) {
  // ([^\.])(\.)([\]\)}>"\'»”’ ]*+)\s*$ -> "\1 \2 \3 "
  {
    size_t run_end = 0;
    const size_t d = final_period(s, U"])}>\"'\u00BB\u201D\u2019 ", run_end);
    if (d != U::npos) {
      U o = s.substr(0, d);
      o += U" . ";
      o.append(s, d + 1, run_end - d - 1);
      o += U' ';
      s.swap(o);
    }
  }
  // ([:,])([^\d]) -> " \1 \2"
  {
    U o;
    o.reserve(s.size() + 8);
    for (size_t i = 0; i < s.size();) {
      if ((s[i] == U':' || s[i] == U',') && i + 1 < s.size() && !text::rx_digit(s[i + 1])) {
        o += U' ';
        o += s[i];
        o += U' ';
        o += s[i + 1];
        i += 2;
      } else {
        o += s[i++];
      }
    }
    s.swap(o);
  }
  // ([:,])$ -> " \1 "  ($: at the end or before a final \n)
  {
    const size_t n = s.size();
    size_t at = U::npos;
    if (n >= 1 && (s[n - 1] == U':' || s[n - 1] == U','))
      at = n - 1;
    else if (n >= 2 && s[n - 1] == U'\n' && (s[n - 2] == U':' || s[n - 2] == U','))
      at = n - 2;
    if (at != U::npos) {
      U o = s.substr(0, at);
      o += U' ';
      o += s[at];
      o += U' ';
      o.append(s, at + 1, U::npos);
      s.swap(o);
    }
  }
  // \.{2,} -> " \g<0> "
  {
    U o;
    o.reserve(s.size() + 8);
    for (size_t i = 0; i < s.size();) {
      if (s[i] == U'.' && i + 1 < s.size() && s[i + 1] == U'.') {
        size_t j = i;
        while (j < s.size() && s[j] == U'.') ++j;
        o += U' ';
        o.append(s, i, j - i);
        o += U' ';
        i = j;
      } else {
        o += s[i++];
      }
    }
    s.swap(o);
  }
  s = pad_chars(s, U";@#$%&");
  s = pad_chars(s, U"\u2012\u2013\u2014\u2015");
  // ([^\.])(\.)([\]\)}>"\']*)\s*$ -> "\1 \2\3 "
  {
    size_t run_end = 0;
    const size_t d = final_period(s, U"])}>\"'", run_end);
    if (d != U::npos) {
      U o = s.substr(0, d);
      o += U" .";
      o.append(s, d + 1, run_end - d - 1);
      o += U' ';
      s.swap(o);
    }
  }
  s = pad_chars(s, U"?!");
  // ([^'])' -> "\1 ' "
  {
    U o;
    o.reserve(s.size() + 8);
    for (size_t i = 0; i < s.size();) {
      if (i + 2 < s.size() && s[i] != U'\'' && s[i + 1] == U'\'' && s[i + 2] == U' ') {
        o += s[i];
        o += U" ' ";
        i += 3;
      } else {
        o += s[i++];
      }
    }
    s.swap(o);
  }
  return pad_chars(s, U"*");
}

// ENDING_QUOTES (the text is already padded with a space on each side).
inline U ending_quotes(U s) {
  s = pad_chars(s, U"\u00BB\u201D\u2019");
  s = replace_lit(s, U"''", U" '' ");
  s = replace_lit(s, U"\"", U" '' ");
  // \s+ -> " "
  {
    U o;
    o.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      if (text::rx_space(s[i])) {
        while (i < s.size() && text::rx_space(s[i])) ++i;
        o += U' ';
      } else {
        o += s[i++];
      }
    }
    s.swap(o);
  }
  // ([^' ])('[sS]|'[mM]|'[dD]|') -> "\1 \2 "
  {
    U o;
    o.reserve(s.size() + 8);
    for (size_t i = 0; i < s.size();) {
      const char32_t c = s[i];
      if (c != U'\'' && c != U' ' && i + 2 < s.size() && s[i + 1] == U'\'') {
        if (i + 3 < s.size() && in(s[i + 2], U"sSmMdD") && s[i + 3] == U' ') {
          o += c;
          o += U" '";
          o += s[i + 2];
          o += U' ';
          i += 4;
          continue;
        }
        if (s[i + 2] == U' ') {
          o += c;
          o += U" ' ";
          i += 3;
          continue;
        }
      }
      o += c;
      ++i;
    }
    s.swap(o);
  }
  // ([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) -> "\1 \2 "
  {
    U o;
    o.reserve(s.size() + 8);
    for (size_t i = 0; i < s.size();) {
      const char32_t c = s[i];
      if (c != U'\'' && c != U' ' && i + 4 < s.size() && s[i + 4] == U' ') {
        const std::u32string_view t(s.data() + i + 1, 3);
        bool hit = false;
        for (std::u32string_view alt : {U"'ll", U"'LL", U"'re", U"'RE", U"'ve", U"'VE", U"n't", U"N'T"})
          hit = hit || t == alt;
        if (hit) {
          o += c;
          o += U' ';
          o += t;
          o += U' ';
          i += 5;
          continue;
        }
      }
      o += c;
      ++i;
    }
    s.swap(o);
  }
  return s;
}

// (?i)\bA B\b (stdlib re) -> " A B "; or with a (?=\s) tail instead of \b.
inline U contraction(const U& s, std::u32string_view a, std::u32string_view b, bool space_after) {
  U o;
  o.reserve(s.size() + 8);
  const size_t la = a.size(), lb = b.size(), n = s.size();
  for (size_t i = 0; i < n;) {
    const size_t end = i + la + lb;
    // \b before a letter: start of text or a non-word character before it.
    if ((i == 0 || !text::re_word(s[i - 1])) && ci_match(s, i, a, true) && ci_match(s, i + la, b, true)) {
      const bool tail =
          space_after ? (end < n && text::py_space(s[end])) : (end == n || !text::re_word(s[end]));
      if (tail) {
        o += U' ';
        o.append(s, i, la);
        o += U' ';
        o.append(s, i + la, lb);
        o += U' ';
        i = end;
        continue;
      }
    }
    o += s[i++];
  }
  return o;
}

// (?i) ('t)(is)\b (stdlib re) -> " \1 \2 "
inline U contraction3(const U& s, std::u32string_view word) {
  U o;
  o.reserve(s.size() + 8);
  const size_t n = s.size(), lw = word.size();
  for (size_t i = 0; i < n;) {
    const size_t end = i + 3 + lw;
    if (s[i] == U' ' && ci_match(s, i + 1, U"'t", true) && ci_match(s, i + 3, word, true) &&
        (end == n || !text::re_word(s[end]))) {
      o += U' ';
      o.append(s, i + 1, 2);
      o += U' ';
      o.append(s, i + 3, lw);
      o += U' ';
      i = end;
      continue;
    }
    o += s[i++];
  }
  return o;
}

}  // namespace detail::nltk

// nltk word_tokenize(text, preserve_line=True) on UTF-8 text.
inline std::vector<std::string> nltk_word_tokenize(std::string_view text_utf8) {
  using namespace detail::nltk;
  U s = text::decode(text_utf8);
  s = starting_quotes(s);
  s = punctuation(std::move(s));
  s = pad_chars(s, U"][(){}<>");
  s = replace_lit(s, U"--", U" -- ");
  s = U" " + s + U" ";
  s = ending_quotes(std::move(s));
  s = contraction(s, U"can", U"not", false);
  s = contraction(s, U"d", U"'ye", false);
  s = contraction(s, U"gim", U"me", false);
  s = contraction(s, U"gon", U"na", false);
  s = contraction(s, U"got", U"ta", false);
  s = contraction(s, U"lem", U"me", false);
  s = contraction(s, U"more", U"'n", false);
  s = contraction(s, U"wan", U"na", true);
  s = contraction3(s, U"is");
  s = contraction3(s, U"was");
  std::vector<std::string> out;
  size_t start = U::npos;
  for (size_t i = 0; i <= s.size(); ++i) {
    const bool sep = i == s.size() || text::py_space(s[i]);
    if (sep && start != U::npos) {
      out.push_back(text::encode(std::u32string_view(s).substr(start, i - start)));
      start = U::npos;
    } else if (!sep && start == U::npos) {
      start = i;
    }
  }
  return out;
}

}  // namespace nq::eval
