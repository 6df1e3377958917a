#pragma once
// BLEU with the semantics of `sacrebleu` (2.x): corpus_bleu(hyps, [refs]) and
// sentence_bleu(hyp, [ref]) with their defaults, one reference per hypothesis.
//
// Each segment is right-stripped (str.rstrip()) and tokenized with the "13a"
// tokenizer (mteval-v13a): "<skipped>" and "-\n" are deleted, "\n" becomes a
// space, &quot; &amp; &lt; &gt; are unescaped; then punctuation other than
// ' , - . is split off, "." and "," are split off unless between digits, "-" is
// split off after a digit, and the result is split on whitespace (str.split()).
// Case is kept.
//
// Statistics: per order n = 1..4, matches clipped by the reference counts and
// totals, summed over the corpus with hypothesis and reference lengths.
// Score (0-100): 0 when no n-gram matches at all; else
//   BP = 1 if hyp_len >= ref_len, exp(1 - ref_len / hyp_len) (0 for an empty
//        hypothesis side) otherwise,
//   p_n = 100 * matches / total; with "exp" smoothing an order with zero matches
//        gets 100 / (2^k * total), k counting such orders so far; orders from the
//        first one with total 0 on are skipped,
//   BLEU = BP * exp(mean of log p_n over the orders used), where corpus BLEU
//        uses all 4 (a skipped order has p = 0, log = -9999999999, so BLEU ~ 0)
//        and sentence BLEU ("effective order") only the orders before the first
//        with total 0.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/eval/text.hpp"

namespace nq::eval {

inline constexpr int kBleuMaxOrder = 4;

// sacrebleu's BLEUScore fields.
struct BleuScore {
  double score = 0;                                // 0-100
  double bp = 0;                                   // brevity penalty
  std::array<double, kBleuMaxOrder> precisions{};  // percent, after smoothing
  std::array<int64_t, kBleuMaxOrder> counts{};     // clipped matches per order
  std::array<int64_t, kBleuMaxOrder> totals{};     // hypothesis n-grams per order
  int64_t sys_len = 0, ref_len = 0;
};

namespace detail {

inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// sacrebleu's first 13a rule: [{-~[-` -&(-+:-@/] (ASCII punctuation other than ' , - .).
inline bool bleu_punct(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return (u >= '{' && u <= '~') || (u >= '[' && u <= '`') || (u >= ' ' && u <= '&') ||
         (u >= '(' && u <= '+') || (u >= ':' && u <= '@') || u == '/';
}

}  // namespace detail

// The 13a tokenizer (without the rstrip BLEU applies first); tokens joined by one space.
// Works on UTF-8 bytes: every rule matches ASCII characters only, and "not a
// digit" on the last byte of a multi-byte character behaves as on the character.
inline std::string bleu_tokenize_13a(std::string_view line) {
  std::string s(line);
  detail::replace_all(s, "<skipped>", "");
  detail::replace_all(s, "-\n", "");
  detail::replace_all(s, "\n", " ");
  if (s.find('&') != std::string::npos) {
    detail::replace_all(s, "&quot;", "\"");
    detail::replace_all(s, "&amp;", "&");
    detail::replace_all(s, "&lt;", "<");
    detail::replace_all(s, "&gt;", ">");
  }
  std::string a;
  a.reserve(s.size() * 2 + 2);
  a += ' ';
  // Rule 1: pad punctuation.
  for (char c : s) {
    if (detail::bleu_punct(c)) {
      a += ' ';
      a += c;
      a += ' ';
    } else {
      a += c;
    }
  }
  a += ' ';
  // Rule 2: ([^0-9])([\.,]) -> "\1 \2 ", left to right, non-overlapping.
  std::string b;
  b.reserve(a.size() * 2);
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !detail::is_digit(a[i]) && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b += a[i];
      b += ' ';
      b += a[i + 1];
      b += ' ';
      i += 2;
    } else {
      b += a[i++];
    }
  }
  // Rule 3: ([\.,])([^0-9]) -> " \1 \2".
  std::string c;
  c.reserve(b.size() * 2);
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && (b[i] == '.' || b[i] == ',') && !detail::is_digit(b[i + 1])) {
      c += ' ';
      c += b[i];
      c += ' ';
      c += b[i + 1];
      i += 2;
    } else {
      c += b[i++];
    }
  }
  // Rule 4: ([0-9])(-) -> "\1 \2 ".
  std::string d;
  d.reserve(c.size() * 2);
  for (size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && detail::is_digit(c[i]) && c[i + 1] == '-') {
      d += c[i];
      d += ' ';
      d += '-';
      d += ' ';
      i += 2;
    } else {
      d += c[i++];
    }
  }
  std::string out;
  out.reserve(d.size());
  for (std::string_view t : text::py_split(d)) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

