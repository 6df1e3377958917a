#pragma once
// The BPE tokenizer's files: reading and atomically writing them, the JSON
// string layout of Python's json.dumps, and parsing encoder.json, vocab.bpe and
// special_tokens.json into checked parts. Errors name the file and line.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/unicode.hpp"
#include "nextquill/io/atomic_file.hpp"

namespace nq::data::detail {

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("BPETokenizer", "cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("BPETokenizer", "cannot read '", path, "'");
  return ss.str();
}

// Writes <path> atomically (io/atomic_file.hpp).
inline void write_text_file_atomic(const std::string& path, const std::string& data) {
  io::write_file_atomic(path, "BPETokenizer", data);
}

// A JSON string literal the way Python's json.dumps writes it by default
// (ensure_ascii: non-ASCII as lower-case \uXXXX, surrogate pairs above U+FFFF),
// so save() reproduces OpenAI's encoder.json byte for byte. s is valid UTF-8.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto u16 = [&](uint32_t v) {
    out += "\\u";
    for (int sh = 12; sh >= 0; sh -= 4) out += kHex[(v >> sh) & 15];
  };
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unicode::Char c = unicode::decode_utf8(s, i);
    i += c.len;
    const char32_t cp = c.cp;
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (cp < 0x20 || (cp >= 0x80 && cp < 0x10000)) {
          u16(cp);
        } else if (cp >= 0x10000) {
          u16(0xD800 + ((cp - 0x10000) >> 10));
          u16(0xDC00 + ((cp - 0x10000) & 0x3FF));
        } else {
          out += char(cp);
        }
    }
  }
  out += '"';
}

// "line L, column C" of byte offset pos in text (1-based).
inline std::string line_col(std::string_view text, size_t pos) {
  pos = std::min(pos, text.size());
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

inline nlohmann::json parse_json_file(std::string_view text, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("BPETokenizer", path, " ", line_col(text, e.byte == 0 ? 0 : e.byte - 1), ": invalid JSON (",
         e.what(), ")");
  } catch (const nlohmann::json::exception& e) {  // out_of_range: a number like 1e999
    fail("BPETokenizer", path, ": invalid JSON (", e.what(), ")");
  }
}

// What encoder.json, vocab.bpe and special_tokens.json say, checked and
// resolved to ids; BPETokenizer::build validates the vocabulary itself.
struct BPEFileParts {
  std::vector<std::string> tokens;                  // id -> vocabulary string
  std::vector<std::pair<int32_t, int32_t>> merges;  // rank -> (left id, right id)
  std::vector<size_t> merge_lines;                  // rank -> line in vocab.bpe
  std::vector<int32_t> special;                     // special token ids
  // From special_tokens.json: the EOS token, "" for none; unset without that
  // file (then "<|endoftext|>" is the EOS, as for GPT-2).
  std::optional<std::string> eos;
  // From special_tokens.json's "pre_tokenizer" (absent: gpt2).
  std::string pre_tokenizer = "gpt2";
};

