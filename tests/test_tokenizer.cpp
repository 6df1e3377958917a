// Byte-level BPE tokenizer (nq::data::BPETokenizer) and trainer (BPETrainer):
// GPT-2 ids against HF tokenizers on the fixture corpus that
// tools/make_tokenizer_fixture.py writes (tests/fixtures/tokenizer/), round
// trips on arbitrary bytes, special tokens, error messages for malformed files,
// and the trainer against a naive reference (in C++ here and in Python in the
// fixture).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nextquill/data/bpe.hpp>
#include <nextquill/data/bpe_trainer.hpp>
#include <nextquill/data/unicode.hpp>
#include <nextquill/io/safetensors.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

#ifndef NQ_TEST_DATA_DIR
#define NQ_TEST_DATA_DIR "tests/fixtures"
#endif
#ifndef NQ_SOURCE_DIR
#define NQ_SOURCE_DIR "."
#endif

namespace {

namespace fs = std::filesystem;
using nq::data::BPETokenizer;
using nq::data::BPETrainer;
using nq::data::BPETrainerOptions;
using nqtest::contains;
using nqtest::error_of;

const std::string kGpt2Dir = std::string(NQ_SOURCE_DIR) + "/data/gpt2";
const std::string kFixtureDir = std::string(NQ_TEST_DATA_DIR) + "/tokenizer";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

// A fresh, empty temporary directory, removed when the object dies.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path =
        fs::temp_directory_path() /
        ("nq_tok_" + tag + "_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) +
         "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str(const std::string& name = "") const { return (path / name).string(); }
};

// GPT-2 plus the chat markers, as the fixture's reference tokenizer.
const BPETokenizer& gpt2() {
  static const BPETokenizer tok = [] {
    BPETokenizer t = BPETokenizer::load_gpt2(kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
    t.add_special_tokens({"<|user|>", "<|assistant|>"});
    return t;
  }();
  return tok;
}

struct Corpus {
  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> ids;  // reference GPT-2 ids per document
  // Synthetic documents: HF's pre-tokenizer piece lengths (bytes), by document.
  std::vector<std::pair<size_t, std::vector<size_t>>> pieces;
};

std::vector<int64_t> as_i64(const nq::io::RawTensor& t) {
  REQUIRE(t.dtype == "I64");
  std::vector<int64_t> v(t.bytes.size() / 8);
  std::memcpy(v.data(), t.bytes.data(), v.size() * 8);
  return v;
}

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus c;
    const std::string text = slurp(kFixtureDir + "/corpus.txt");
    const auto st = nq::io::read_safetensors(kFixtureDir + "/gpt2_ids.safetensors");
    const auto doc_bytes = as_i64(st.tensors.at("doc_bytes"));
    const auto doc_tokens = as_i64(st.tensors.at("doc_tokens"));
    const auto& ids = st.tensors.at("ids");
    REQUIRE(ids.dtype == "U16");
    REQUIRE(doc_bytes.size() == doc_tokens.size());
    size_t pos = 0, tok = 0;
    for (size_t d = 0; d < doc_bytes.size(); ++d) {
      REQUIRE(pos + size_t(doc_bytes[d]) < text.size() + 1);
      c.docs.push_back(text.substr(pos, size_t(doc_bytes[d])));
      pos += size_t(doc_bytes[d]) + 1;  // each document is followed by one '\n'
      std::vector<int32_t> v;
      for (int64_t k = 0; k < doc_tokens[d]; ++k, ++tok)
        v.push_back(int32_t(ids.bytes[2 * tok] | (ids.bytes[2 * tok + 1] << 8)));
      c.ids.push_back(std::move(v));
    }
    REQUIRE(pos == text.size());
    REQUIRE(2 * tok == ids.bytes.size());
    const auto piece_docs = as_i64(st.tensors.at("piece_docs"));
    const auto piece_counts = as_i64(st.tensors.at("piece_counts"));
    const auto& piece_bytes = st.tensors.at("piece_bytes");
    REQUIRE(piece_bytes.dtype == "U16");
    size_t k = 0;
    for (size_t i = 0; i < piece_docs.size(); ++i) {
      std::vector<size_t> lens;
      for (int64_t j = 0; j < piece_counts[i]; ++j, ++k)
        lens.push_back(size_t(piece_bytes.bytes[2 * k] | (piece_bytes.bytes[2 * k + 1] << 8)));
      c.pieces.emplace_back(size_t(piece_docs[i]), std::move(lens));
    }
    REQUIRE(2 * k == piece_bytes.bytes.size());
    return c;
  }();
  return c;
}

