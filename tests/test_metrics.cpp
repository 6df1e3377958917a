// Evaluation metrics (nq::eval): ROUGE-1/L against rouge-score, BLEU against
// sacrebleu, METEOR against nltk (with Debian's WordNet 3.0 and without), and
// their pieces (13a and nltk tokenizers, Porter stems, WordNet synonyms, Python
// str.lower()) on the fixture tools/make_metric_fixtures.py writes
// (tests/fixtures/metrics/metrics.json); hand-computed cases; empty input; errors.
// Tests needing WordNet skip with a message when its files are absent
// (Debian/Ubuntu package wordnet-base, or NQ_WORDNET_DIR).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nextquill/eval/metrics.hpp>
#include <nextquill/eval/text.hpp>
#include <nextquill/eval/word_tokenize.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.hpp"

#ifndef NQ_TEST_DATA_DIR
#define NQ_TEST_DATA_DIR "tests/fixtures"
#endif

namespace {

using nlohmann::json;
using nqtest::contains;
using nqtest::error_of;
namespace ev = nq::eval;

constexpr double kTol = 1e-6;

const json& fixture() {
  static const json j = [] {
    const std::string path = std::string(NQ_TEST_DATA_DIR) + "/metrics/metrics.json";
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot open " << path);
    return json::parse(in);
  }();
  return j;
}

std::vector<std::string> strings(const json& a) { return a.get<std::vector<std::string>>(); }

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& t : v) s += (s.empty() ? "" : " ") + t;
  return s;
}

// The pairs of a corpus entry of the fixture.
void corpus_texts(const json& corpus, std::vector<std::string>& hyps, std::vector<std::string>& refs) {
  const json& pairs = fixture()["pairs"];
  for (size_t i : corpus["indices"].get<std::vector<size_t>>()) {
    hyps.push_back(pairs[i]["hyp"].get<std::string>());
    refs.push_back(pairs[i]["ref"].get<std::string>());
  }
}

bool have_wordnet() {
  if (!ev::WordNet::find_dir().empty()) return true;
  MESSAGE("skipped: no WordNet dictionary in $NQ_WORDNET_DIR or " << std::string(ev::WordNet::kDefaultDir)
                                                                  << " (install the Debian/Ubuntu package "
                                                                     "wordnet-base)");
  return false;
}

const char* kNoWordNetDir = "/nonexistent/nq-wordnet";

}  // namespace

TEST_CASE("metrics: fixture and versions of the reference packages") {
  const json& v = fixture()["versions"];
  MESSAGE("rouge-score " << v["rouge-score"].get<std::string>() << ", sacrebleu "
                         << v["sacrebleu"].get<std::string>() << ", nltk " << v["nltk"].get<std::string>()
                         << ", " << v["wordnet"].get<std::string>());
  CHECK(fixture()["pairs"].size() >= 300);
}

TEST_CASE("metrics: ROUGE-1 and ROUGE-L equal rouge-score per pair and in the mean") {
  double worst = 0;
  for (const json& p : fixture()["pairs"]) {
    const std::string hyp = p["hyp"], ref = p["ref"];
    const ev::RougeDetail d = ev::rouge_detail(hyp, ref);
    const std::vector<double> r1 = p["rouge1"], rl = p["rougeL"];
    const double got[6] = {d.rouge1.precision, d.rouge1.recall, d.rouge1.fmeasure,
                           d.rougeL.precision, d.rougeL.recall, d.rougeL.fmeasure};
    const double want[6] = {r1[0], r1[1], r1[2], rl[0], rl[1], rl[2]};
    for (int k = 0; k < 6; ++k) {
      worst = std::max(worst, std::abs(got[k] - want[k]));
      CHECK_MESSAGE(std::abs(got[k] - want[k]) <= kTol, "hyp=" << hyp << " ref=" << ref << " k=" << k);
    }
    const ev::RougeScores s = ev::rouge(hyp, ref);
    CHECK(s.rouge1 == d.rouge1.fmeasure);
    CHECK(s.rougeL == d.rougeL.fmeasure);
  }
  for (const auto& [name, c] : fixture()["corpora"].items()) {
    std::vector<std::string> hyps, refs;
    corpus_texts(c, hyps, refs);
    const ev::RougeScores m = ev::rouge_mean(hyps, refs);
    CHECK_MESSAGE(std::abs(m.rouge1 - c["rouge1_mean"].get<double>()) <= kTol, name);
    CHECK_MESSAGE(std::abs(m.rougeL - c["rougeL_mean"].get<double>()) <= kTol, name);
  }
  MESSAGE("ROUGE: largest difference to rouge-score " << worst);
}