// Parses the three files' contents; the paths only label errors.
inline BPEFileParts parse_bpe_files(std::string_view enc_text, std::string_view voc_text,
                                    std::optional<std::string_view> special_text,
                                    const std::string& encoder_path, const std::string& vocab_path,
                                    const std::string& special_path) {
  const std::string enc_name = std::filesystem::path(encoder_path).filename().string();
  // encoder.json: {"token": id, ...} with ids 0..n-1, each once.
  const nlohmann::json enc = parse_json_file(enc_text, encoder_path);
  if (!enc.is_object())
    fail("BPETokenizer", encoder_path, ": expected a JSON object mapping token strings to ids, got ",
         enc.type_name());
  const size_t n = enc.size();
  std::vector<std::string> tokens(n);
  std::vector<uint8_t> seen(n, 0);
  for (auto it = enc.begin(); it != enc.end(); ++it) {
    const nlohmann::json& v = it.value();
    if (!v.is_number_integer())
      fail("BPETokenizer", encoder_path, ": token '", it.key(), "': id must be an integer, got ", v.dump());
    const int64_t id = v.get<int64_t>();
    if (id < 0 || uint64_t(id) >= n)
      fail("BPETokenizer", encoder_path, ": token '", it.key(), "': id ", id, " is out of range [0, ", n,
           ") (ids must be 0..", n, "-1 without gaps)");
    if (seen[size_t(id)])
      fail("BPETokenizer", encoder_path, ": id ", id, " is used by both '", tokens[size_t(id)], "' and '",
           it.key(), "'");
    seen[size_t(id)] = 1;
    tokens[size_t(id)] = it.key();
  }
  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < n; ++i) ids.emplace(tokens[i], int32_t(i));

  // special_tokens.json (optional).
  std::vector<int32_t> special;
  std::optional<std::string> eos;
  std::string pre = "gpt2";
  if (special_text) {
    const nlohmann::json j = parse_json_file(*special_text, special_path);
    auto bad = [&](const std::string& what) { fail("BPETokenizer", special_path, ": ", what); };
    if (!j.is_object() || !j.contains("special_tokens") || !j["special_tokens"].is_array())
      bad("expected {\"special_tokens\": [{\"id\": ..., \"content\": ...}, ...], \"eos_token\": ...}");
    const auto& arr = j["special_tokens"];
    for (size_t k = 0; k < arr.size(); ++k) {
      const std::string f = "special_tokens[" + std::to_string(k) + "]";
      const auto& e = arr[k];
      if (!e.is_object() || !e.contains("content") || !e["content"].is_string())
        bad(f + ".content must be a string");
      if (!e.contains("id") || !e["id"].is_number_integer()) bad(f + ".id must be an integer");
      const std::string content = e["content"].get<std::string>();
      auto it = ids.find(content);
      if (it == ids.end()) bad(f + ": '" + content + "' is not in " + enc_name);
      if (it->second != e["id"].get<int64_t>())
        bad(f + ": '" + content + "' has id " + std::to_string(it->second) + " in " + enc_name + ", not " +
            e["id"].dump());
      special.push_back(it->second);
    }
    if (j.contains("eos_token") && !j["eos_token"].is_null()) {
      if (!j["eos_token"].is_string()) bad("eos_token must be a string or null");
      eos = j["eos_token"].get<std::string>();
      auto it = ids.find(*eos);
      if (it == ids.end() || std::find(special.begin(), special.end(), it->second) == special.end())
        bad("eos_token '" + *eos + "' is not one of special_tokens");
    } else {
      eos = "";
    }
    if (j.contains("pre_tokenizer")) {
      if (!j["pre_tokenizer"].is_string()) bad("pre_tokenizer must be a string");
      pre = j["pre_tokenizer"].get<std::string>();
    }
  } else if (auto it = ids.find("<|endoftext|>"); it != ids.end()) {
    special.push_back(it->second);
  }

  // vocab.bpe: optional "#version" first line, then "left right" per line.
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<size_t> lines;
  size_t line_no = 0, pos = 0;
  bool blank_seen = false;
  size_t blank_line = 0;
  while (pos < voc_text.size()) {
    size_t end = voc_text.find('\n', pos);
    if (end == std::string::npos) end = voc_text.size();
    std::string_view line(voc_text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && line.starts_with("#version")) continue;
    if (line.empty()) {
      if (!blank_seen) blank_line = line_no;
      blank_seen = true;
      continue;
    }
    if (blank_seen) fail("BPETokenizer", vocab_path, " line ", blank_line, ": empty line");
    const size_t sp = line.find(' ');
    if (sp == 0 || sp == std::string_view::npos || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos)
      fail("BPETokenizer", vocab_path, " line ", line_no,
           ": expected two tokens separated by one space, got '", line, "'");
    const std::string a(line.substr(0, sp)), b(line.substr(sp + 1));
    for (const std::string* t : {&a, &b})
      if (!ids.count(*t))
        fail("BPETokenizer", vocab_path, " line ", line_no, ": merge '", line, "' uses unknown token '", *t,
             "' (not in ", enc_name, ")");
    merges.emplace_back(ids[a], ids[b]);
    lines.push_back(line_no);
  }
  return {std::move(tokens),  std::move(merges), std::move(lines),
          std::move(special), std::move(eos),    std::move(pre)};
}

}  // namespace nq::data::detail