// Printable form of bytes for messages: escapes controls and non-ASCII bytes.
std::string show(std::string_view s, size_t max = 200) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = uint8_t(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string show_ids(const BPETokenizer& tok, const std::vector<int32_t>& ids, size_t from, size_t to) {
  std::ostringstream os;
  for (size_t i = from; i < std::min(to, ids.size()); ++i)
    os << ids[i] << "'" << show(tok.token_bytes(ids[i]), 40) << "' ";
  return os.str();
}

std::vector<std::string> pieces(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : nq::data::gpt2_pretokenize(s)) out.emplace_back(p);
  return out;
}

// Random bytes biased towards what stresses the pre-tokenizer and the decoder.
std::string random_bytes(std::mt19937& rng, size_t len) {
  static const std::vector<std::string> parts = {
      "a",
      "Z",
      "s",
      "t",
      "re",
      "'",
      " ",
      " ",
      "\t",
      "\n",
      "\r\n",
      "1",
      "9",
      "!",
      ".",
      "<|",
      "|>",
      "\xc3\xa9",
      "\xe4\xb8\xad",
      "\xf0\x9f\x98\x80",
      "\xc2\xa0",
      "\xe3\x80\x80",
      "\xcc\x81",  // é 中 😀 nbsp 　 ◌́
      "\x80",
      "\xbf",
      "\xc0",
      "\xc1\x81",
      "\xe0\x80\x80",
      "\xed\xa0\x80",
      "\xf4\x90\x80\x80",
      "\xf8",
      "\xff",
      "\xe4\xb8",
      "\xf0\x9f\x98",
      "\xc3"};  // malformed: stray, overlong, surrogate, > U+10FFFF, truncated
  std::string s;
  std::uniform_int_distribution<int> coin(0, 3);
  while (s.size() < len) {
    if (coin(rng) == 0)
      s += char(std::uniform_int_distribution<int>(0, 255)(rng));
    else
      s += parts[std::uniform_int_distribution<size_t>(0, parts.size() - 1)(rng)];
  }
  return s;
}

// The merges of a tokenizer as (left bytes, right bytes).
std::vector<std::pair<std::string, std::string>> merge_bytes(const BPETokenizer& t) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto [a, b] : t.merges()) out.emplace_back(t.token_bytes(a), t.token_bytes(b));
  return out;
}

// Naive trainer with BPETrainer's documented semantics: recount all pairs each step.
std::vector<std::pair<std::string, std::string>> naive_train(const std::vector<std::string>& texts,
                                                             size_t num_merges, int64_t min_frequency) {
  std::map<std::string, int64_t> counts;
  for (const auto& t : texts)
    nq::data::gpt2_pretokenize(t, [&](std::string_view p) { ++counts[std::string(p)]; });
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (const auto& [w, c] : counts) {
    std::vector<std::string> s;
    for (char ch : w) s.emplace_back(1, ch);
    words.emplace_back(std::move(s), c);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  std::set<std::pair<std::string, std::string>> seen;
  while (merges.size() < num_merges) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;  // ordered by (left, right) bytes
    for (const auto& [s, c] : words)
      for (size_t i = 0; i + 1 < s.size(); ++i) pairs[{s[i], s[i + 1]}] += c;
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;
    if (best->second < min_frequency) break;
    const auto [a, b] = best->first;
    for (auto& [s, c] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          out.push_back(a + b);
          i += 2;
        } else {
          out.push_back(s[i++]);
        }
      }
      s = std::move(out);
    }
    if (seen.insert({a, b}).second) merges.emplace_back(a, b);
  }
  return merges;
}

