#pragma once
// Text-generation metrics in one call: ROUGE-1/ROUGE-L (rouge.hpp), corpus
// BLEU (bleu.hpp) and METEOR (meteor.hpp), each equal to its reference Python
// package (rouge-score 0.1.2, sacrebleu 2.x, nltk 3.10 with WordNet 3.0).
//
//   nq::eval::MetricReport r = nq::eval::evaluate_texts(predictions, references);
//   // r.rouge1, r.rougeL, r.meteor: means of per-pair scores in [0, 1];
//   // r.bleu: corpus BLEU in [0, 100]; r.wordnet: whether METEOR had WordNet.
#include <cstddef>
#include <string>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/eval/bleu.hpp"
#include "nextquill/eval/meteor.hpp"
#include "nextquill/eval/rouge.hpp"

namespace nq::eval {

struct MetricReport {
  double rouge1 = 0;     // mean per-pair ROUGE-1 F-measure, 0-1
  double rougeL = 0;     // mean per-pair ROUGE-L F-measure, 0-1
  double bleu = 0;       // sacrebleu corpus BLEU, 0-100
  double meteor = 0;     // mean per-pair METEOR, 0-1
  size_t n = 0;          // number of pairs
  bool wordnet = false;  // METEOR ran its WordNet synonym stage
};

// All four metrics of predictions against references (one reference each).
// Every field is 0 for empty lists.
inline MetricReport evaluate_texts(const std::vector<std::string>& predictions,
                                   const std::vector<std::string>& references,
                                   const MeteorOptions& meteor_options = {}) {
  NQ_CHECK(predictions.size() == references.size(), "eval::evaluate_texts", predictions.size(),
           " predictions but ", references.size(), " references");
  MetricReport r;
  r.n = predictions.size();
  const RougeScores rs = rouge_mean(predictions, references);
  r.rouge1 = rs.rouge1;
  r.rougeL = rs.rougeL;
  r.bleu = corpus_bleu(predictions, references);
  const MeteorCorpus m = meteor_corpus(predictions, references, meteor_options);
  r.meteor = m.mean;
  r.wordnet = m.wordnet;
  return r;
}

}  // namespace nq::eval
