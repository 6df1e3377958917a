#pragma once
// ROUGE-1 and ROUGE-L with the semantics of Google's `rouge-score` package
// (0.1.2): rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
// .score(reference, prediction).
//
// Tokenizer (its DefaultTokenizer without stemmer): Python str.lower(), every
// run of characters other than [a-z0-9] becomes a separator, tokens are the
// remaining [a-z0-9]+ runs. Non-ASCII text therefore contributes nothing, except
// the two characters whose lower case is ASCII: U+0130 (-> "i" + a combining dot,
// so "İstanbul" gives "i", "stanbul") and U+212A KELVIN SIGN (-> "k").
//
// Per pair: ROUGE-1 precision = |overlap| / |prediction unigrams| (clipped
// counts), recall = |overlap| / |reference unigrams| (each denominator at least
// 1), F = 2PR / (P + R) or 0; ROUGE-L uses the longest common subsequence
// length, and is 0 when either side has no token.
//
// Corpus: rouge_mean() returns the plain mean of the per-pair F-measures. Hugging
// Face `evaluate`'s "rouge" with use_aggregator=True (its default) reports instead
// the median of 1000 unseeded bootstrap resamples of that mean (rouge-score's
// BootstrapAggregator "mid"), which is random and differs from the mean by
// sampling noise; use_aggregator=False gives the per-pair scores returned here.
#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/unicode.hpp"

namespace nq::eval {

struct RougeScore {
  double precision = 0, recall = 0, fmeasure = 0;
};

// Per-pair ROUGE-1 and ROUGE-L F-measures.
struct RougeScores {
  double rouge1 = 0, rougeL = 0;
};

// Precision/recall/F of both.
struct RougeDetail {
  RougeScore rouge1, rougeL;
};

// rouge-score's default tokenizer (see above).
inline std::vector<std::string> rouge_tokenize(std::string_view text) {
  std::vector<std::string> tokens;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) tokens.push_back(std::move(cur));
    cur.clear();
  };
  for (size_t i = 0; i < text.size();) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      char ch = char(b);
      if (ch >= 'A' && ch <= 'Z') ch = char(ch + 32);
      if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
        cur += ch;
      else
        flush();
      ++i;
      continue;
    }
    const data::unicode::Char c = data::unicode::decode_utf8(text, i);
    i += c.len;
    if (c.valid && c.cp == 0x130) {  // lower() = "i" + U+0307
      cur += 'i';
      flush();
    } else if (c.valid && c.cp == 0x212A) {  // KELVIN SIGN, lower() = "k"
      cur += 'k';
    } else {
      flush();
    }
  }
  flush();
  return tokens;
}

namespace detail {

inline double rouge_f(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }

// Interns the tokens of both sides as small integers.
inline void rouge_ids(const std::vector<std::string>& a, const std::vector<std::string>& b,
                      std::vector<int>& ia, std::vector<int>& ib) {
  std::unordered_map<std::string_view, int> id;
  id.reserve(a.size() + b.size());
  auto get = [&](const std::string& s) { return id.emplace(s, int(id.size())).first->second; };
  ia.clear();
  ib.clear();
  for (const auto& s : a) ia.push_back(get(s));
  for (const auto& s : b) ib.push_back(get(s));
}

inline size_t lcs_length(const std::vector<int>& a, const std::vector<int>& b) {
  if (a.empty() || b.empty()) return 0;
  std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace detail

// ROUGE-1 and ROUGE-L precision, recall and F of a prediction against a reference.
inline RougeDetail rouge_detail(std::string_view prediction, std::string_view reference) {
  const std::vector<std::string> pt = rouge_tokenize(prediction), rt = rouge_tokenize(reference);
  std::vector<int> p, r;
  detail::rouge_ids(pt, rt, p, r);
  RougeDetail out;
  // ROUGE-1: clipped unigram overlap.
  {
    size_t n_ids = 0;
    for (int x : p) n_ids = std::max(n_ids, size_t(x) + 1);
    for (int x : r) n_ids = std::max(n_ids, size_t(x) + 1);
    std::vector<size_t> cp(n_ids, 0), cr(n_ids, 0);
    for (int x : p) ++cp[size_t(x)];
    for (int x : r) ++cr[size_t(x)];
    size_t overlap = 0;
    for (size_t k = 0; k < n_ids; ++k) overlap += std::min(cp[k], cr[k]);
    out.rouge1.precision = double(overlap) / double(std::max<size_t>(p.size(), 1));
    out.rouge1.recall = double(overlap) / double(std::max<size_t>(r.size(), 1));
    out.rouge1.fmeasure = detail::rouge_f(out.rouge1.precision, out.rouge1.recall);
  }
  // ROUGE-L: longest common subsequence.
  if (!p.empty() && !r.empty()) {
    const size_t lcs = detail::lcs_length(r, p);
    out.rougeL.precision = double(lcs) / double(p.size());
    out.rougeL.recall = double(lcs) / double(r.size());
    out.rougeL.fmeasure = detail::rouge_f(out.rougeL.precision, out.rougeL.recall);
  }
  return out;
}

// ROUGE-1 and ROUGE-L F-measures of one pair.
inline RougeScores rouge(std::string_view prediction, std::string_view reference) {
  const RougeDetail d = rouge_detail(prediction, reference);
  return {d.rouge1.fmeasure, d.rougeL.fmeasure};
}

// Per-pair scores of parallel lists.
inline std::vector<RougeScores> rouge_scores(const std::vector<std::string>& predictions,
                                             const std::vector<std::string>& references) {
  NQ_CHECK(predictions.size() == references.size(), "eval::rouge", predictions.size(), " predictions but ",
           references.size(), " references");
  std::vector<RougeScores> out(predictions.size());
  for (size_t i = 0; i < predictions.size(); ++i) out[i] = rouge(predictions[i], references[i]);
  return out;
}

// Plain mean of the per-pair F-measures (0 for no pairs).
inline RougeScores rouge_mean(const std::vector<std::string>& predictions,
                              const std::vector<std::string>& references) {
  const std::vector<RougeScores> all = rouge_scores(predictions, references);
  RougeScores m;
  for (const RougeScores& s : all) {
    m.rouge1 += s.rouge1;
    m.rougeL += s.rougeL;
  }
  if (!all.empty()) {
    m.rouge1 /= double(all.size());
    m.rougeL /= double(all.size());
  }
  return m;
}

}  // namespace nq::eval