// A small valid vocabulary: 256 byte tokens + "Ġt", "he", "Ġthe".
BPETokenizer small_vocab() {
  std::vector<std::string> tokens;
  for (int i = 0; i < 256; ++i)
    tokens.push_back(nq::data::bytelevel::byte_char(nq::data::bytelevel::kTables.order[size_t(i)]));
  tokens.insert(tokens.end(), {"Ġt", "he", "Ġthe"});
  return BPETokenizer::from_vocab(tokens, {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}});
}

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("tokenizer: unicode classes and lenient UTF-8 decoding") {
  using nq::data::unicode::char_class;
  using nq::data::unicode::CharClass;
  CHECK(char_class(U'a') == CharClass::Letter);
  CHECK(char_class(U'é') == CharClass::Letter);
  CHECK(char_class(U'中') == CharClass::Letter);
  CHECK(char_class(U'\u1C89') == CharClass::Letter);  // Unicode 16 (unknown to Python 3.11's unicodedata)
  CHECK(char_class(U'٣') == CharClass::Number);
  CHECK(char_class(U'½') == CharClass::Number);
  CHECK(char_class(U'Ⅻ') == CharClass::Number);
  CHECK(char_class(U'\u00A0') == CharClass::Space);
  CHECK(char_class(U'\u3000') == CharClass::Space);
  CHECK(char_class(U'\u0085') == CharClass::Space);
  CHECK(char_class(U'\u001C') == CharClass::Other);  // isspace() in Python, not White_Space
  CHECK(char_class(U'\u200B') == CharClass::Other);  // zero-width space is not White_Space
  CHECK(char_class(U'\u0301') == CharClass::Other);  // combining mark
  CHECK(char_class(U'😀') == CharClass::Other);
  CHECK(char_class(U'\U0010FFFF') == CharClass::Other);

  using nq::data::unicode::decode_utf8;
  auto lens = [](std::string_view s) {
    std::vector<int> v;
    for (size_t i = 0; i < s.size();) {
      const auto c = decode_utf8(s, i);
      v.push_back(c.valid ? c.len : -1);
      i += c.len;
    }
    return v;
  };
  CHECK(lens("a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80") == std::vector<int>{1, 2, 3, 4});
  CHECK(lens("\x80\xc0\xaf") == std::vector<int>{-1, -1, -1});          // stray, overlong
  CHECK(lens("\xed\xa0\x80") == std::vector<int>{-1, -1, -1});          // surrogate
  CHECK(lens("\xf4\x90\x80\x80") == std::vector<int>{-1, -1, -1, -1});  // > U+10FFFF
  CHECK(lens("\xe4\xb8z") == std::vector<int>{-1, -1, 1});              // truncated
  CHECK(nq::data::unicode::is_valid_utf8("h\xc3\xa9llo"));
  CHECK_FALSE(nq::data::unicode::is_valid_utf8("h\xc3llo"));
}

TEST_CASE("tokenizer: GPT-2 pre-tokenizer pieces") {
  using V = std::vector<std::string>;
  CHECK(pieces("Hello world") == V{"Hello", " world"});
  CHECK(pieces("I'm it's they're we've I'll he'd") ==
        V{"I", "'m", " it", "'s", " they", "'re", " we", "'ve", " I", "'ll", " he", "'d"});
  CHECK(pieces("IT'S") == V{"IT", "'", "S"});  // contractions are lower case only
  CHECK(pieces("''s") == V{"''", "s"});
  CHECK(pieces("a  b") == V{"a", " ", " b"});
  CHECK(pieces("a\n\nb") == V{"a", "\n", "\n", "b"});
  CHECK(pieces("a \n b") == V{"a", " \n", " b"});
  CHECK(pieces("a   ") == V{"a", "   "});
  CHECK(pieces(" 123abc") == V{" 123", "abc"});
  CHECK(pieces("x!!! y?") == V{"x", "!!!", " y", "?"});
  CHECK(pieces("a\xc2\xa0"
               "b") == V{"a", "\xc2\xa0", "b"});  // NBSP is whitespace but never a prefix
  CHECK(pieces("a\x1c"
               "b") == V{"a", "\x1c", "b"});
  CHECK(pieces(" \xff\xfe x") == V{" \xff\xfe", " x"});  // malformed bytes are Other
  CHECK(pieces("") == V{});
}

TEST_CASE("tokenizer: pre-tokenizer pieces match HF tokenizers on the synthetic documents") {
  const Corpus& c = corpus();
  REQUIRE(c.pieces.size() > 5000);
  size_t bad = 0;
  for (const auto& [d, want] : c.pieces) {
    std::vector<size_t> got;
    nq::data::gpt2_pretokenize(c.docs[d], [&](std::string_view p) { got.push_back(p.size()); });
    if (got == want) continue;
    if (bad++ == 0) {
      size_t k = 0, off = 0;
      while (k < got.size() && k < want.size() && got[k] == want[k]) off += got[k++];
      const std::string_view doc(c.docs[d]);
      FAIL_CHECK("document " << d << ": \"" << show(doc, 300) << "\"\n  first different piece #" << k
                             << " at byte " << off << ": expected \""
                             << show(doc.substr(off, k < want.size() ? want[k] : 0)) << "\", got \""
                             << show(doc.substr(off, k < got.size() ? got[k] : 0)) << "\"");
    }
  }
  CHECK_MESSAGE(bad == 0, bad << " of " << c.pieces.size() << " documents split differently");
}