TEST_CASE("metrics: ROUGE tokenizer and hand-computed ROUGE") {
  using V = std::vector<std::string>;
  CHECK(ev::rouge_tokenize("Fix: the BUG_in x86-64, naïve café") ==
        V{"fix", "the", "bug", "in", "x86", "64", "na", "ve", "caf"});
  CHECK(ev::rouge_tokenize("\xC4\xB0stanbul \xE2\x84\xAA") == V{"i", "stanbul", "k"});  // U+0130, KELVIN SIGN
  CHECK(ev::rouge_tokenize("").empty());
  CHECK(ev::rouge_tokenize("\xff\xfe !!").empty());
  // "the cat sat" vs "the cat": P = 2/3, R = 1, F = 0.8; LCS 2.
  ev::RougeDetail d = ev::rouge_detail("the cat sat", "the cat");
  CHECK(d.rouge1.precision == doctest::Approx(2.0 / 3));
  CHECK(d.rouge1.recall == 1.0);
  CHECK(d.rouge1.fmeasure == doctest::Approx(0.8));
  CHECK(d.rougeL.fmeasure == doctest::Approx(0.8));
  // Order matters for ROUGE-L only: LCS("a b c d", "d c b a") = 1.
  d = ev::rouge_detail("d c b a", "a b c d");
  CHECK(d.rouge1.fmeasure == 1.0);
  CHECK(d.rougeL.fmeasure == doctest::Approx(0.25));
  // Clipped counts: "the the the" vs "the cat": overlap 1.
  d = ev::rouge_detail("the the the", "the cat");
  CHECK(d.rouge1.precision == doctest::Approx(1.0 / 3));
  CHECK(d.rouge1.recall == doctest::Approx(0.5));
  // Empty sides.
  for (auto [h, r] : {std::pair{"", ""}, std::pair{"", "a"}, std::pair{"a", ""}, std::pair{"...", "a"}}) {
    d = ev::rouge_detail(h, r);
    CHECK(d.rouge1.fmeasure == 0.0);
    CHECK(d.rougeL.fmeasure == 0.0);
  }
  CHECK(ev::rouge_mean({}, {}).rouge1 == 0.0);
  CHECK(contains(error_of([] { ev::rouge_scores({"a"}, {}); }),
                 "nq::eval::rouge: 1 predictions but 0 references"));
}

TEST_CASE("metrics: BLEU: 13a tokens, sentence BLEU and corpus BLEU equal sacrebleu") {
  double worst = 0;
  for (const json& p : fixture()["pairs"]) {
    const std::string hyp = p["hyp"], ref = p["ref"];
    CHECK_MESSAGE(ev::bleu_tokenize_13a(nq::eval::text::py_rstrip(hyp)) == p["hyp_13a"].get<std::string>(),
                  "hyp=" << hyp);
    CHECK_MESSAGE(ev::bleu_tokenize_13a(nq::eval::text::py_rstrip(ref)) == p["ref_13a"].get<std::string>(),
                  "ref=" << ref);
    const double s = ev::sentence_bleu(hyp, ref), want = p["sentence_bleu"];
    worst = std::max(worst, std::abs(s - want));
    CHECK_MESSAGE(std::abs(s - want) <= kTol, "hyp=" << hyp << " ref=" << ref);
  }
  for (const auto& [name, c] : fixture()["corpora"].items()) {
    std::vector<std::string> hyps, refs;
    corpus_texts(c, hyps, refs);
    const ev::BleuScore b = ev::corpus_bleu_score(hyps, refs);
    worst = std::max(worst, std::abs(b.score - c["bleu"].get<double>()));
    CHECK_MESSAGE(std::abs(b.score - c["bleu"].get<double>()) <= kTol, name);
    CHECK_MESSAGE(std::abs(b.bp - c["bleu_bp"].get<double>()) <= kTol, name);
    CHECK(b.sys_len == c["bleu_sys_len"].get<int64_t>());
    CHECK(b.ref_len == c["bleu_ref_len"].get<int64_t>());
    for (size_t n = 0; n < 4; ++n) {
      CHECK(b.counts[n] == c["bleu_counts"][n].get<int64_t>());
      CHECK(b.totals[n] == c["bleu_totals"][n].get<int64_t>());
    }
    CHECK(ev::corpus_bleu(hyps, refs) == b.score);
  }
  MESSAGE("BLEU: largest difference to sacrebleu " << worst);
}

