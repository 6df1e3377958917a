#pragma once
// METEOR with the semantics of nltk 3.10's
//   nltk.translate.meteor_score.single_meteor_score(
//       word_tokenize(reference, preserve_line=True),
//       word_tokenize(hypothesis, preserve_line=True),
//       alpha=0.9, beta=3, gamma=0.5, wordnet=<WordNet 3.0>)
// which is what Hugging Face `evaluate`'s "meteor" computes per pair, except that
// `evaluate` tokenizes with word_tokenize's default Punkt sentence split first
// (see word_tokenize.hpp: the two differ only on periods inside a line).
//
// Alignment, as nltk does it: tokens are lower-cased (str.lower()); then three
// stages each match what the earlier ones left, scanning the hypothesis from its
// last word to its first and pairing each word with the LAST unmatched reference
// word that fits: (1) equal words, (2) equal Porter stems (porter.hpp), (3) the
// stemmed reference word is one of the WordNet synonyms (wordnet.hpp) of the
// stemmed hypothesis word (nltk matches synonyms of the stems that stage 2
// left). With m matches, sorted by hypothesis position, and c chunks (runs of
// matches adjacent in both texts):
//   P = m / |hyp|, R = m / |ref|, Fmean = P R / (alpha P + (1 - alpha) R),
//   score = (1 - gamma (c / m)^beta) Fmean,  and 0 when m, |hyp| or |ref| is 0.
//
// WordNet: read from MeteorOptions::wordnet_dir when given, else from the first
// of $NQ_WORDNET_DIR and /usr/share/wordnet (Debian/Ubuntu package
// `wordnet-base`) that holds the dictionary files; loaded once per directory.
// Where none does (or use_wordnet is false) stage 3 is skipped, which equals nltk
// run with a WordNet that has no synsets, and the results say so (wordnet =
// false): scores can then only be lower, on pairs that need a synonym.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/eval/porter.hpp"
#include "nextquill/eval/text.hpp"
#include "nextquill/eval/word_tokenize.hpp"
#include "nextquill/eval/wordnet.hpp"

namespace nq::eval {

struct MeteorOptions {
  double alpha = 0.9;  // weight of precision vs recall in Fmean
  double beta = 3.0;   // shape of the fragmentation penalty
  double gamma = 0.5;  // weight of the fragmentation penalty
  // WordNet dictionary directory, used alone when not empty (a directory without
  // the files turns the synonym stage off); empty: $NQ_WORDNET_DIR, then
  // /usr/share/wordnet.
  std::string wordnet_dir;
  // false: no synonym stage even when WordNet is present.
  bool use_wordnet = true;
};

// Per-pair scores, their mean, and whether the synonym stage ran.
struct MeteorCorpus {
  double mean = 0;
  std::vector<double> scores;
  bool wordnet = false;
};

class Meteor {
 public:
  explicit Meteor(MeteorOptions opt = {}) : opt_(std::move(opt)) {
    if (opt_.use_wordnet) wordnet_ = WordNet::open(opt_.wordnet_dir);
  }

  // True when WordNet was found and the synonym stage runs.
  bool has_wordnet() const { return wordnet_ != nullptr; }
  const MeteorOptions& options() const { return opt_; }

  // METEOR of one hypothesis against one reference (raw text).
  double score(std::string_view hypothesis, std::string_view reference) const {
    return score_tokens(nltk_word_tokenize(hypothesis), nltk_word_tokenize(reference));
  }

