#pragma once
// Plain-text corpora for language-model pretraining, and the token stream the
// pretraining loop samples windows from.
//
//   auto texts = nq::data::load_text_jsonl("pretrain.jsonl");  // {"text": ...} per line
//   nq::data::TokenStream s = nq::data::TokenStream::encode(tok, texts);   // texts joined by EOS
//   s.sample_windows(8, 257, gen);                              // (8, 257) int64 ids
//
// load_text_jsonl rejects bad lines with the file, line and field named, like
// load_jsonl for personalization records.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/core/generator.hpp"
#include "nextquill/data/bpe.hpp"
#include "nextquill/data/personalization.hpp"
#include "nextquill/ops/factory.hpp"

namespace nq::data {

// One string field ("text" by default) per JSON line. Blank lines are
// skipped; an empty text is skipped too (it carries nothing to learn).
inline std::vector<std::string> load_text_jsonl(const std::string& path, const std::string& field = "text") {
  const std::string data = detail::read_file("load_text_jsonl", path);
  std::vector<std::string> out;
  std::string_view rest(data);
  if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3);
  int64_t line_no = 0;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
      fail("load_text_jsonl", path, " line ", line_no, ": invalid JSON: ", detail::json_message(e));
    }
    NQ_CHECK(j.is_object(), "load_text_jsonl", path, " line ", line_no, ": expected a JSON object, got ",
             j.type_name());
    auto it = j.find(field);
    NQ_CHECK(it != j.end(), "load_text_jsonl", path, " line ", line_no, ": field '", field, "' is missing");
    NQ_CHECK(it->is_string(), "load_text_jsonl", path, " line ", line_no, ": field '", field,
             "' must be a string, got ", it->type_name());
    std::string s = it->get<std::string>();
    NQ_CHECK(unicode::is_valid_utf8(s), "load_text_jsonl", path, " line ", line_no, ": field '", field,
             "' is not valid UTF-8");
    if (!s.empty()) out.push_back(std::move(s));
  }
  NQ_CHECK(!out.empty(), "load_text_jsonl", path, ": no text (the file has no non-empty '", field,
           "' field)");
  return out;
}

// Texts tokenized and concatenated, each followed by EOS, so a window may
// span a document boundary and learns where texts end.
struct TokenStream {
  std::vector<int32_t> tokens;

  static TokenStream encode(const BPETokenizer& tok, const std::vector<std::string>& texts) {
    TokenStream s;
    const int32_t eos = tok.eos_id();
    size_t bytes = 0;
    for (const auto& t : texts) bytes += t.size();
    s.tokens.reserve(bytes / 3 + texts.size());
    std::vector<int32_t> ids;
    for (const auto& t : texts) {
      ids.clear();
      tok.encode_to(t, ids, false);
      s.tokens.insert(s.tokens.end(), ids.begin(), ids.end());
      s.tokens.push_back(eos);
    }
    return s;
  }
  int64_t size() const { return int64_t(tokens.size()); }

  // B windows of `len` consecutive tokens at uniformly random offsets: (B, len) int64.
  Tensor sample_windows(int64_t B, int64_t len, Generator& g) const {
    NQ_CHECK(size() > len, "TokenStream", "the stream has ", size(), " tokens, fewer than one window of ",
             len + 1);
    std::vector<int64_t> ids(size_t(B * len));
    const uint64_t range = uint64_t(size() - len);
    for (int64_t b = 0; b < B; ++b) {
      const size_t off = size_t(g.next_u64() % range);
      for (int64_t t = 0; t < len; ++t) ids[size_t(b * len + t)] = tokens[off + size_t(t)];
    }
    return from_vector(ids, {B, len});
  }
  // The i-th of the consecutive, non-overlapping windows (for a fixed validation pass).
  Tensor window(int64_t i, int64_t B, int64_t len) const {
    std::vector<int64_t> ids(size_t(B * len));
    for (int64_t b = 0; b < B; ++b) {
      const size_t off = size_t(((i * B + b) * len) % std::max<int64_t>(1, size() - len));
      for (int64_t t = 0; t < len; ++t) ids[size_t(b * len + t)] = tokens[off + size_t(t)];
    }
    return from_vector(ids, {B, len});
  }
};

}  // namespace nq::data
