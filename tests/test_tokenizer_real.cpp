// Real tokenizers on SmolLM2-135M-Instruct's vocabulary (49,152 tokens, 21
// bytes without a symbol), against the ids transformers and `tokenizers` give
// (tools/make_real_tokenizer_fixtures.py): from GGUF metadata under each
// tokenizer.ggml.pre, from tokenizer.json under each pre-tokenizer, and every
// text of both bundled datasets.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "nextquill/data/gguf_tokenizer.hpp"
#include "nextquill/data/hf_tokenizer.hpp"
#include "nextquill/io/gguf.hpp"
#include "nextquill/nextquill.hpp"
#include "test_util.hpp"

namespace {

using nq::data::BPETokenizer;
namespace gg = nq::io::gguf;

const std::string kDir = std::string(NQ_TEST_DATA_DIR) + "/tokenizer/smollm2/";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing fixture ", path, " (tools/make_real_tokenizer_fixtures.py)");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

const nlohmann::json& cases() {
  static const nlohmann::json j = nlohmann::json::parse(slurp(kDir + "cases.json"));
  return j;
}

BPETokenizer gguf_tokenizer(const std::string& pre = "") {
  const gg::File f = gg::File::open(kDir + "tokenizer.gguf");
  BPETokenizer t = nq::data::tokenizer_from_gguf(f);
  if (!pre.empty()) t.set_pre_tokenizer(nq::data::gguf_pre_tokenizer(pre, "test"));
  return t;
}

// tokenizer.json text for the GGUF's vocabulary with one of the fixture's
// pre_tokenizer objects, written as transformers writes it.
std::string tokenizer_json(const BPETokenizer& t, const std::string& kind) {
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["added_tokens"] = nlohmann::ordered_json::array();
  for (const std::string& s : t.special_tokens())
    j["added_tokens"].push_back({{"id", *t.token_to_id(s)}, {"content", s}, {"special", true}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = cases()["pre_tokenizers"][kind];
  j["decoder"] = {{"type", "ByteLevel"}};
  nlohmann::ordered_json m;
  m["type"] = "BPE";
  m["unk_token"] = nullptr;
  m["byte_fallback"] = false;
  m["ignore_merges"] = cases()["ignore_merges"][kind].get<bool>();
  m["vocab"] = nlohmann::ordered_json::object();
  for (int32_t i = 0; i < t.vocab_size(); ++i) m["vocab"][t.id_to_token(i)] = i;
  m["merges"] = nlohmann::ordered_json::array();
  for (const auto& [a, b] : t.merges()) m["merges"].push_back({t.id_to_token(a), t.id_to_token(b)});
  j["model"] = m;
  return j.dump();
}

size_t check_variant(const BPETokenizer& t, const std::string& variant) {
  size_t bad = 0;
  for (const auto& c : cases()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto want = c["ids"][variant].get<std::vector<int32_t>>();
    const auto got = t.encode(text, true);
    if (got != want && bad++ < 5) {
      CAPTURE(variant);
      CAPTURE(text);
      CHECK(got == want);
    }
  }
  return bad;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const nq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("real tokenizer: SmolLM2 from GGUF metadata equals transformers under each tokenizer.ggml.pre") {
  const BPETokenizer t = gguf_tokenizer();
  CHECK(t.vocab_size() == 49152);
  CHECK(t.num_merges() == 48900);
  CHECK(t.num_missing_bytes() == 21);
  CHECK(!t.has_byte(0x04));
  CHECK(t.special_tokens().size() == 17);
  CHECK(t.eos_id() == 2);
  CHECK(t.id_to_token(2) == "<|im_end|>");
  for (const char* pre : {"smollm", "gpt2", "llama-bpe", "qwen2"}) {
    CAPTURE(pre);
    CHECK(check_variant(gguf_tokenizer(pre), std::string("gguf:") + pre) == 0);
  }
  CHECK(cases()["cases"].size() >= 600);
}

TEST_CASE("real tokenizer: tokenizer.json with each pre-tokenizer equals HF tokenizers") {
  const BPETokenizer g = gguf_tokenizer();
  for (const char* kind : {"smollm", "gpt2", "llama-bpe", "qwen2"}) {
    CAPTURE(kind);
    const BPETokenizer t = nq::data::tokenizer_from_json(tokenizer_json(g, kind), "tokenizer.json");
    CHECK(t.vocab_size() == g.vocab_size());
    CHECK(t.ignore_merges() == cases()["ignore_merges"][kind].get<bool>());
    CHECK(check_variant(t, std::string("json:") + kind) == 0);
  }
}

TEST_CASE("real tokenizer: bytes without a symbol are dropped and split their piece, as in HF") {
  const BPETokenizer t = gguf_tokenizer();
  const uint64_t before = t.dropped_bytes();
  // "hel\x04lo" is "hel" + "lo", not "hello": the gap is never merged across.
  CHECK(t.encode("hel\x04lo") == std::vector<int32_t>{2797, 5365});
  CHECK(t.encode("hello") == std::vector<int32_t>{28120});
  CHECK(t.encode("\x04") == std::vector<int32_t>{});
  CHECK(t.dropped_bytes() - before == 2);
  CHECK(t.encode("\x04\x04\x04").empty());  // cached piece: still counted
  CHECK(t.dropped_bytes() - before == 5);
  // Round trip for text whose bytes all have symbols.
  for (const auto& c : cases()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    bool all = true;
    for (unsigned char b : text) all = all && t.has_byte(b);
    if (all) CHECK(t.decode(t.encode(text)) == text);
  }
}

TEST_CASE("real tokenizer: every text of the bundled datasets equals transformers' ids (chunk hashes)") {
  const BPETokenizer t = gguf_tokenizer();
  const nlohmann::json ref = nlohmann::json::parse(slurp(kDir + "datasets.json"));
  size_t files = 0;
  for (const auto& f : ref["files"]) {
    const std::string name = f["name"].get<std::string>();
    CAPTURE(name);
    const std::string path = std::string(NQ_SOURCE_DIR) + "/data/" + name;
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot open ", path);
    const size_t chunk = f["chunk"].get<size_t>();
    std::vector<std::string> texts;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const nlohmann::json r = nlohmann::json::parse(line);
      for (const auto& h : r["history"]) texts.push_back(h.get<std::string>());
      texts.push_back(r["query"].get<std::string>());
      texts.push_back(r["target"].get<std::string>());
    }
    REQUIRE(texts.size() == f["texts"].get<size_t>());
    size_t total = 0, bad_chunks = 0;
    for (size_t c = 0; c * chunk < texts.size(); ++c) {
      uint64_t h = 0xcbf29ce484222325ull;
      auto mix = [&](int32_t v) {
        for (int k = 0; k < 4; ++k) {
          h ^= uint8_t(uint32_t(v) >> (8 * k));
          h *= 0x100000001b3ull;
        }
      };
      for (size_t i = c * chunk; i < std::min(texts.size(), (c + 1) * chunk); ++i) {
        const auto ids = t.encode(texts[i], true);
        for (int32_t id : ids) mix(id);
        mix(-1);
        total += ids.size();
      }
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
      if (hex != f["hashes"][c].get<std::string>() && bad_chunks++ < 3) {
        CAPTURE(c);
        CHECK(std::string(hex) == f["hashes"][c].get<std::string>());
      }
    }
    CHECK(bad_chunks == 0);
    CHECK(total == f["ids"].get<size_t>());
    ++files;
  }
  CHECK(files == 6);
}

TEST_CASE("real tokenizer: GGUF and tokenizer.json errors name the key or field") {
  gg::Writer w;
  w.set_string("general.architecture", "llama");
  auto parse_err = [&](const gg::Writer& wr) {
    const std::string b = wr.bytes();
    return error_of([&] {
      const gg::File f =
          gg::File::parse_bytes({reinterpret_cast<const uint8_t*>(b.data()), b.size()}, "t.gguf");
      nq::data::tokenizer_from_gguf(f);
    });
  };
  CHECK(parse_err(w).find("t.gguf: missing metadata key 'tokenizer.ggml.model'") != std::string::npos);
  w.set_string("tokenizer.ggml.model", "llama");
  CHECK(parse_err(w).find("'llama' (SentencePiece) is not supported yet") != std::string::npos);
  gg::Writer w2;
  w2.set_string("tokenizer.ggml.model", "gpt2");
  CHECK(parse_err(w2).find("tokenizer.ggml.tokens") != std::string::npos);
  w2.set_strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
  w2.set_strings("tokenizer.ggml.merges", {"a b", "ab"});
  CHECK(parse_err(w2).find("tokenizer.ggml.merges[1] 'ab' is not \"left right\"") != std::string::npos);
  gg::Writer w3;
  w3.set_string("tokenizer.ggml.model", "gpt2");
  w3.set_strings("tokenizer.ggml.tokens", {"a", "b"});
  w3.set_i32s("tokenizer.ggml.token_type", {1});
  CHECK(parse_err(w3).find("token_type has 1 entries for 2 tokens") != std::string::npos);
  gg::Writer w4;
  w4.set_string("tokenizer.ggml.model", "gpt2");
  w4.set_strings("tokenizer.ggml.tokens", {"a", "b"});
  w4.set_string("tokenizer.ggml.pre", "tekken");
  CHECK(parse_err(w4).find("tokenizer.ggml.pre 'tekken'") != std::string::npos);
  gg::Writer w5;
  w5.set_string("tokenizer.ggml.model", "gpt2");
  w5.set_strings("tokenizer.ggml.tokens", {"a", "b"});
  w5.set_i32("tokenizer.ggml.eos_token_id", 7);
  CHECK(parse_err(w5).find("eos_token_id 7 is not a token id") != std::string::npos);

  auto json_err = [](const std::string& text) {
    return error_of([&] { nq::data::tokenizer_from_json(text, "tok.json"); });
  };
  CHECK(json_err("{").find("tok.json: invalid JSON") != std::string::npos);
  CHECK(json_err(R"({"model": {"type": "WordPiece"}})").find("model.type must be \"BPE\"") !=
        std::string::npos);
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2})";
  CHECK(
      json_err(R"({"model": {"type": "BPE", "byte_fallback": true, )" + vocab + "}}").find("byte_fallback") !=
      std::string::npos);
  CHECK(json_err(R"({"model": {"type": "BPE", "merges": ["a b c"], )" + vocab +
                 R"(}, "pre_tokenizer": {"type": "ByteLevel"}})")
            .find("model.merges[0] 'a b c'") != std::string::npos);
  CHECK(json_err(R"({"model": {"type": "BPE", )" + vocab + R"(}, "pre_tokenizer": {"type": "Whitespace"}})")
            .find("step type 'Whitespace' is not supported") != std::string::npos);
  CHECK(json_err(
            R"({"model": {"type": "BPE", )" + vocab +
            R"(}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}})")
            .find("Split regex '\\w+' is not one nextquill knows") != std::string::npos);
  CHECK(
      json_err(
          R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 2}}, "pre_tokenizer": {"type": "ByteLevel"}})")
          .find("no token has id 1") != std::string::npos);
  const BPETokenizer ok =
      nq::data::tokenizer_from_json(R"({"model": {"type": "BPE", "merges": [["a", "b"]], )" + vocab +
                                        R"(}, "pre_tokenizer": {"type": "ByteLevel"}})",
                                    "tok.json");
  CHECK(ok.encode("ab") == std::vector<int32_t>{2});
  CHECK(ok.num_missing_bytes() == 254);
}

TEST_CASE("real tokenizer: the pre-tokenizer survives save and load; old directories read as gpt2") {
  BPETokenizer t = gguf_tokenizer();
  t.set_pre_tokenizer(nq::data::PreTokenizer::Qwen2);
  const std::string dir = nqtest::temp_path("tokenizer-real-save");
  t.save(dir);
  const BPETokenizer back = BPETokenizer::load(dir);
  CHECK(back.pre_tokenizer() == nq::data::PreTokenizer::Qwen2);
  CHECK(back.num_missing_bytes() == 21);
  CHECK(back.encode("I'M 12345") == t.encode("I'M 12345"));
  std::filesystem::remove_all(dir);
}