  // METEOR of pre-tokenized texts (nltk's single_meteor_score on these lists).
  double score_tokens(const std::vector<std::string>& hypothesis,
                      const std::vector<std::string>& reference) const {
    std::vector<Word> hyp, ref;
    hyp.reserve(hypothesis.size());
    ref.reserve(reference.size());
    for (size_t i = 0; i < hypothesis.size(); ++i) hyp.push_back({int(i), text::py_lower(hypothesis[i])});
    for (size_t j = 0; j < reference.size(); ++j) ref.push_back({int(j), text::py_lower(reference[j])});
    const size_t hyp_len = hyp.size(), ref_len = ref.size();
    std::vector<std::pair<int, int>> matches;
    match_stage(hyp, ref, matches, nullptr);
    for (Word& w : hyp) w.text = porter_stem(std::string_view(w.text));
    for (Word& w : ref) w.text = porter_stem(std::string_view(w.text));
    match_stage(hyp, ref, matches, nullptr);
    if (wordnet_) match_stage(hyp, ref, matches, wordnet_.get());
    const size_t m = matches.size();
    if (m == 0 || hyp_len == 0 || ref_len == 0) return 0.0;
    std::sort(matches.begin(), matches.end());
    size_t chunks = 1;
    for (size_t i = 0; i + 1 < m; ++i)
      if (!(matches[i + 1].first == matches[i].first + 1 && matches[i + 1].second == matches[i].second + 1))
        ++chunks;
    const double precision = double(m) / double(hyp_len);
    const double recall = double(m) / double(ref_len);
    const double fmean = (precision * recall) / (opt_.alpha * precision + (1 - opt_.alpha) * recall);
    const double frag = double(chunks) / double(m);
    const double penalty = opt_.gamma * std::pow(frag, opt_.beta);
    return (1 - penalty) * fmean;
  }

  // Per-pair scores and their plain mean (0 for no pairs).
  MeteorCorpus corpus(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references) const {
    NQ_CHECK(hypotheses.size() == references.size(), "eval::meteor", hypotheses.size(), " hypotheses but ",
             references.size(), " references");
    MeteorCorpus out;
    out.wordnet = has_wordnet();
    out.scores.resize(hypotheses.size());
    double sum = 0;
    for (size_t i = 0; i < hypotheses.size(); ++i) {
      out.scores[i] = score(hypotheses[i], references[i]);
      sum += out.scores[i];
    }
    if (!hypotheses.empty()) out.mean = sum / double(hypotheses.size());
    return out;
  }

 private:
  struct Word {
    int index;         // position in the original token list
    std::string text;  // lower-cased, later stemmed
  };

  // One alignment stage over the unmatched words (nltk's _match_enums, or
  // _enum_wordnetsyn_match when wn is given); matched words leave hyp and ref.
  static void match_stage(std::vector<Word>& hyp, std::vector<Word>& ref,
                          std::vector<std::pair<int, int>>& matches, const WordNet* wn) {
    if (hyp.empty() || ref.empty()) return;
    std::unordered_map<std::string_view, std::vector<size_t>> positions;  // ascending
    positions.reserve(ref.size());
    for (size_t j = 0; j < ref.size(); ++j) positions[ref[j].text].push_back(j);
    std::vector<bool> hyp_done(hyp.size(), false), ref_done(ref.size(), false);
    for (size_t i = hyp.size(); i-- > 0;) {
      std::vector<size_t>* best = nullptr;
      auto consider = [&](std::string_view w) {
        auto it = positions.find(w);
        if (it == positions.end() || it->second.empty()) return;
        if (best == nullptr || it->second.back() > best->back()) best = &it->second;
      };
      consider(hyp[i].text);
      if (wn != nullptr)
        for (const std::string& syn : wn->synonyms(hyp[i].text)) consider(syn);
      if (best == nullptr) continue;
      const size_t j = best->back();
      best->pop_back();
      hyp_done[i] = ref_done[j] = true;
      matches.emplace_back(hyp[i].index, ref[j].index);
    }
    auto keep = [](std::vector<Word>& v, const std::vector<bool>& done) {
      size_t k = 0;
      for (size_t i = 0; i < v.size(); ++i)
        if (!done[i]) {
          if (k != i) v[k] = std::move(v[i]);
          ++k;
        }
      v.resize(k);
    };
    keep(hyp, hyp_done);
    keep(ref, ref_done);
  }

  MeteorOptions opt_;
  std::shared_ptr<const WordNet> wordnet_;
};

// METEOR of one pair (see the top of the file). Builds a Meteor each call (the
// WordNet itself is loaded once per directory); reuse a Meteor for many pairs.
inline double meteor(const std::string& hypothesis, const std::string& reference,
                     const MeteorOptions& opt = {}) {
  return Meteor(opt).score(hypothesis, reference);
}

// Per-pair METEOR of parallel lists, the plain mean, and the WordNet flag.
inline MeteorCorpus meteor_corpus(const std::vector<std::string>& hypotheses,
                                  const std::vector<std::string>& references, const MeteorOptions& opt = {}) {
  return Meteor(opt).corpus(hypotheses, references);
}

}  // namespace nq::eval