TEST_CASE("tokenizer: GPT-2 ids match HF tokenizers on the fixture corpus") {
  const BPETokenizer& tok = gpt2();
  const Corpus& c = corpus();
  REQUIRE(c.docs.size() > 10000);
  size_t bad = 0, tokens = 0, bytes = 0;
  for (size_t d = 0; d < c.docs.size(); ++d) {
    const std::vector<int32_t> got = tok.encode(c.docs[d], /*allow_special=*/true);
    tokens += got.size();
    bytes += c.docs[d].size();
    if (got == c.ids[d]) continue;
    if (bad++ == 0) {  // report the first mismatch in detail
      const auto& want = c.ids[d];
      size_t k = 0;
      while (k < got.size() && k < want.size() && got[k] == want[k]) ++k;
      const size_t from = k >= 3 ? k - 3 : 0;
      FAIL_CHECK("document " << d << " (" << c.docs[d].size() << " bytes): \"" << show(c.docs[d], 300)
                             << "\"\n  first difference at token " << k
                             << "\n  expected: " << show_ids(tok, want, from, k + 5)
                             << "\n  got:      " << show_ids(tok, got, from, k + 5));
    }
  }
  CHECK_MESSAGE(bad == 0, bad << " of " << c.docs.size() << " documents differ");
  MESSAGE("GPT-2 fixture: " << c.docs.size() << " documents, " << bytes << " bytes, " << tokens << " tokens");
}

TEST_CASE("tokenizer: concurrent encode calls share the piece cache safely") {
  const BPETokenizer tok = gpt2();  // a copy starts with an empty cache
  const Corpus& c = corpus();
  std::vector<size_t> bad(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t d = t; d < c.docs.size(); d += 4) bad[t] += tok.encode(c.docs[d], true) != c.ids[d];
    });
  for (auto& th : threads) th.join();
  CHECK(bad == std::vector<size_t>(4, 0));
}

TEST_CASE("tokenizer: decode(encode(s)) == s on the corpus and on random bytes") {
  const BPETokenizer& tok = gpt2();
  const Corpus& c = corpus();
  for (size_t d = 0; d < c.docs.size(); d += 7) {
    CAPTURE(d);
    CHECK(tok.decode(tok.encode(c.docs[d])) == c.docs[d]);
    CHECK(tok.decode(c.ids[d]) == c.docs[d]);
  }
  std::mt19937 rng(1234);
  for (int i = 0; i < 3000; ++i) {
    const std::string s = random_bytes(rng, size_t(std::uniform_int_distribution<int>(0, 80)(rng)));
    std::string joined;
    bool empty_piece = false;
    nq::data::gpt2_pretokenize(s, [&](std::string_view p) {
      empty_piece |= p.empty();
      joined += p;
    });
    const auto plain = tok.encode(s), special = tok.encode(s, true);
    if (joined != s || empty_piece || tok.decode(plain) != s || tok.decode(special) != s)
      FAIL_CHECK("round trip failed for \"" << show(s) << "\"");
  }
  const std::string big = random_bytes(rng, 200000);  // long pieces take the heap merge path
  CHECK(tok.decode(tok.encode(big)) == big);
  const std::string allbytes = [] {
    std::string s;
    for (int r = 0; r < 3; ++r)
      for (int b = 0; b < 256; ++b) s += char(b);
    return s;
  }();
  CHECK(tok.decode(tok.encode(allbytes)) == allbytes);
}

TEST_CASE("tokenizer: long pieces (heap merge path) agree with the linear scan") {
  const BPETokenizer& tok = gpt2();
  // Concatenating short pieces' results is not the answer; compare with HF ids from the fixture
  // for long words, and here check the heap path against an OpenAI-style reference.
  auto reference = [&](std::string_view piece) {  // repeatedly merge every occurrence of the best pair
    std::vector<int32_t> s;
    for (unsigned char b : piece) s.push_back(tok.byte_to_id(b));
    std::map<std::pair<int32_t, int32_t>, size_t> rank;
    for (size_t r = 0; r < tok.merges().size(); ++r) rank.emplace(tok.merges()[r], r);
    while (s.size() > 1) {
      size_t best = SIZE_MAX;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        auto it = rank.find({s[i], s[i + 1]});
        if (it != rank.end()) best = std::min(best, it->second);
      }
      if (best == SIZE_MAX) break;
      std::vector<int32_t> out;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && std::pair(s[i], s[i + 1]) == tok.merges()[best]) {
          out.push_back(tok.merge_result(best));
          i += 2;
        } else {
          out.push_back(s[i++]);
        }
      }
      s = std::move(out);
    }
    return s;
  };
  std::mt19937 rng(7);
  const std::string letters = "etaoinshrdlucmfwypvbgkqjxz";
  for (int i = 0; i < 20; ++i) {
    std::string w;
    const size_t n = size_t(std::uniform_int_distribution<int>(40, 400)(rng));
    for (size_t k = 0; k < n; ++k)
      w += letters[std::uniform_int_distribution<size_t>(0, i % 2 ? 5 : 25)(rng)];
    CAPTURE(w);
    CHECK(tok.bpe(w) == reference(w));
  }
  CHECK(tok.bpe(std::string(300, 'a')) == reference(std::string(300, 'a')));
}