namespace detail {

// Sufficient statistics of one segment: [hyp_len, ref_len, counts[4], totals[4]].
struct BleuStats {
  int64_t sys_len = 0, ref_len = 0;
  std::array<int64_t, kBleuMaxOrder> counts{}, totals{};
};

struct NgramKey {
  std::array<uint32_t, kBleuMaxOrder> ids{};
  uint32_t n = 0;
  bool operator==(const NgramKey& o) const { return n == o.n && ids == o.ids; }
};
struct NgramHash {
  size_t operator()(const NgramKey& k) const {
    uint64_t h = 1469598103934665603ull ^ k.n;
    for (uint32_t i = 0; i < k.n; ++i) h = (h ^ k.ids[i]) * 1099511628211ull;
    return size_t(h);
  }
};

inline BleuStats bleu_segment_stats(std::string_view hyp, std::string_view ref) {
  const std::string ht = bleu_tokenize_13a(text::py_rstrip(hyp));
  const std::string rt = bleu_tokenize_13a(text::py_rstrip(ref));
  const std::vector<std::string_view> hw = text::py_split(ht), rw = text::py_split(rt);
  std::unordered_map<std::string_view, uint32_t> vocab;
  vocab.reserve(hw.size() + rw.size());
  auto ids = [&](const std::vector<std::string_view>& w) {
    std::vector<uint32_t> out;
    out.reserve(w.size());
    for (std::string_view t : w) out.push_back(vocab.emplace(t, uint32_t(vocab.size())).first->second);
    return out;
  };
  const std::vector<uint32_t> h = ids(hw), r = ids(rw);
  auto count = [](const std::vector<uint32_t>& toks) {
    std::unordered_map<NgramKey, int64_t, NgramHash> m;
    m.reserve(toks.size() * kBleuMaxOrder);
    for (uint32_t n = 1; n <= uint32_t(kBleuMaxOrder); ++n)
      for (size_t i = 0; i + n <= toks.size(); ++i) {
        NgramKey k;
        k.n = n;
        for (uint32_t j = 0; j < n; ++j) k.ids[j] = toks[i + j];
        ++m[k];
      }
    return m;
  };
  const auto hc = count(h), rc = count(r);
  BleuStats st;
  st.sys_len = int64_t(h.size());
  st.ref_len = int64_t(r.size());
  for (const auto& [k, c] : hc) {
    st.totals[k.n - 1] += c;
    auto it = rc.find(k);
    if (it != rc.end()) st.counts[k.n - 1] += std::min(c, it->second);
  }
  return st;
}

// sacrebleu's BLEU.compute_bleu with smooth_method="exp".
inline BleuScore bleu_from_stats(const BleuStats& st, bool effective_order) {
  BleuScore s;
  s.counts = st.counts;
  s.totals = st.totals;
  s.sys_len = st.sys_len;
  s.ref_len = st.ref_len;
  s.bp = 1.0;
  if (st.sys_len < st.ref_len)
    s.bp = st.sys_len > 0 ? std::exp(1.0 - double(st.ref_len) / double(st.sys_len)) : 0.0;
  bool any = false;
  for (int64_t c : st.counts) any = any || c != 0;
  if (!any) return s;  // score 0, precisions 0
  double smooth = 1.0;
  int eff_order = kBleuMaxOrder;
  for (int n = 1; n <= kBleuMaxOrder; ++n) {
    const int64_t total = st.totals[size_t(n - 1)], correct = st.counts[size_t(n - 1)];
    if (total == 0) break;
    if (effective_order) eff_order = n;
    if (correct == 0) {
      smooth *= 2;
      s.precisions[size_t(n - 1)] = 100.0 / (smooth * double(total));
    } else {
      s.precisions[size_t(n - 1)] = 100.0 * double(correct) / double(total);
    }
  }
  double sum = 0;
  for (int n = 0; n < eff_order; ++n) {
    const double p = s.precisions[size_t(n)];
    sum += p == 0.0 ? -9999999999.0 : std::log(p);
  }
  s.score = s.bp * std::exp(sum / double(eff_order));
  return s;
}

}  // namespace detail

// sacrebleu.corpus_bleu(hyps, [refs]) (0-100); all zero for an empty corpus.
inline BleuScore corpus_bleu_score(const std::vector<std::string>& hyps,
                                   const std::vector<std::string>& refs) {
  NQ_CHECK(hyps.size() == refs.size(), "eval::corpus_bleu", hyps.size(), " hypotheses but ", refs.size(),
           " references");
  detail::BleuStats sum;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const detail::BleuStats st = detail::bleu_segment_stats(hyps[i], refs[i]);
    sum.sys_len += st.sys_len;
    sum.ref_len += st.ref_len;
    for (size_t n = 0; n < size_t(kBleuMaxOrder); ++n) {
      sum.counts[n] += st.counts[n];
      sum.totals[n] += st.totals[n];
    }
  }
  if (hyps.empty()) return BleuScore{};
  return detail::bleu_from_stats(sum, /*effective_order=*/false);
}

inline double corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  return corpus_bleu_score(hyps, refs).score;
}

// sacrebleu.sentence_bleu(hyp, [ref]) (0-100; exp smoothing, effective order).
inline BleuScore sentence_bleu_score(std::string_view hyp, std::string_view ref) {
  return detail::bleu_from_stats(detail::bleu_segment_stats(hyp, ref), /*effective_order=*/true);
}

inline double sentence_bleu(std::string_view hyp, std::string_view ref) {
  return sentence_bleu_score(hyp, ref).score;
}

}  // namespace nq::eval
