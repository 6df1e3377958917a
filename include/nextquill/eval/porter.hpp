#pragma once
// The Porter stemmer exactly as nltk's PorterStemmer() in its default mode
// (NLTK_EXTENSIONS, nltk 3.10): Porter's 1980 steps 1a-5b with Martin Porter's
// later changes (bli -> ble, logi -> log) and nltk's own: a table of irregular
// forms (skies, dying, news, ...), words of at most 2 characters kept, "ies"/"ied"
// of 4-letter words -> "ie", "ied" -> "i", y -> i only after a consonant that is
// not the first letter, "alli" -> "al" and re-run of step 2, "fulli" -> "ful",
// and *o also true for a 2-letter vowel-consonant stem.
//
// Works on code points (lengths count characters, as in Python); the word is
// first lower-cased with Python's str.lower(). Letters other than a e i o u (and
// y after a consonant) are consonants, non-ASCII ones included.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nextquill/eval/text.hpp"

namespace nq::eval {

namespace detail::porter {

using U = std::u32string;
using UV = std::u32string_view;

inline bool vowel(char32_t c) { return c == U'a' || c == U'e' || c == U'i' || c == U'o' || c == U'u'; }

// Consonant flags of every position (y is a consonant at the start or after a vowel).
inline std::vector<bool> consonants(UV w) {
  std::vector<bool> f(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    if (vowel(w[i]))
      f[i] = false;
    else if (w[i] == U'y')
      f[i] = i == 0 ? true : !f[i - 1];
    else
      f[i] = true;
  }
  return f;
}

inline bool is_consonant(UV w, size_t i) { return consonants(w.substr(0, i + 1))[i]; }

// m in [C](VC){m}[V]: the number of vowel -> consonant transitions.
inline int measure(UV w) {
  const std::vector<bool> f = consonants(w);
  int m = 0;
  for (size_t i = 1; i < f.size(); ++i)
    if (!f[i - 1] && f[i]) ++m;
  return m;
}

inline bool contains_vowel(UV w) {
  for (bool c : consonants(w))
    if (!c) return true;
  return false;
}

inline bool ends_double_consonant(UV w) {
  return w.size() >= 2 && w[w.size() - 1] == w[w.size() - 2] && is_consonant(w, w.size() - 1);
}

// *o: consonant-vowel-consonant with the last not w, x, y; or (nltk) a 2-letter
// vowel-consonant word.
inline bool ends_cvc(UV w) {
  const size_t n = w.size();
  if (n >= 3) {
    const std::vector<bool> f = consonants(w);
    if (f[n - 3] && !f[n - 2] && f[n - 1] && w[n - 1] != U'w' && w[n - 1] != U'x' && w[n - 1] != U'y')
      return true;
  }
  if (n == 2) {
    const std::vector<bool> f = consonants(w);
    return !f[0] && f[1];
  }
  return false;
}

inline bool ends_with(UV w, UV suffix) {
  return w.size() >= suffix.size() && w.substr(w.size() - suffix.size()) == suffix;
}

inline U without(UV w, UV suffix) { return U(w.substr(0, w.size() - suffix.size())); }

enum class Cond { None, PositiveMeasure, MeasureGt1, Ion, Logi };

struct Rule {
  UV suffix, replacement;
  Cond cond;
};

// The first rule whose suffix ends the word decides: replaced when its condition
// holds on the stem, else the word is returned unchanged.
inline U apply_rules(UV word, const std::vector<Rule>& rules) {
  for (const Rule& r : rules) {
    if (!ends_with(word, r.suffix)) continue;
    const U stem = without(word, r.suffix);
    bool ok = true;
    switch (r.cond) {
      case Cond::None:
        break;
      case Cond::PositiveMeasure:
        ok = measure(stem) > 0;
        break;
      case Cond::MeasureGt1:
        ok = measure(stem) > 1;
        break;
      case Cond::Ion:
        ok = measure(stem) > 1 && (stem.back() == U's' || stem.back() == U't');
        break;
      case Cond::Logi:
        ok = measure(word.substr(0, word.size() - 3)) > 0;
        break;
    }
    return ok ? stem + U(r.replacement) : U(word);
  }
  return U(word);
}

inline U step1a(UV w) {
  if (ends_with(w, U"ies") && w.size() == 4) return without(w, U"ies") + U"ie";
  static const std::vector<Rule> rules = {{U"sses", U"ss", Cond::None},
                                          {U"ies", U"i", Cond::None},
                                          {U"ss", U"ss", Cond::None},
                                          {U"s", U"", Cond::None}};
  return apply_rules(w, rules);
}

inline U step1b(UV w) {
  if (ends_with(w, U"ied")) return without(w, U"ied") + (w.size() == 4 ? U"ie" : U"i");
  if (ends_with(w, U"eed")) {
    const U stem = without(w, U"eed");
    return measure(stem) > 0 ? stem + U"ee" : U(w);
  }
  U stem;
  bool ok = false;
  for (UV suffix : {UV(U"ed"), UV(U"ing")}) {
    if (ends_with(w, suffix)) {
      stem = without(w, suffix);
      if (contains_vowel(stem)) {
        ok = true;
        break;
      }
    }
  }
  if (!ok) return U(w);
  if (ends_with(stem, U"at")) return stem + U"e";
  if (ends_with(stem, U"bl")) return stem + U"e";
  if (ends_with(stem, U"iz")) return stem + U"e";
  const char32_t last = stem.back();
  const bool keep_double = last == U'l' || last == U's' || last == U'z';
  if (ends_double_consonant(stem)) return keep_double ? stem : stem.substr(0, stem.size() - 1);
  // nltk's rule table spells this rule as the suffix "*d", which a word can also
  // end with literally: then "*d" is replaced by the last letter ('d').
  if (ends_with(stem, U"*d")) return keep_double ? stem : without(stem, U"*d") + U"d";
  if (measure(stem) == 1 && ends_cvc(stem)) return stem + U"e";
  return stem;
}

inline U step1c(UV w) {
  if (!ends_with(w, U"y")) return U(w);
  const U stem = without(w, U"y");
  if (stem.size() > 1 && is_consonant(stem, stem.size() - 1)) return stem + U"i";
  return U(w);
}

inline U step2(UV w) {
  if (ends_with(w, U"alli") && measure(without(w, U"alli")) > 0) return step2(without(w, U"alli") + U"al");
  static const std::vector<Rule> rules = {
      {U"ational", U"ate", Cond::PositiveMeasure}, {U"tional", U"tion", Cond::PositiveMeasure},
      {U"enci", U"ence", Cond::PositiveMeasure},   {U"anci", U"ance", Cond::PositiveMeasure},
      {U"izer", U"ize", Cond::PositiveMeasure},    {U"bli", U"ble", Cond::PositiveMeasure},
      {U"alli", U"al", Cond::PositiveMeasure},     {U"entli", U"ent", Cond::PositiveMeasure},
      {U"eli", U"e", Cond::PositiveMeasure},       {U"ousli", U"ous", Cond::PositiveMeasure},
      {U"ization", U"ize", Cond::PositiveMeasure}, {U"ation", U"ate", Cond::PositiveMeasure},
      {U"ator", U"ate", Cond::PositiveMeasure},    {U"alism", U"al", Cond::PositiveMeasure},
      {U"iveness", U"ive", Cond::PositiveMeasure}, {U"fulness", U"ful", Cond::PositiveMeasure},
      {U"ousness", U"ous", Cond::PositiveMeasure}, {U"aliti", U"al", Cond::PositiveMeasure},
      {U"iviti", U"ive", Cond::PositiveMeasure},   {U"biliti", U"ble", Cond::PositiveMeasure},
      {U"fulli", U"ful", Cond::PositiveMeasure},   {U"logi", U"log", Cond::Logi},
  };
  return apply_rules(w, rules);
}

inline U step3(UV w) {
  static const std::vector<Rule> rules = {
      {U"icate", U"ic", Cond::PositiveMeasure}, {U"ative", U"", Cond::PositiveMeasure},
      {U"alize", U"al", Cond::PositiveMeasure}, {U"iciti", U"ic", Cond::PositiveMeasure},
      {U"ical", U"ic", Cond::PositiveMeasure},  {U"ful", U"", Cond::PositiveMeasure},
      {U"ness", U"", Cond::PositiveMeasure},
  };
  return apply_rules(w, rules);
}

inline U step4(UV w) {
  static const std::vector<Rule> rules = {
      {U"al", U"", Cond::MeasureGt1},   {U"ance", U"", Cond::MeasureGt1}, {U"ence", U"", Cond::MeasureGt1},
      {U"er", U"", Cond::MeasureGt1},   {U"ic", U"", Cond::MeasureGt1},   {U"able", U"", Cond::MeasureGt1},
      {U"ible", U"", Cond::MeasureGt1}, {U"ant", U"", Cond::MeasureGt1},  {U"ement", U"", Cond::MeasureGt1},
      {U"ment", U"", Cond::MeasureGt1}, {U"ent", U"", Cond::MeasureGt1},  {U"ion", U"", Cond::Ion},
      {U"ou", U"", Cond::MeasureGt1},   {U"ism", U"", Cond::MeasureGt1},  {U"ate", U"", Cond::MeasureGt1},
      {U"iti", U"", Cond::MeasureGt1},  {U"ous", U"", Cond::MeasureGt1},  {U"ive", U"", Cond::MeasureGt1},
      {U"ize", U"", Cond::MeasureGt1},
  };
  return apply_rules(w, rules);
}

inline U step5a(UV w) {
  if (ends_with(w, U"e")) {
    const U stem = without(w, U"e");
    const int m = measure(stem);
    if (m > 1) return stem;
    if (m == 1 && !ends_cvc(stem)) return stem;
  }
  return U(w);
}

inline U step5b(UV w) {
  if (ends_with(w, U"ll") && measure(w.substr(0, w.size() - 1)) > 1) return U(w.substr(0, w.size() - 1));
  return U(w);
}

inline const std::vector<std::pair<UV, UV>>& irregular() {
  static const std::vector<std::pair<UV, UV>> t = {
      {U"sky", U"sky"},        {U"skies", U"sky"},       {U"dying", U"die"},        {U"lying", U"lie"},
      {U"tying", U"tie"},      {U"news", U"news"},       {U"innings", U"inning"},   {U"inning", U"inning"},
      {U"outings", U"outing"}, {U"outing", U"outing"},   {U"cannings", U"canning"}, {U"canning", U"canning"},
      {U"howe", U"howe"},      {U"proceed", U"proceed"}, {U"exceed", U"exceed"},    {U"succeed", U"succeed"},
  };
  return t;
}

}  // namespace detail::porter

// nltk PorterStemmer().stem(word) on code points.
inline std::u32string porter_stem(std::u32string_view word) {
  using namespace detail::porter;
  U w = text::py_lower(word);
  for (const auto& [form, stem] : irregular())
    if (UV(w) == form) return U(stem);
  if (word.size() <= 2) return w;  // nltk tests the length of the word before lower-casing
  w = step1a(w);
  w = step1b(w);
  w = step1c(w);
  w = step2(w);
  w = step3(w);
  w = step4(w);
  w = step5a(w);
  w = step5b(w);
  return w;
}

// nltk PorterStemmer().stem(word) on UTF-8.
inline std::string porter_stem(std::string_view word) {
  return text::encode(porter_stem(text::decode(word)));
}

}  // namespace nq::eval