TEST_CASE("tokenizer: special tokens") {
  BPETokenizer tok = BPETokenizer::load_gpt2(kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
  CHECK(tok.vocab_size() == 50257);
  CHECK(tok.eos_id() == 50256);
  CHECK(tok.is_special(50256));
  CHECK_FALSE(tok.is_special(0));
  CHECK(tok.token_to_id("<|endoftext|>") == 50256);
  CHECK(tok.token_to_id("Ġthe") == 262);
  CHECK_FALSE(tok.token_to_id("no such token").has_value());
  CHECK(tok.id_to_token(262) == "Ġthe");
  CHECK(tok.token_bytes(262) == " the");
  CHECK(tok.encode("Hello world") == std::vector<int32_t>{15496, 995});

  const auto ids = tok.add_special_tokens({"<|user|>", "<|assistant|>", "<|endoftext|>"});
  CHECK(ids == std::vector<int32_t>{50257, 50258, 50256});
  CHECK(tok.vocab_size() == 50259);
  CHECK(tok.add_special_token("<|user|>") == 50257);  // adding twice keeps the id
  CHECK(tok.special_tokens() == std::vector<std::string>{"<|endoftext|>", "<|user|>", "<|assistant|>"});

  const std::string chat = "<|user|>Hi there<|assistant|>Hello!<|endoftext|>";
  const auto with = tok.encode(chat, /*allow_special=*/true);
  CHECK(with == std::vector<int32_t>{50257, 17250, 612, 50258, 15496, 0, 50256});
  const auto without = tok.encode(chat);  // default: special strings are plain text
  CHECK(std::find(without.begin(), without.end(), 50256) == without.end());
  CHECK(std::find(without.begin(), without.end(), 50257) == without.end());
  CHECK(tok.decode(with) == chat);
  CHECK(tok.decode(without) == chat);
  CHECK(tok.encode("<|endoftext|>") == std::vector<int32_t>{27, 91, 437, 1659, 5239, 91, 29});
  CHECK(tok.encode("<|endoftext|", true) == tok.encode("<|endoftext|"));  // no partial matches

  // Longest match wins; a special token never merges with its neighbours.
  tok.add_special_token("<|user|>x");
  CHECK(tok.encode("<|user|>x<|user|>y", true) == std::vector<int32_t>{50259, 50257, 88});
  CHECK(tok.encode("a<|user|>b", true) == std::vector<int32_t>{64, 50257, 65});

  // Non-ASCII special tokens are stored verbatim.
  const int32_t zh = tok.add_special_token("<|用户|>");
  CHECK(tok.encode("x<|用户|>", true) == std::vector<int32_t>{87, zh});
  CHECK(tok.decode({zh}) == "<|用户|>");
  CHECK(tok.id_to_token(zh) == "<|用户|>");

  CHECK(contains(error_of([&] { tok.add_special_token(""); }), "must not be empty"));
  CHECK(contains(error_of([&] { tok.add_special_token("\xff"); }), "not valid UTF-8"));
  // An ordinary token that stands for different bytes cannot become special.
  CHECK(contains(error_of([&] { tok.add_special_token("Ġthe"); }), "cannot become special"));
  CHECK(contains(error_of([&] { tok.decode({50300}); }), "id 50300 is out of range [0, 50261)"));
  CHECK(contains(error_of([&] { tok.decode({-1}); }), "out of range"));
  CHECK(contains(error_of([&] { tok.set_eos_token("Ġthe"); }), "not a special token"));
  tok.set_eos_token("<|assistant|>");
  CHECK(tok.eos_id() == 50258);

  BPETokenizer bytes_only;  // default: 256 byte tokens, no EOS
  CHECK(bytes_only.vocab_size() == 256);
  CHECK(bytes_only.encode("hi") == std::vector<int32_t>{71, 72});
  CHECK_FALSE(bytes_only.has_eos());
  CHECK(contains(error_of([&] { (void)bytes_only.eos_id(); }), "no EOS token"));
}

TEST_CASE("tokenizer: save/load reproduces OpenAI's files byte for byte") {
  TempDir dir("save");
  const BPETokenizer& tok = gpt2();
  tok.save(dir.str());
  CHECK(slurp(dir.path / "encoder.json").size() > 1000000);
  // The chat markers are appended to encoder.json, so compare it without them.
  BPETokenizer plain = BPETokenizer::load_gpt2(kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
  TempDir dir2("save2");
  plain.save(dir2.str());
  CHECK(slurp(dir2.path / "encoder.json") == slurp(kGpt2Dir + "/encoder.json"));
  CHECK(slurp(dir2.path / "vocab.bpe") == slurp(kGpt2Dir + "/vocab.bpe"));

  const BPETokenizer back = BPETokenizer::load(dir.str());
  CHECK(back.vocab_size() == tok.vocab_size());
  CHECK(back.special_tokens() == tok.special_tokens());
  CHECK(back.eos_id() == 50256);
  const Corpus& c = corpus();
  for (size_t d = 0; d < c.docs.size(); d += 13) {
    CAPTURE(d);
    CHECK(back.encode(c.docs[d], true) == c.ids[d]);
  }
  // No leftover temporary files.
  for (const auto& e : fs::directory_iterator(dir.path)) CHECK_FALSE(contains(e.path().string(), ".tmp."));
}

TEST_CASE("tokenizer: malformed vocabulary files give errors naming the file and line") {
  TempDir dir("bad");
  small_vocab().save(dir.str());
  const std::string enc = slurp(dir.path / "encoder.json");
  const std::string bpe = slurp(dir.path / "vocab.bpe");
  REQUIRE(bpe == "#version: 0.2\nĠ t\nh e\nĠt he\n");
  {
    const BPETokenizer ok = BPETokenizer::load(dir.str());
    CHECK(ok.encode(" the") == std::vector<int32_t>{258});
    CHECK_FALSE(ok.has_eos());
  }
  auto load_error = [&](const std::string& enc_text, const std::string& bpe_text) {
    write_file(dir.path / "encoder.json", enc_text);
    write_file(dir.path / "vocab.bpe", bpe_text);
    return error_of([&] { BPETokenizer::load(dir.str()); });
  };
  std::string e;
  e = load_error(enc, "#version: 0.2\nĠ t\nh e\nĠt hx\n");
  CHECK(contains(e, "vocab.bpe line 4: merge 'Ġt hx' uses unknown token 'hx'"));
  e = load_error(enc, "#version: 0.2\nĠ t\nhe\n");
  CHECK(contains(e, "vocab.bpe line 3: expected two tokens separated by one space, got 'he'"));
  e = load_error(enc, "#version: 0.2\nĠ t\nh  e\n");
  CHECK(contains(e, "vocab.bpe line 3: expected two tokens"));
  e = load_error(enc, "#version: 0.2\nĠ t\nĠ h\n");
  CHECK(contains(e, "vocab.bpe line 3: merge 'Ġ h' makes 'Ġh', which is not in"));
  e = load_error(enc, "#version: 0.2\nĠ t\nh e\nĠ t\n");
  CHECK(contains(e, "vocab.bpe line 4: duplicate merge 'Ġ t' (first on line 2)"));
  e = load_error(enc, "#version: 0.2\nĠ t\n\nh e\n");
  CHECK(contains(e, "vocab.bpe line 3: empty line"));
  CHECK(load_error(enc, "#version: 0.2\r\nĠ t\r\nh e\r\n\r\n")
            .empty());                         // CRLF and trailing blank lines are fine
  CHECK(load_error(enc, "Ġ t\nh e").empty());  // no header, no final newline

  e = load_error("{\n  \"!\": 0,\n  \"\\\"\": ,\n}", bpe);
  CHECK(contains(e, "encoder.json line 3"));
  CHECK(contains(e, "invalid JSON"));
  e = load_error("[1, 2]", bpe);
  CHECK(contains(e, "encoder.json: expected a JSON object"));
  std::string bad_id = enc;
  bad_id.replace(bad_id.find("\"!\": 0"), 6, "\"!\": \"0\"");
  CHECK(contains(load_error(bad_id, bpe), "encoder.json: token '!': id must be an integer, got \"0\""));
  std::string big_id = enc;
  big_id.replace(big_id.find("\"!\": 0"), 6, "\"!\": 999");
  CHECK(contains(load_error(big_id, bpe), "token '!': id 999 is out of range [0, 259)"));
  std::string dup_id = enc;
  dup_id.replace(dup_id.find("\"\\\"\": 1"), 7, "\"\\\"\": 0");
  CHECK(contains(load_error(dup_id, bpe), "encoder.json: id 0 is used by both"));

  // Missing byte token / token outside the alphabet (ids stay dense).
  nlohmann::json j = nlohmann::json::parse(enc);
  {  // drop "Ċ" (byte 0x0A) and renumber
    nlohmann::json m2;
    int32_t id = 0;
    std::vector<std::pair<int64_t, std::string>> by_id;
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "Ċ") by_id.emplace_back(it.value().get<int64_t>(), it.key());
    std::sort(by_id.begin(), by_id.end());
    for (auto& [old, key] : by_id) m2[key] = id++;
    // It loads; the byte is dropped when encoding, as HF tokenizers drops it.
    write_file(dir.path / "encoder.json", m2.dump());
    write_file(dir.path / "vocab.bpe", "#version: 0.2\n");
    const BPETokenizer t = BPETokenizer::load(dir.str());
    CHECK(t.num_missing_bytes() == 1);
    CHECK(!t.has_byte('\n'));
    CHECK(t.byte_to_id('\n') == -1);
    CHECK(t.decode(t.encode("a\nb")) == "ab");
    CHECK(t.dropped_bytes() == 1);
  }
  nlohmann::json outside = j;
  outside["日本"] = 259;
  CHECK(contains(load_error(outside.dump(), bpe), "token '日本' (id 259) has a character outside"));

  // special_tokens.json must agree with encoder.json.
  write_file(dir.path / "encoder.json", enc);
  write_file(dir.path / "vocab.bpe", bpe);
  write_file(dir.path / "special_tokens.json", R"({"special_tokens": [{"id": 5, "content": "Ġthe"}]})");
  CHECK(contains(error_of([&] { BPETokenizer::load(dir.str()); }),
                 "special_tokens.json: special_tokens[0]: 'Ġthe' has id 258 in encoder.json, not 5"));
  write_file(dir.path / "special_tokens.json", R"({"special_tokens": [{"id": "x", "content": "a"}]})");
  CHECK(
      contains(error_of([&] { BPETokenizer::load(dir.str()); }), "special_tokens[0].id must be an integer"));
  fs::remove(dir.path / "special_tokens.json");

  // The same parser on contents in memory; a number out of double range is a JSON error
  // (nlohmann's out_of_range, found by tests/fuzz, fuzz_bpe_load).
  CHECK(BPETokenizer::from_file_contents(enc, bpe).encode(" the") == std::vector<int32_t>{258});
  CHECK(contains(error_of([&] { BPETokenizer::from_file_contents(R"({"!": 1e999})", bpe); }),
                 "encoder.json: invalid JSON"));
  CHECK(contains(
      error_of([&] { BPETokenizer::from_file_contents(enc, bpe, R"({"special_tokens": [{"id": 1e999}]})"); }),
      "special_tokens.json: invalid JSON"));
  CHECK(contains(error_of([&] { BPETokenizer::load((dir.path / "nope").string()); }), "cannot open"));
  const BPETokenizer only_a = BPETokenizer::from_vocab({"a"}, {});
  CHECK(only_a.num_missing_bytes() == 255);
  CHECK(only_a.encode("banana") == std::vector<int32_t>{0, 0, 0});
}

// ---------------------------------------------------------------------------
TEST_CASE("BPE trainer: toy corpus, most frequent pair first, ties by bytes") {
  BPETrainerOptions opt;
  opt.num_merges = 10;
  opt.min_frequency = 1;
  // words: "ab", " ab" x2, " cd": (a,b)=3 -> then (" ", "ab")=2 -> ties at 1: " c" < "cd".
  BPETokenizer t = nq::data::train_bpe({"ab ab ab cd"}, opt);
  using P = std::vector<std::pair<std::string, std::string>>;
  CHECK(merge_bytes(t) == P{{"a", "b"}, {" ", "ab"}, {" ", "c"}, {" c", "d"}});
  CHECK(t.vocab_size() == 256 + 4);
  CHECK(t.id_to_token(256) == "ab");
  CHECK(t.id_to_token(257) == "Ġab");
  CHECK(t.encode("ab ab cd") == std::vector<int32_t>{256, 257, 259});
  CHECK(t.byte_to_id('!') == 0);  // byte tokens in GPT-2's order

  opt.min_frequency = 2;
  CHECK(merge_bytes(nq::data::train_bpe({"ab ab ab cd"}, opt)) == P{{"a", "b"}, {" ", "ab"}});

  // Overlapping pairs: "aaaa" merges left to right into "aa aa", then "aaaa".
  opt.min_frequency = 1;
  CHECK(merge_bytes(nq::data::train_bpe({"aaaa"}, opt)) == P{{"a", "a"}, {"aa", "aa"}});

  int calls = 0;
  opt.progress = [&](const nq::data::BPETrainProgress& p) {
    ++calls;
    CHECK(p.merges_done == size_t(calls));
    CHECK(p.num_merges == 10);
    CHECK(p.count >= 1);
  };
  nq::data::train_bpe({"ab ab ab cd"}, opt);
  CHECK(calls == 4);
}

TEST_CASE("BPE trainer: matches a naive reference on random corpora") {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 12; ++trial) {
    std::vector<std::string> texts;
    const std::string alpha = trial % 3 == 0 ? "ab" : trial % 3 == 1 ? "abc d" : "aab \n'e1";
    for (int d = 0; d < 30; ++d) {
      std::string s;
      const int n = std::uniform_int_distribution<int>(1, 60)(rng);
      for (int k = 0; k < n; ++k) s += alpha[std::uniform_int_distribution<size_t>(0, alpha.size() - 1)(rng)];
      if (d % 5 == 0) s += random_bytes(rng, 10);
      texts.push_back(s);
    }
    const int64_t minf = trial % 2 ? 1 : 2;
    BPETrainerOptions opt;
    opt.num_merges = 80;
    opt.min_frequency = minf;
    CAPTURE(trial);
    const BPETokenizer t = nq::data::train_bpe(texts, opt);
    CHECK(merge_bytes(t) == naive_train(texts, 80, minf));
    for (const auto& s : texts) CHECK(t.decode(t.encode(s)) == s);
  }
}