TEST_CASE("metrics: BLEU: hand-computed cases and empty input") {
  // "a b c d" vs "a b c e": matches 3/4, 2/3, 1/2, 0/1 -> p4 smoothed to 100 / (2 * 1).
  const ev::BleuScore s = ev::sentence_bleu_score("a b c d", "a b c e");
  CHECK(s.counts == std::array<int64_t, 4>{3, 2, 1, 0});
  CHECK(s.totals == std::array<int64_t, 4>{4, 3, 2, 1});
  CHECK(s.precisions[3] == doctest::Approx(50.0));
  CHECK(s.score == doctest::Approx(std::pow(75.0 * (200.0 / 3) * 50.0 * 50.0, 0.25)));
  // Brevity penalty: 2 hypothesis tokens against 4 -> exp(1 - 2); effective order 2.
  const ev::BleuScore bp = ev::sentence_bleu_score("a b", "a b c d");
  CHECK(bp.bp == doctest::Approx(std::exp(-1.0)));
  CHECK(bp.score == doctest::Approx(100 * std::exp(-1.0)));
  // Corpus BLEU uses all four orders: a corpus of 2-token hypotheses scores ~0.
  CHECK(ev::corpus_bleu({"a b"}, {"a b"}) < 1e-100);
  CHECK(ev::corpus_bleu({"the cat sat on the mat", "hello world ok then"},
                        {"the cat sat on the mat", "hello world ok then"}) == doctest::Approx(100.0));
  // 13a: punctuation, numbers, entities, hyphens.
  CHECK(ev::bleu_tokenize_13a("Hello, world! 3.14 1,000 x-y 5-6 AT&amp;T \"q\"") ==
        "Hello , world ! 3.14 1,000 x-y 5 - 6 AT & T \" q \"");
  CHECK(ev::bleu_tokenize_13a("a <skipped> hy-\nphen\nnext") == "a hyphen next");
  CHECK(ev::sentence_bleu("", "a b") == 0.0);
  CHECK(ev::sentence_bleu("a b", "") == 0.0);
  CHECK(ev::sentence_bleu("", "") == 0.0);
  CHECK(ev::corpus_bleu({}, {}) == 0.0);
  CHECK(ev::corpus_bleu({"", ""}, {"", ""}) == 0.0);
  CHECK(contains(error_of([] {
                   ev::corpus_bleu({"a"}, {"a", "b"});
                 }),
                 "nq::eval::corpus_bleu: 1 hypotheses"));
}

TEST_CASE("metrics: nltk word_tokenize(preserve_line=True), Porter stems and str.lower() equal nltk/Python") {
  for (const json& p : fixture()["pairs"]) {
    for (const char* side : {"hyp", "ref"}) {
      const std::string text = p[side];
      const std::vector<std::string> want = strings(p[std::string(side) + "_nltk"]);
      const std::vector<std::string> got = ev::nltk_word_tokenize(text);
      CHECK_MESSAGE(got == want, "text=" << text << "\n got: " << join(got) << "\nwant: " << join(want));
    }
  }
  size_t n = 0;
  for (const auto& [word, stem] : fixture()["porter"].items()) {
    CHECK_MESSAGE(ev::porter_stem(std::string_view(word)) == stem.get<std::string>(), "word=" << word);
    ++n;
  }
  CHECK(n > 1000);
  for (const auto& [s, lower] : fixture()["py_lower"].items())
    CHECK_MESSAGE(ev::text::py_lower(std::string_view(s)) == lower.get<std::string>(), "s=" << s);
  // A few by hand.
  using V = std::vector<std::string>;
  CHECK(ev::nltk_word_tokenize("Don't stop, I cannot.") ==
        V{"Do", "n't", "stop", ",", "I", "can", "not", "."});
  CHECK(ev::nltk_word_tokenize("\"Hi\" (x) -- y...") == V{"``", "Hi", "''", "(", "x", ")", "--", "y", "..."});
  CHECK(ev::nltk_word_tokenize("").empty());
  CHECK(ev::porter_stem(std::string_view("caresses")) == "caress");
  CHECK(ev::porter_stem(std::string_view("generously")) == "gener");
  CHECK(ev::porter_stem(std::string_view("dying")) == "die");
}

