#pragma once
// A Hugging Face `tokenizer.json` (the `tokenizers` library's format, the only
// tokenizer file transformers 5 writes) for byte-level BPE models.
//
// Read: model (type BPE: vocab, merges as "a b" or ["a", "b"], ignore_merges),
// pre_tokenizer (ByteLevel, Split with a known regex, Digits, or a Sequence of
// them; recognised as one of pretokenize.hpp's kinds), added_tokens (special:
// matched whole in text). Everything else that would change the ids
// (byte_fallback, an unk token, subword prefixes, prefix spaces, unknown
// regexes) is refused with an error naming the field. A normalizer is accepted
// only when it is absent or NFC, which leaves text that is already NFC (nearly
// all text) unchanged; nextquill does not normalise.
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "nextquill/data/bpe.hpp"
#include "nextquill/data/personalization.hpp"
#include "nextquill/data/pretokenize.hpp"

namespace nq::data {

namespace detail {

// The regexes of the known pre-tokenizers, as tokenizer.json spells them.
inline constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
inline constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+("
    "?!\\S)|\\s+";

inline PreTokenizer pre_tokenizer_of_json(const nlohmann::json& pre, const std::string& where) {
  auto bad = [&](const std::string& what) { fail("BPETokenizer", where, ": pre_tokenizer: ", what); };
  std::vector<nlohmann::json> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence") {
    if (!pre.contains("pretokenizers") || !pre["pretokenizers"].is_array())
      bad("Sequence without 'pretokenizers'");
    for (const auto& s : pre["pretokenizers"]) steps.push_back(s);
  } else {
    steps.push_back(pre);
  }
  // Summarise the steps as (split kind, byte-level regex on?).
  std::string split;  // "", "digits", or a PreTokenizer name for a Split regex
  bool bytelevel = false, bytelevel_regex = false;
  for (const auto& s : steps) {
    if (!s.is_object() || !s.contains("type") || !s["type"].is_string()) bad("a step has no 'type'");
    const std::string t = s["type"].get<std::string>();
    if (t == "ByteLevel") {
      if (s.value("add_prefix_space", false)) bad("ByteLevel with add_prefix_space true is not supported");
      bytelevel = true;
      bytelevel_regex = s.value("use_regex", true);
    } else if (t == "Digits") {
      if (!s.value("individual_digits", false)) bad("Digits without individual_digits is not supported");
      if (!split.empty()) bad("more than one splitting step");
      split = "digits";
    } else if (t == "Split") {
      if (!split.empty()) bad("more than one splitting step");
      if (s.value("behavior", "") != "Isolated" || s.value("invert", false))
        bad("Split must have behavior Isolated and invert false");
      const nlohmann::json& pat = s.value("pattern", nlohmann::json());
      if (!pat.is_object() || !pat.contains("Regex") || !pat["Regex"].is_string())
        bad("Split needs a pattern {\"Regex\": ...}");
      const std::string re = pat["Regex"].get<std::string>();
      if (re == kGpt2Regex)
        split = "gpt2";
      else if (re == kLlama3Regex)
        split = "llama-bpe";
      else if (re == kQwen2Regex)
        split = "qwen2";
      else
        bad("Split regex '" + re + "' is not one nextquill knows (GPT-2's, Llama 3's, Qwen2's)");
    } else {
      bad("step type '" + t + "' is not supported (ByteLevel, Split, Digits, Sequence)");
    }
  }
  if (!bytelevel) bad("no ByteLevel step (only byte-level BPE is supported)");
  if (split.empty() && bytelevel_regex) return PreTokenizer::GPT2;
  if (split == "digits" && bytelevel_regex) return PreTokenizer::SmolLM;
  if (!bytelevel_regex && split == "gpt2") return PreTokenizer::GPT2;
  if (!bytelevel_regex && split == "llama-bpe") return PreTokenizer::Llama3;
  if (!bytelevel_regex && split == "qwen2") return PreTokenizer::Qwen2;
  fail(
      "BPETokenizer", where,
      ": pre_tokenizer: this combination of steps is not one nextquill knows (ByteLevel; Digits + ByteLevel; "
      "Split + ByteLevel without regex)");
}

}  // namespace detail

// tokenizer.json's text; `where` names it in errors.
inline BPETokenizer tokenizer_from_json(std::string_view text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("BPETokenizer", where, ": invalid JSON: ", detail::json_message(e));
  }
  auto bad = [&](const std::string& what) { fail("BPETokenizer", where, ": ", what); };
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) bad("no 'model' object");
  const nlohmann::json& m = j["model"];
  if (m.value("type", "") != "BPE")
    bad("model.type must be \"BPE\", got " + m.value("type", std::string("none")));
  if (m.value("byte_fallback", false)) bad("model.byte_fallback true is not supported");
  if (m.contains("unk_token") && !m["unk_token"].is_null())
    bad("model.unk_token is not supported (must be null)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
      bad(std::string("model.") + k + " must be empty");
  if (j.contains("normalizer") && !j["normalizer"].is_null() && j["normalizer"].value("type", "") != "NFC")
    bad("normalizer '" + j["normalizer"].value("type", std::string("?")) +
        "' is not supported (none or NFC)");
  if (!m.contains("vocab") || !m["vocab"].is_object()) bad("model.vocab must be an object");

  // Ids: the vocabulary, then added tokens (which may extend it); dense from 0.
  std::vector<std::string> tokens;
  std::vector<uint8_t> seen;
  auto place = [&](const std::string& s, int64_t id, const std::string& field) {
    if (id < 0 || id >= (int64_t(1) << 31) - 1)
      bad(field + ": id " + std::to_string(id) + " is out of range");
    if (size_t(id) >= tokens.size()) tokens.resize(size_t(id) + 1), seen.resize(size_t(id) + 1, 0);
    if (seen[size_t(id)] && tokens[size_t(id)] != s)
      bad(field + ": id " + std::to_string(id) + " is both '" + tokens[size_t(id)] + "' and '" + s + "'");
    tokens[size_t(id)] = s;
    seen[size_t(id)] = 1;
  };
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) bad("model.vocab['" + it.key() + "'] must be an integer id");
    place(it.key(), it.value().get<int64_t>(), "model.vocab['" + it.key() + "']");
  }
  std::vector<std::string> specials;
  if (j.contains("added_tokens")) {
    if (!j["added_tokens"].is_array()) bad("added_tokens must be an array");
    for (size_t k = 0; k < j["added_tokens"].size(); ++k) {
      const auto& a = j["added_tokens"][k];
      const std::string f = "added_tokens[" + std::to_string(k) + "]";
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id") ||
          !a["id"].is_number_integer())
        bad(f + " needs a string 'content' and an integer 'id'");
      place(a["content"].get<std::string>(), a["id"].get<int64_t>(), f);
      specials.push_back(a["content"].get<std::string>());
    }
  }
  for (size_t i = 0; i < seen.size(); ++i)
    if (!seen[i]) bad("no token has id " + std::to_string(i) + " (ids must be dense)");

  std::vector<std::pair<std::string, std::string>> merges;
  if (m.contains("merges")) {
    if (!m["merges"].is_array()) bad("model.merges must be an array");
    merges.reserve(m["merges"].size());
    for (size_t r = 0; r < m["merges"].size(); ++r) {
      const auto& e = m["merges"][r];
      const std::string f = "model.merges[" + std::to_string(r) + "]";
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() ||
            s.find(' ', sp + 1) != std::string::npos)
          bad(f + " '" + s + "' is not \"left right\"");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        bad(f + " must be \"left right\" or [\"left\", \"right\"]");
      }
    }
  }
  BPETokenizer tok = BPETokenizer::from_vocab(std::move(tokens), merges, specials, where);
  if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null())
    bad("pre_tokenizer is null (byte-level BPE needs a ByteLevel pre-tokenizer)");
  tok.set_pre_tokenizer(detail::pre_tokenizer_of_json(j["pre_tokenizer"], where));
  tok.set_ignore_merges(m.value("ignore_merges", false));
  return tok;
}

inline BPETokenizer load_tokenizer_json(const std::string& path) {
  return tokenizer_from_json(detail::read_file("BPETokenizer", path), path);
}

}  // namespace nq::data