TEST_CASE("BPE trainer: matches the Python reference, save/load, specials") {
  const Corpus& c = corpus();
  const std::vector<std::string> docs(c.docs.begin(), c.docs.begin() + 400);  // as in the fixture script
  BPETrainerOptions opt;
  opt.num_merges = 300;
  opt.min_frequency = 2;
  const BPETokenizer t = nq::data::train_bpe(docs, opt);
  TempDir dir("trained");
  t.save(dir.str());
  CHECK(slurp(dir.path / "vocab.bpe") == slurp(kFixtureDir + "/trained_vocab.bpe"));
  CHECK(slurp(dir.path / "special_tokens.json") ==
        "{\n  \"special_tokens\": [],\n  \"eos_token\": null\n}\n");

  const BPETokenizer back = BPETokenizer::load(dir.str());
  for (size_t d = 0; d < c.docs.size(); d += 11) {
    CAPTURE(d);
    const auto ids = t.encode(c.docs[d]);
    CHECK(back.encode(c.docs[d]) == ids);
    CHECK(t.decode(ids) == c.docs[d]);
  }

  // Special tokens are cut out of the training text and get the last ids.
  opt.special_tokens = {"<|endoftext|>", "<|user|>"};
  opt.num_merges = 50;
  std::vector<std::string> texts;
  for (int i = 0; i < 50; ++i) texts.push_back("<|user|>hello there<|endoftext|>hello<|endoftext|>");
  BPETokenizer s = nq::data::train_bpe(texts, opt);
  for (const auto& [a, b] : merge_bytes(s)) {
    CHECK(a.find('<') == std::string::npos);
    CHECK(b.find('|') == std::string::npos);
  }
  const int32_t n = s.vocab_size();
  CHECK(s.token_to_id("<|endoftext|>") == n - 2);
  CHECK(s.token_to_id("<|user|>") == n - 1);
  CHECK(s.eos_id() == n - 2);
  const auto ids = s.encode(texts[0], true);
  CHECK(ids.front() == n - 1);
  CHECK(ids.back() == n - 2);
  CHECK(s.decode(ids) == texts[0]);
  TempDir dir2("trained_special");
  s.save(dir2.str());
  const BPETokenizer s2 = BPETokenizer::load(dir2.str());
  CHECK(s2.encode(texts[0], true) == ids);
  CHECK(s2.eos_id() == n - 2);
  CHECK(s2.special_tokens() == s.special_tokens());

  BPETrainerOptions bad;
  bad.special_tokens = {""};
  CHECK(contains(error_of([&] { BPETrainer tr(bad); }), "must not be empty"));
}