TEST_CASE("metrics: WordNet synonyms equal nltk's reader on the Debian dictionary files") {
  if (!have_wordnet()) return;
  const auto wn = ev::WordNet::open();
  REQUIRE(wn != nullptr);
  const json& syn = fixture()["wordnet_synonyms"];
  size_t empty = 0;
  for (const auto& [word, names] : syn.items()) {
    CHECK_MESSAGE(wn->synonyms(word) == strings(names), "word=" << word);
    empty += names.empty();
  }
  CHECK(empty > 10);  // words without synsets are in the fixture too
  CHECK(syn.size() - empty > 200);
  const auto& fix = wn->synonyms("fix");
  CHECK(std::find(fix.begin(), fix.end(), "repair") != fix.end());
  CHECK(ev::WordNet::open() == wn);  // loaded once per directory
  CHECK(ev::WordNet::open(kNoWordNetDir) == nullptr);
  CHECK(ev::WordNet::find_dir(kNoWordNetDir).empty());  // an explicit directory is used alone
  CHECK(contains(error_of([] { ev::WordNet w(kNoWordNetDir); }), "nq::eval::WordNet: cannot open"));
}

TEST_CASE(
    "metrics: WordNet search order: explicit directory, else $NQ_WORDNET_DIR, then /usr/share/wordnet") {
  const char* old = std::getenv("NQ_WORDNET_DIR");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("NQ_WORDNET_DIR", kNoWordNetDir, 1);
  CHECK(ev::WordNet::search_dirs() == std::vector<std::string>{kNoWordNetDir, "/usr/share/wordnet"});
  CHECK(ev::WordNet::search_dirs("/d") == std::vector<std::string>{"/d"});
  CHECK(ev::WordNet::find_dir() ==
        (ev::WordNet::available("/usr/share/wordnet") ? "/usr/share/wordnet" : ""));
  ::unsetenv("NQ_WORDNET_DIR");
  CHECK(ev::WordNet::search_dirs() == std::vector<std::string>{"/usr/share/wordnet"});
  if (old != nullptr) ::setenv("NQ_WORDNET_DIR", saved.c_str(), 1);
}

TEST_CASE("metrics: METEOR equals nltk with WordNet and with an empty WordNet") {
  ev::MeteorOptions none;
  none.wordnet_dir = kNoWordNetDir;
  const ev::Meteor without(none);
  CHECK_FALSE(without.has_wordnet());
  ev::MeteorOptions off;
  off.use_wordnet = false;
  CHECK_FALSE(ev::Meteor(off).has_wordnet());
  const bool wn = have_wordnet();
  const ev::Meteor with;
  CHECK(with.has_wordnet() == wn);
  double worst = 0;
  size_t differ = 0;
  for (const json& p : fixture()["pairs"]) {
    const std::string hyp = p["hyp"], ref = p["ref"];
    const double a = without.score(hyp, ref), want_a = p["meteor_nowordnet"];
    worst = std::max(worst, std::abs(a - want_a));
    CHECK_MESSAGE(std::abs(a - want_a) <= kTol, "no WordNet: hyp=" << hyp << " ref=" << ref);
    if (wn) {
      const double b = with.score(hyp, ref), want_b = p["meteor"];
      worst = std::max(worst, std::abs(b - want_b));
      CHECK_MESSAGE(std::abs(b - want_b) <= kTol, "hyp=" << hyp << " ref=" << ref);
      differ += want_a != want_b;
    }
  }
  if (wn) CHECK(differ >= 20);  // the synonym stage is exercised
  for (const auto& [name, c] : fixture()["corpora"].items()) {
    std::vector<std::string> hyps, refs;
    corpus_texts(c, hyps, refs);
    if (!wn) break;
    const ev::MeteorCorpus m = ev::meteor_corpus(hyps, refs);
    CHECK(m.wordnet);
    CHECK(m.scores.size() == hyps.size());
    CHECK_MESSAGE(std::abs(m.mean - c["meteor_mean"].get<double>()) <= kTol, name);
  }
  MESSAGE("METEOR: largest difference to nltk " << worst);
}

