// Personalization data: the JSONL loader (good data and one fixture per bad
// input, tests/fixtures/personalization/), prompt templates and the prompt
// builder's history truncation, paired collation (target spans line up across
// the with-history and no-history passes for both pad sides) and the
// deterministic, resumable PairedLoader.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nextquill/data/batch.hpp>
#include <nextquill/data/bpe.hpp>
#include <nextquill/data/personalization.hpp>
#include <nextquill/data/prompt.hpp>
#include <nextquill/nextquill.hpp>
#include <set>
#include <string>
#include <vector>

#include "test_util.hpp"

#ifndef NQ_TEST_DATA_DIR
#define NQ_TEST_DATA_DIR "tests/fixtures"
#endif
#ifndef NQ_SOURCE_DIR
#define NQ_SOURCE_DIR "."
#endif

namespace {

using namespace nq::data;
using nqtest::contains;
using nqtest::error_of;

const std::string kDir = NQ_TEST_DATA_DIR "/personalization";
const std::string kCases = kDir + "/cases/";

std::string load_error(const std::string& name, const LoadOptions& o = {}) {
  return error_of([&] { load_jsonl(kCases + name, o); });
}

// A byte-level tokenizer (one token per byte) with "<|endoftext|>" as EOS (id 256).
BPETokenizer byte_tokenizer() {
  BPETokenizer t;
  t.add_special_token("<|endoftext|>");
  return t;
}

Example make_example(std::vector<std::string> history, std::string query = "a.c +1 -1",
                     std::string target = "area: do it") {
  Example e;
  e.user = "u0001";
  e.history = std::move(history);
  e.query = std::move(query);
  e.target = std::move(target);
  return e;
}

std::vector<int64_t> i64(const nq::Tensor& t) { return t.to_vector<int64_t>(); }

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("personalization: load_dir reads the three splits") {
  std::vector<LoadReport> reports;
  const PersonalizationData d = load_dir(kDir + "/gitcommits_small", {}, &reports);
  CHECK(d.train.size() == 6);
  CHECK(d.valid.size() == 2);
  CHECK(d.test.size() == 2);
  REQUIRE(reports.size() == 3);
  CHECK(contains(reports[0].file, "train.jsonl"));
  CHECK(reports[0].loaded == 6);
  CHECK(reports[0].skipped == 0);
  const Example& e = d.train[0];
  CHECK(e.user == "u0001");
  CHECK(e.line == 1);
  REQUIRE(e.history.size() == 8);
  CHECK(e.history.front() == "Avoid using 'lstat()' to figure out directories");
  CHECK(e.history.back() == "git branch: fix performance problem");  // most recent last
  CHECK(e.query == "builtin-branch.c +14 -10");
  CHECK(e.target == "git branch: avoid unnecessary object lookups");
  CHECK(d.train[3].history.size() == 1);
  CHECK(d.train[5].line == 6);
  bool non_ascii = false;
  for (unsigned char c : d.train[5].target) non_ascii = non_ascii || c >= 0x80;
  CHECK(non_ascii);
  CHECK(unicode::is_valid_utf8(d.train[5].target));
}

TEST_CASE("personalization: missing split files and splits option") {
  const std::string msg = error_of([&] { load_dir(kDir + "/partial"); });
  CHECK(contains(msg, "nq::load_dir: missing split file '"));
  CHECK(contains(msg, "partial/test.jsonl'"));
  LoadOptions o;
  o.splits = {"train", "valid"};
  const PersonalizationData d = load_dir(kDir + "/partial", o);
  CHECK(d.train.size() == 2);
  CHECK(d.valid.size() == 1);
  CHECK(d.test.empty());
  o.splits = {"train", "dev"};
  CHECK(contains(error_of([&] { load_dir(kDir + "/partial", o); }), "unknown split 'dev'"));
  CHECK(contains(error_of([&] { load_dir(kDir + "/nope"); }), "is not a directory"));
  CHECK(contains(error_of([&] { load_jsonl(kCases + "nope.jsonl"); }), "nope.jsonl' does not exist"));
}

TEST_CASE("personalization: malformed records name file, line and field") {
  CHECK(contains(load_error("bad_json.jsonl"),
                 "cases/bad_json.jsonl line 3: invalid JSON: parse error at line 1"));
  CHECK(contains(load_error("missing_field.jsonl"), "missing_field.jsonl line 2: missing field 'target'"));
  CHECK(contains(load_error("number_field.jsonl"),
                 "number_field.jsonl line 4: field 'query' must be a string, got a number"));
  CHECK(contains(load_error("null_field.jsonl"),
                 "null_field.jsonl line 1: field 'user' must be a string, got null"));
  CHECK(contains(
      load_error("history_item_number.jsonl"),
      "history_item_number.jsonl line 9: field 'history' must be an array of strings (item 2 is a number)"));
  CHECK(contains(load_error("history_not_array.jsonl"),
                 "line 1: field 'history' must be an array of strings, got a string"));
  CHECK(contains(load_error("history_item_empty.jsonl"), "line 1: field 'history' item 2 is empty"));
  CHECK(contains(load_error("empty_target.jsonl"), "empty_target.jsonl line 16: field 'target' is empty"));
  CHECK(contains(load_error("blank_target.jsonl"), "line 1: field 'target' is empty (whitespace only)"));
  CHECK(contains(load_error("not_object.jsonl"), "line 1: expected a JSON object, got an array"));
  // Every message starts with the op and the file path.
  CHECK(load_error("null_field.jsonl").starts_with("nq::load_jsonl: " + kCases + "null_field.jsonl line 1"));
}

TEST_CASE("personalization: invalid UTF-8 is reported by field and byte offset") {
  // The raw 0xFF follows "entry.c +14\n" (an escaped newline): offset 12 in the value.
  CHECK(contains(load_error("invalid_utf8.jsonl"),
                 "invalid_utf8.jsonl line 4: field 'query' is not valid UTF-8 (byte offset 12)"));
  CHECK(contains(load_error("invalid_utf8_history.jsonl"),
                 "line 1: field 'history' item 2 is not valid UTF-8 (byte offset 3)"));
  // A bad byte in a line that is not well-formed JSON anyway: a JSON error.
  CHECK(contains(load_error("invalid_utf8_syntax.jsonl"), "line 1: invalid JSON:"));
}

TEST_CASE("personalization: empty files, blank lines, CRLF, BOM, last line without newline") {
  CHECK(contains(load_error("empty.jsonl"), "empty.jsonl: the file is empty"));
  CHECK(contains(load_error("blank_only.jsonl"), "blank_only.jsonl: the file is empty"));

  const auto crlf = load_jsonl(kCases + "crlf.jsonl");
  REQUIRE(crlf.size() == 3);
  CHECK(crlf[0].target == "bloom: fix a typo");
  CHECK(crlf[2].target == "l10n: tr: v2.36.0 round 1");
  CHECK(crlf[2].line == 3);

  const auto bom = load_jsonl(kCases + "bom.jsonl");
  REQUIRE(bom.size() == 2);
  CHECK(bom[0].user == "u0258");

  LoadReport rep;
  const auto blank = load_jsonl(kCases + "blank_lines.jsonl", {}, &rep);
  REQUIRE(blank.size() == 3);
  CHECK(blank[0].line == 2);
  CHECK(blank[1].line == 5);
  CHECK(blank[2].line == 7);
  CHECK(rep.blank_lines == 6);
  CHECK(rep.loaded == 3);

  const auto last = load_jsonl(kCases + "no_final_newline.jsonl");
  REQUIRE(last.size() == 2);
  CHECK(last[1].target == "cbtree: fix a typo");
}

TEST_CASE("personalization: extra fields are ignored, empty history is valid, max_examples") {
  LoadReport rep;
  const auto extra = load_jsonl(kCases + "extra_fields.jsonl", {}, &rep);
  CHECK(extra.size() == 2);
  CHECK(rep.ignored_fields == std::vector<std::string>{"date", "sha"});

  const auto none = load_jsonl(kCases + "empty_history.jsonl");
  REQUIRE(none.size() == 1);
  CHECK(none[0].history.empty());

  LoadOptions o;
  o.max_examples = 2;
  CHECK(load_jsonl(kCases + "crlf.jsonl", o).size() == 2);
}

TEST_CASE("personalization: skip_bad_lines counts and reports bad lines") {
  CHECK(contains(load_error("mixed.jsonl"), "mixed.jsonl line 2: field 'target' is empty"));
  LoadOptions o;
  o.skip_bad_lines = true;
  LoadReport rep;
  const auto ex = load_jsonl(kCases + "mixed.jsonl", o, &rep);
  REQUIRE(ex.size() == 3);
  CHECK(ex[0].line == 1);
  CHECK(ex[1].line == 3);
  CHECK(ex[2].line == 5);
  CHECK(rep.loaded == 3);
  CHECK(rep.skipped == 3);
  REQUIRE(rep.errors.size() == 3);
  CHECK(contains(rep.errors[0], "mixed.jsonl line 2: field 'target' is empty"));
  CHECK(contains(rep.errors[1], "mixed.jsonl line 4: invalid JSON"));
  CHECK(contains(rep.errors[2], "mixed.jsonl line 6: field 'user' must be a string, got a number"));
  // A file with no valid record is an error even when skipping.
  const std::string all = load_error("all_bad.jsonl", o);
  CHECK(contains(all, "all_bad.jsonl: no valid example (all 2 records were rejected; first: "));
  CHECK(contains(all, "line 1: missing field 'history'"));
}

TEST_CASE("personalization: parse_jsonl reads contents in memory; number overflow is a JSON error") {
  const std::string good = R"({"user": "u1", "history": ["a"], "query": "q", "target": "t"})";
  const auto ex = parse_jsonl(good + "\n\n" + good, "mem.jsonl");
  REQUIRE(ex.size() == 2);
  CHECK(ex[1].line == 3);
  // nlohmann reports 1e999 as out_of_range, not parse_error (found by tests/fuzz, fuzz_jsonl).
  const std::string big = R"({"user": "u1", "history": [], "query": 1e999, "target": "t"})";
  const std::string e = error_of([&] { parse_jsonl(good + "\n" + big, "mem.jsonl"); });
  CHECK(contains(e, "nq::load_jsonl: mem.jsonl line 2: invalid JSON: number overflow parsing '1e999'"));
  LoadOptions o;
  o.skip_bad_lines = true;
  LoadReport rep;
  CHECK(parse_jsonl(big + "\n" + good, "mem.jsonl", o, &rep).size() == 1);
  CHECK(rep.skipped == 1);
}

// ---------------------------------------------------------------------------
TEST_CASE("prompt: default template renders with history and with the None placeholder") {
  const PromptTemplate t;
  const Example e = make_example({"old one", "newer", "newest"}, "a.c +1 -1\nb.c +2 -0");
  CHECK(t.render(e, true) ==
        "Past subjects by this author:\n- old one\n- newer\n- newest\n\nChanges:\na.c +1 -1\nb.c +2 "
        "-0\nSubject:\n");
  CHECK(t.render(e, false) ==
        "Past subjects by this author:\nNone\nChanges:\na.c +1 -1\nb.c +2 -0\nSubject:\n");
  CHECK(t.render(e, true, 1) ==
        "Past subjects by this author:\n- newest\n\nChanges:\na.c +1 -1\nb.c +2 -0\nSubject:\n");
  CHECK(t.render(e, true, 0) == t.render(e, false));
  CHECK(t.render(make_example({}), true) == t.render(make_example({}), false));  // no history: placeholder

  PromptTemplate r = PromptTemplate::generic();
  r.newest_first = true;
  r.max_history = 2;
  r.no_history = "(none)";
  CHECK(r.render(e, true) == "History:\n- newest\n- newer\n\nQuery:\na.c +1 -1\nb.c +2 -0\nAnswer:\n");
  CHECK(r.render(e, false) == "History:\n(none)\nQuery:\na.c +1 -1\nb.c +2 -0\nAnswer:\n");

  PromptTemplate s = PromptTemplate::shakespeare();
  Example sp = make_example({"I come."}, "DUKE: Angelo,", "Now, good my lord,");
  sp.user = "ANGELO";
  CHECK(s.render(sp, true) == "Earlier speeches of ANGELO:\nI come.\n--\n\nDUKE: Angelo,\n\nANGELO:\n");

  PromptTemplate braces;
  braces.prompt = "{{literal}} {history}{query}}}";
  const Example b = make_example({}, "{query}");  // values are never re-expanded
  CHECK(braces.render(b, false) == "{literal} Past subjects by this author:\nNone\n{query}}");
}

TEST_CASE("prompt: template validation and JSON") {
  PromptTemplate t;
  t.prompt = "{history}{qurey}";
  CHECK(contains(error_of([&] { t.validate(); }),
                 "prompt: unknown placeholder '{qurey}' (allowed: {history}, {query}, {user}"));
  t.prompt = "{query}";
  CHECK(contains(error_of([&] { t.validate(); }), "prompt must contain {history} exactly once"));
  t.prompt = "{history}{query";
  CHECK(contains(error_of([&] { t.validate(); }), "prompt: unclosed '{'"));
  t = PromptTemplate{};
  t.history_block = "{item}";
  CHECK(contains(error_of([&] { t.validate(); }), "history_block: unknown placeholder '{item}'"));
  t = PromptTemplate{};
  t.history_item = "- \n";
  CHECK(contains(error_of([&] { t.validate(); }), "history_item must contain {item}"));

  const PromptTemplate j = PromptTemplate::from_json(
      nlohmann::json{{"preset", "generic"}, {"no_history", "nothing"}, {"max_history", 4}}, "tpl.json");
  CHECK(j.prompt == PromptTemplate::generic().prompt);
  CHECK(j.no_history == "nothing");
  CHECK(j.max_history == 4);
  const PromptTemplate back = PromptTemplate::from_json(j.to_json());
  CHECK(back.to_json() == j.to_json());
  CHECK(contains(error_of([] {
                   PromptTemplate::from_json(nlohmann::json{{"promt", "x"}}, "tpl.json");
                 }),
                 "tpl.json: unknown key 'promt'"));
  CHECK(contains(error_of([] {
                   PromptTemplate::from_json(nlohmann::json{{"max_history", "4"}}, "tpl.json");
                 }),
                 "tpl.json: key 'max_history' must be an integer, got string"));
  CHECK(contains(error_of([] {
                   PromptTemplate::from_json(nlohmann::json{{"prompt", "{query}"}}, "tpl.json");
                 }),
                 "nq::PromptTemplate: tpl.json: prompt must contain {history} exactly once"));
  CHECK(contains(error_of([] {
                   PromptTemplate::from_json(nlohmann::json{{"preset", "x"}});
                 }),
                 "unknown preset 'x'"));
}

TEST_CASE("prompt: builder drops the oldest history items first, never query or target") {
  const BPETokenizer tok = byte_tokenizer();
  const PromptTemplate tpl;
  const Example e = make_example({"item one", "item two", "item three", "item four"});
  const size_t target_len = e.target.size() + 1;  // bytes + EOS
  // Byte tokens: a prompt's length is its byte length.
  const size_t with2 = tpl.render(e, true, 2).size();
  const PromptBuilder pb(tok, tpl, int64_t(with2 + target_len));
  const EncodedExample x = pb.encode(e);
  CHECK(x.history_used == 2);
  CHECK(x.history_dropped == 2);
  CHECK_FALSE(x.overflow);
  const std::string ph = tok.decode(x.prompt_h);
  CHECK(ph == tpl.render(e, true, 2));
  CHECK(contains(ph, "item three"));
  CHECK(contains(ph, "item four"));
  CHECK_FALSE(contains(ph, "item two"));
  CHECK(contains(ph, e.query));
  CHECK(tok.decode(x.prompt_0) == tpl.render(e, false));
  REQUIRE(x.target.size() == target_len);
  CHECK(x.target.back() == tok.eos_id());
  CHECK(tok.decode(std::vector<int32_t>(x.target.begin(), x.target.end() - 1)) == e.target);
  CHECK(x.user == "u0001");

  // Binary search agrees with dropping one at a time, for every max_len.
  for (int64_t max_len = 2; max_len < int64_t(tpl.render(e, true).size() + target_len + 3); ++max_len) {
    const EncodedExample y = PromptBuilder(tok, tpl, max_len).encode(e);
    size_t k = 4;
    while (k > 0 && int64_t(tpl.render(e, true, k).size() + target_len) > max_len) --k;
    CHECK(y.history_used == int64_t(k));
    CHECK(y.history_used + y.history_dropped == 4);
    CHECK(y.overflow == (int64_t(tpl.render(e, false).size() + target_len) > max_len));
    CHECK(tok.decode(y.prompt_h) == tpl.render(e, true, k));
  }

  // Too short even without history: kept whole, flagged.
  const EncodedExample o = PromptBuilder(tok, tpl, 20).encode(e);
  CHECK(o.overflow);
  CHECK(o.history_used == 0);
  CHECK(o.prompt_h == o.prompt_0);
  CHECK(tok.decode(o.prompt_0) == tpl.render(e, false));

  // No limit; no history.
  const EncodedExample all = PromptBuilder(tok, tpl, 0).encode(e);
  CHECK(all.history_used == 4);
  CHECK(all.history_dropped == 0);
  const EncodedExample none = PromptBuilder(tok, tpl, 256).encode(make_example({}));
  CHECK(none.history_used == 0);
  CHECK(none.prompt_h == none.prompt_0);

  // max_history caps what is available (not counted as dropped).
  PromptTemplate capped;
  capped.max_history = 3;
  const EncodedExample c = PromptBuilder(tok, capped, 0).encode(e);
  CHECK(c.history_used == 3);
  CHECK(c.history_dropped == 0);
}

TEST_CASE("prompt: EOS required, special tokens only from the template") {
  const BPETokenizer plain;
  CHECK(contains(error_of([&] { PromptBuilder pb(plain); }),
                 "nq::PromptBuilder: the tokenizer has no EOS token"));
  BPETokenizer tok = byte_tokenizer();
  const int32_t sep = tok.add_special_token("<|sep|>");
  PromptTemplate t;
  t.prompt = "{history}<|sep|>{query}<|sep|>";
  const Example e = make_example({}, "x <|sep|> y", "<|endoftext|>");
  const EncodedExample x = PromptBuilder(tok, t, 0).encode(e);
  // Two ids from the template; the query's "<|sep|>" stays text.
  CHECK(std::count(x.prompt_0.begin(), x.prompt_0.end(), sep) == 2);
  CHECK(x.prompt_0.back() == sep);
  CHECK(tok.decode(x.prompt_0) == t.render(e, false));
  // The target's "<|endoftext|>" is text too: only the appended EOS is the id.
  CHECK(std::count(x.target.begin(), x.target.end(), tok.eos_id()) == 1);
  t.template_special_tokens = false;
  const EncodedExample y = PromptBuilder(tok, t, 0).encode(e);
  CHECK(std::count(y.prompt_0.begin(), y.prompt_0.end(), sep) == 0);
}

TEST_CASE("prompt: GPT-2 prompt ids + target ids equal the ids of the joined text") {
  const auto tok =
      BPETokenizer::load_gpt2(NQ_SOURCE_DIR "/data/gpt2/encoder.json", NQ_SOURCE_DIR "/data/gpt2/vocab.bpe");
  const PersonalizationData d = load_dir(kDir + "/gitcommits_small");
  const PromptBuilder pb(tok, PromptTemplate{}, 256);
  for (const Example& e : d.train) {
    const EncodedExample x = pb.encode(e);
    CHECK(int64_t(x.prompt_h.size() + x.target.size()) <= 256);
    std::vector<int32_t> joined = x.prompt_h;
    joined.insert(joined.end(), x.target.begin(), x.target.end() - 1);
    CHECK(joined == tok.encode(pb.prompt_template().render(e, true, size_t(x.history_used)) + e.target));
    CHECK(x.target.back() == 50256);
  }
}

// ---------------------------------------------------------------------------
namespace {

std::vector<EncodedExample> some_encoded(int64_t max_len = 0) {
  const BPETokenizer tok = byte_tokenizer();
  PromptTemplate t = PromptTemplate::generic();
  t.prompt = "{history}Q: {query}\n";
  t.history_block = "H:{items}";
  t.history_item = "{item};";
  t.no_history = "-";
  const PromptBuilder pb(tok, t, max_len);
  return pb.encode_all({make_example({"ab", "cdef"}, "q1", "xyz"), make_example({}, "query two", "t"),
                        make_example({"a long history item", "b"}, "q", "target three!")});
}

void check_alignment(const PairedBatch& b, const std::vector<EncodedExample>& ex) {
  const int64_t B = int64_t(ex.size());
  REQUIRE(b.batch_size == B);
  const auto ih = i64(b.ids_h), i0 = i64(b.ids_0), mh = i64(b.mask_h), m0 = i64(b.mask_0);
  const auto rh = i64(b.rows_h), r0 = i64(b.rows_0), y = i64(b.targets), row = i64(b.example);
  const int64_t Lh = b.ids_h.size(1), L0 = b.ids_0.size(1);
  REQUIRE(int64_t(rh.size()) == b.num_targets);
  // Per-pass lengths: each pass padded to its own longest input.
  int64_t want_h = 0, want_0 = 0, n = 0;
  for (const auto& e : ex) {
    want_h = std::max<int64_t>(want_h, int64_t(e.prompt_h.size() + e.target.size()) - 1);
    want_0 = std::max<int64_t>(want_0, int64_t(e.prompt_0.size() + e.target.size()) - 1);
    n += int64_t(e.target.size());
  }
  CHECK(Lh == want_h);
  CHECK(L0 == want_0);
  CHECK(b.num_targets == n);
  for (int64_t r = 0; r < B; ++r) {
    const auto& e = ex[size_t(r)];
    CHECK(b.target_len[size_t(r)] == int64_t(e.target.size()));
    int64_t sh = 0, s0 = 0;
    for (int64_t t = 0; t < Lh; ++t) sh += mh[size_t(r * Lh + t)];
    for (int64_t t = 0; t < L0; ++t) s0 += m0[size_t(r * L0 + t)];
    CHECK(sh == int64_t(e.prompt_h.size() + e.target.size()) - 1);
    CHECK(s0 == int64_t(e.prompt_0.size() + e.target.size()) - 1);
    // Real tokens are contiguous, at the start (right padding) or the end (left).
    const int64_t start_h = b.side == PadSide::Left ? Lh - sh : 0;
    for (int64_t t = 0; t < Lh; ++t)
      CHECK(mh[size_t(r * Lh + t)] == (t >= start_h && t < start_h + sh ? 1 : 0));
    for (size_t i = 0; i < e.prompt_h.size(); ++i) CHECK(ih[size_t(r * Lh + start_h) + i] == e.prompt_h[i]);
  }
  for (int64_t k = 0; k < b.num_targets; ++k) {
    const size_t kk = size_t(k);
    const int64_t r = row[kk];
    const bool last = k + 1 == b.num_targets || row[kk + 1] != r;
    if (!last) {  // the next input token is the target token itself
      CHECK(ih[size_t(rh[kk] + 1)] == y[kk]);
      CHECK(i0[size_t(r0[kk] + 1)] == y[kk]);
    } else {  // the EOS: predicted from the row's last real input token
      CHECK(y[kk] == ex[size_t(r)].target.back());
      CHECK(mh[size_t(rh[kk])] == 1);
      CHECK((rh[kk] + 1 == (r + 1) * Lh || mh[size_t(rh[kk] + 1)] == 0));
      CHECK((r0[kk] + 1 == (r + 1) * L0 || m0[size_t(r0[kk] + 1)] == 0));
    }
    CHECK(rh[kk] / Lh == r);
    CHECK(r0[kk] / L0 == r);
  }
  // Classic labels hold the same information.
  const auto lh = i64(b.labels_h()), l0 = i64(b.labels_0());
  CHECK(b.labels_h().shape() == b.ids_h.shape());
  int64_t nh = 0, n0 = 0;
  for (int64_t v : lh) nh += v != -100;
  for (int64_t v : l0) n0 += v != -100;
  CHECK(nh == b.num_targets);
  CHECK(n0 == b.num_targets);
  for (int64_t k = 0; k < b.num_targets; ++k) {
    CHECK(lh[size_t(rh[size_t(k)])] == y[size_t(k)]);
    CHECK(l0[size_t(r0[size_t(k)])] == y[size_t(k)]);
  }
}

}  // namespace

TEST_CASE("paired batch: target spans line up in both passes, either pad side") {
  const auto ex = some_encoded();
  REQUIRE(ex[0].prompt_h.size() != ex[0].prompt_0.size());
  for (PadSide side : {PadSide::Right, PadSide::Left}) {
    CAPTURE(int(side));
    const PairedBatch b = collate_pairs(ex, 999, side);
    check_alignment(b, ex);
    // Pads carry pad_id.
    const auto ih = i64(b.ids_h), mh = i64(b.mask_h);
    for (size_t i = 0; i < ih.size(); ++i)
      if (mh[i] == 0) CHECK(ih[i] == 999);
  }
  // Right padding: row 0 starts at column 0 and its first target token is predicted at |prompt| - 1.
  const PairedBatch r = collate_pairs(ex, 0, PadSide::Right);
  CHECK(i64(r.rows_h)[0] == int64_t(ex[0].prompt_h.size()) - 1);
  CHECK(i64(r.rows_0)[0] == int64_t(ex[0].prompt_0.size()) - 1);
  CHECK(contains(error_of([] { collate_pairs({}, 0); }), "nq::collate_pairs: no examples"));
  std::vector<EncodedExample> bad = ex;
  bad[1].prompt_0.clear();
  CHECK(contains(error_of([&] { collate_pairs(bad, 0); }), "example 1 has an empty prompt"));
}

TEST_CASE("paired batch: the model's logits agree between left and right padding") {
  const auto ex = some_encoded();
  nq::CausalLM model(nq::CausalLMConfig::gpt2(257, 64, 16, 1, 2), 3);
  model.eval();
  const PairedBatch l = collate_pairs(ex, 0, PadSide::Left), r = collate_pairs(ex, 0, PadSide::Right);
  auto pick = [&](const nq::Tensor& ids, const nq::Tensor& mask, const nq::Tensor& rows) {
    nq::NoGradGuard ng;
    nq::ForwardOptions o;
    o.attention_mask = mask;
    const nq::Tensor logits = model.forward(ids, o);
    return nq::embedding(logits.reshape({-1, 257}), rows).to_vector<double>();
  };
  const auto lh = pick(l.ids_h, l.mask_h, l.rows_h), rh = pick(r.ids_h, r.mask_h, r.rows_h);
  const auto l0 = pick(l.ids_0, l.mask_0, l.rows_0), r0 = pick(r.ids_0, r.mask_0, r.rows_0);
  REQUIRE(lh.size() == rh.size());
  double dh = 0, d0 = 0, dd = 0;
  for (size_t i = 0; i < lh.size(); ++i) {
    dh = std::max(dh, std::abs(lh[i] - rh[i]));
    d0 = std::max(d0, std::abs(l0[i] - r0[i]));
    dd = std::max(dd, std::abs(lh[i] - l0[i]));
  }
  CHECK(dh < 1e-4);
  CHECK(d0 < 1e-4);
  CHECK(dd > 1e-3);  // the two passes see different prompts
}

TEST_CASE("paired batch: max_len cuts prompts from the left, targets only when alone too long") {
  const BPETokenizer tok = byte_tokenizer();
  const PromptTemplate t;
  const Example e = make_example({"some history"}, "query text", "target");
  const PromptBuilder pb(tok, t, 16);
  const EncodedExample x = pb.encode(e);
  REQUIRE(x.overflow);
  REQUIRE(x.target.size() == 7);
  for (PadSide side : {PadSide::Right, PadSide::Left}) {
    const PairedBatch b = collate_pairs({x}, 0, side, 16);
    // prompt keeps its last 16 - 7 = 9 tokens; inputs = 9 + 7 - 1.
    CHECK(b.ids_h.size(1) == 15);
    CHECK(b.ids_0.size(1) == 15);
    const auto ids = i64(b.ids_0);
    for (size_t i = 0; i < 9; ++i) CHECK(ids[i] == x.prompt_0[x.prompt_0.size() - 9 + i]);
    CHECK(i64(b.targets) == std::vector<int64_t>(x.target.begin(), x.target.end()));
  }
  // A target longer than the cap: prompt keeps 1 token, target keeps max_len - 2 tokens + EOS.
  const PairedBatch c = collate_pairs({x}, 0, PadSide::Right, 5);
  CHECK(c.ids_h.size(1) == 4);
  CHECK(c.target_len[0] == 4);
  const auto y = i64(c.targets);
  CHECK(y == std::vector<int64_t>{x.target[0], x.target[1], x.target[2], tok.eos_id()});
  CHECK(i64(c.ids_h)[0] == x.prompt_h.back());
  CHECK(i64(c.rows_h) == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(contains(error_of([&] { collate_pairs({x}, 0, PadSide::Right, 1); }), "max_len must be >= 2"));
}

TEST_CASE("paired batch: generation prompts") {
  const auto ex = some_encoded();
  const auto ph = generation_prompts(ex, true), p0 = generation_prompts(ex, false);
  REQUIRE(ph.size() == 3);
  CHECK(ph[0] == std::vector<int64_t>(ex[0].prompt_h.begin(), ex[0].prompt_h.end()));
  CHECK(p0[2] == std::vector<int64_t>(ex[2].prompt_0.begin(), ex[2].prompt_0.end()));
  const auto cut = generation_prompts(ex, true, 3);
  CHECK(cut[0] == std::vector<int64_t>(ex[0].prompt_h.end() - 3, ex[0].prompt_h.end()));
}

// ---------------------------------------------------------------------------
namespace {

std::vector<EncodedExample> many_encoded(int n) {
  const BPETokenizer tok = byte_tokenizer();
  const PromptBuilder pb(tok, PromptTemplate{}, 0);
  std::vector<Example> exs;
  for (int i = 0; i < n; ++i) {
    const std::string num = std::to_string(i);  // not "h" + num: GCC 12 -Wrestrict false positive
    exs.push_back(make_example({std::string("h").append(num)}, std::string("q").append(num),
                               std::string("t").append(std::to_string(i * 7))));
  }
  return pb.encode_all(exs);
}

std::vector<std::vector<int64_t>> epoch_batches(PairedLoader& l) {
  std::vector<std::vector<int64_t>> out;
  PairedBatch b;
  while (l.next(b)) {
    out.push_back(i64(b.ids_h));
    const auto t = i64(b.targets);
    out.back().insert(out.back().end(), t.begin(), t.end());
  }
  return out;
}

}  // namespace

TEST_CASE("paired loader: deterministic shuffling, epochs, resume") {
  const auto data = many_encoded(23);
  PairedLoader a(data, 5, true, 42), b(data, 5, true, 42), c(data, 5, true, 43);
  CHECK(a.batches_per_epoch() == 5);
  CHECK(a.order() == b.order());
  CHECK(a.order() != c.order());
  std::set<int64_t> seen(a.order().begin(), a.order().end());
  CHECK(seen.size() == 23);
  PairedBatch batch;
  int64_t rows = 0, nb = 0;
  while (a.next(batch)) rows += batch.batch_size, ++nb;
  CHECK(rows == 23);
  CHECK(nb == 5);
  CHECK(batch.batch_size == 3);  // the last, partial batch
  const auto first = b.order();
  a.reset_epoch();
  CHECK(a.epoch() == 1);
  CHECK(a.order() != first);  // a new order each epoch

  // Resume mid-epoch from a saved position, across the next epoch boundary.
  PairedLoader x(data, 4, true, 7);
  epoch_batches(x);
  x.reset_epoch();
  x.next(batch);
  x.next(batch);
  const std::string saved = x.position().str();
  auto rest_x = epoch_batches(x);
  x.reset_epoch();
  auto next_x = epoch_batches(x);

  PairedLoader y(data, 4, true, 999);  // a different seed: the position carries the RNG state
  y.set_position(LoaderPosition::parse(saved));
  CHECK(y.epoch() == 1);
  CHECK(epoch_batches(y) == rest_x);
  y.reset_epoch();
  CHECK(epoch_batches(y) == next_x);
  CHECK(y.position().str() == x.position().str());

  // Without shuffling the order is the identity; drop_last drops the partial batch.
  PairedLoader s(data, 5, false, 0, PadSide::Left, 0, 0, true);
  CHECK(s.order()[7] == 7);
  CHECK(s.batches_per_epoch() == 4);
  CHECK(epoch_batches(s).size() == 4);
  s.reset_epoch();
  s.next(batch);
  CHECK(s.last_indices() == std::vector<int64_t>{0, 1, 2, 3, 4});

  const auto small = many_encoded(5);
  PairedLoader z(small, 2, true, 1);
  CHECK(contains(error_of([&] { z.set_position(LoaderPosition::parse(saved)); }),
                 "position is for a dataset of 23 examples, this one has 5"));
  CHECK(contains(error_of([] { LoaderPosition::parse("x"); }), "cannot parse"));
}