TEST_CASE("metrics: METEOR: hand-computed cases, empty input, options") {
  ev::MeteorOptions none;
  none.wordnet_dir = kNoWordNetDir;
  // Identical 3-word texts: P = R = 1, one chunk of 3 -> 1 - 0.5 (1/3)^3.
  CHECK(ev::meteor("the cat sat", "The cat sat", none) == doctest::Approx(1 - 0.5 / 27));
  // Stem matches: "fixes" ~ "fixed" (stem "fix"), "bugs" ~ "bug": one chunk of 2.
  CHECK(ev::meteor("fixes bugs", "fixed bug", none) == doctest::Approx(1 - 0.5 / 8));
  const double p = 2.0 / 2, r = 2.0 / 2, f = p * r / (0.9 * p + 0.1 * r);
  CHECK(ev::meteor("b a", "a b", none) == doctest::Approx((1 - 0.5 * 1.0) * f));
  // Custom weights.
  ev::MeteorOptions w = none;
  w.alpha = 0.5;
  w.beta = 2;
  w.gamma = 0.25;
  // hyp "a x" (2), ref "a" (1): m = 1, P = 1/2, R = 1, F = PR / (0.5 P + 0.5 R) = 2/3, frag 1.
  CHECK(ev::meteor("a x", "a", w) == doctest::Approx((1 - 0.25) * (2.0 / 3)));
  CHECK(ev::meteor("", "", none) == 0.0);
  CHECK(ev::meteor("", "a", none) == 0.0);
  CHECK(ev::meteor("a", "", none) == 0.0);
  CHECK(ev::meteor("x y", "a b", none) == 0.0);
  const ev::MeteorCorpus empty = ev::meteor_corpus({}, {}, none);
  CHECK(empty.mean == 0.0);
  CHECK_FALSE(empty.wordnet);
  CHECK(contains(error_of([] { ev::meteor_corpus({"a"}, {}); }), "nq::eval::meteor: 1 hypotheses but 0"));
  if (have_wordnet()) {
    // Synonym stage: "repair" is a WordNet synonym of "fix".
    CHECK(ev::meteor("fix", "repair") == doctest::Approx(1 - 0.5));
    CHECK(ev::meteor("fix", "repair", none) == 0.0);
  }
}

TEST_CASE("metrics: evaluate_texts reports all four metrics") {
  std::vector<std::string> hyps, refs;
  corpus_texts(fixture()["corpora"]["real"], hyps, refs);
  const auto t0 = std::chrono::steady_clock::now();
  const ev::MetricReport r = ev::evaluate_texts(hyps, refs);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const json& c = fixture()["corpora"]["real"];
  CHECK(r.n == hyps.size());
  CHECK(std::abs(r.rouge1 - c["rouge1_mean"].get<double>()) <= kTol);
  CHECK(std::abs(r.rougeL - c["rougeL_mean"].get<double>()) <= kTol);
  CHECK(std::abs(r.bleu - c["bleu"].get<double>()) <= kTol);
  CHECK(r.wordnet == !ev::WordNet::find_dir().empty());
  if (r.wordnet) CHECK(std::abs(r.meteor - c["meteor_mean"].get<double>()) <= kTol);
  MESSAGE("evaluate_texts on " << r.n << " pairs: " << secs << " s (WordNet "
                               << std::string(r.wordnet ? "on" : "off") << ")");
  const ev::MetricReport e = ev::evaluate_texts({}, {});
  CHECK(e.n == 0);
  CHECK(e.bleu == 0.0);
  CHECK(e.meteor == 0.0);
  CHECK(contains(error_of([] { ev::evaluate_texts({"a"}, {}); }), "nq::eval::evaluate_texts"));
}
