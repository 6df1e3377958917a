#pragma once
// Byte-level BPE tokenizer in OpenAI's GPT-2 format (encoder.json + vocab.bpe).
//
//   auto tok = nq::data::BPETokenizer::load_gpt2("data/gpt2/encoder.json", "data/gpt2/vocab.bpe");
//   tok.add_special_tokens({"<|user|>", "<|assistant|>"});       // ids 50257, 50258
//   std::vector<int32_t> ids = tok.encode("Hello world");         // {15496, 995}
//   std::string text = tok.decode(ids);                           // "Hello world"
//
// Encoding = (1) with allow_special, cut the text at special-token strings
// (leftmost, then longest match); each one becomes its id and is never split.
// (2) Split every other stretch with the pre-tokenizer (pretokenize.hpp; GPT-2's
// regex by default, or SmolLM's, Llama 3's or Qwen2's). (3) Each piece
// starts as its bytes' ids and takes merges in rank order: repeatedly the pair
// with the lowest rank, leftmost first, exactly like HF tokenizers (and, for
// GPT-2's files, OpenAI's encoder.py). Results per piece are cached.
// The output equals HF tokenizers' GPT-2 tokenizer id for id (tests check ~2 MB
// of varied text), and decode(encode(s)) == s for every byte string s, including
// invalid UTF-8 (a malformed byte is one character of class Other).
//
// Vocabularies without a symbol for some bytes (SmolLM2 lacks 21) load: such a
// byte is dropped, as HF tokenizers' BPE drops a character it has no symbol for
// (no unk token, no byte fallback), and it splits its piece: the bytes on its
// two sides never merge with each other. dropped_bytes() counts them.
//
// Vocabulary strings (encoder.json keys, id_to_token, token_to_id) are in GPT-2's
// byte-level alphabet: every byte is a printable character (space -> "Ġ",
// newline -> "Ċ", ...); special tokens are stored verbatim.
//
// Thread safety: encode/decode may run concurrently (the piece cache is guarded
// by a mutex); add_special_tokens, set_eos_token and assignment may not.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/bpe_cache.hpp"
#include "nextquill/data/bpe_files.hpp"
#include "nextquill/data/bytelevel.hpp"
#include "nextquill/data/pretokenize.hpp"
#include "nextquill/data/unicode.hpp"

namespace nq::data {

class BPETokenizer {
 public:
  // A byte-only tokenizer: the 256 byte tokens, no merges, no special tokens.
  BPETokenizer() {
    std::vector<std::string> tokens(256);
    for (int i = 0; i < 256; ++i)
      tokens[size_t(i)] = bytelevel::byte_char(bytelevel::kTables.order[size_t(i)]);
    build(std::move(tokens), {}, {}, "vocabulary", "merges");
  }

  // OpenAI's GPT-2 files. "<|endoftext|>" (50256) is the special EOS token.
  static BPETokenizer load_gpt2(const std::string& encoder_json, const std::string& vocab_bpe) {
    return load_files(encoder_json, vocab_bpe, "");
  }

  // A directory written by save(): encoder.json, vocab.bpe and, if present,
  // special_tokens.json. Without special_tokens.json, "<|endoftext|>" (when in
  // the vocabulary) is the special EOS token, as for GPT-2.
  static BPETokenizer load(const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path d(dir);
    const fs::path special = d / "special_tokens.json";
    return load_files((d / "encoder.json").string(), (d / "vocab.bpe").string(),
                      fs::exists(special) ? special.string() : "");
  }

  // The same from the files' contents, e.g. held in memory: encoder.json,
  // vocab.bpe and, when given, special_tokens.json (without it, "<|endoftext|>"
  // is the EOS as for GPT-2). The names label errors.
  static BPETokenizer from_file_contents(std::string_view encoder_json, std::string_view vocab_bpe,
                                         std::optional<std::string_view> special_tokens_json = std::nullopt,
                                         const std::string& encoder_name = "encoder.json",
                                         const std::string& vocab_name = "vocab.bpe",
                                         const std::string& special_name = "special_tokens.json") {
    return parse_files(encoder_json, vocab_bpe, special_tokens_json, encoder_name, vocab_name, special_name);
  }

  // Builds a tokenizer from parts. tokens[i] is the vocabulary string of id i
  // (byte-level alphabet, or verbatim for special tokens); merges are pairs of
  // vocabulary strings in rank order; special_tokens must be in tokens. Errors
  // name `source`.
  static BPETokenizer from_vocab(std::vector<std::string> tokens,
                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                 const std::vector<std::string>& special_tokens = {},
                                 const std::string& source = "vocabulary") {
    BPETokenizer t(Uninit{});
    std::unordered_map<std::string, int32_t> ids;
    for (size_t i = 0; i < tokens.size(); ++i)
      if (!ids.emplace(tokens[i], int32_t(i)).second)
        fail("BPETokenizer", source, ": token '", tokens[i], "' appears twice (ids ", ids[tokens[i]], " and ",
             i, ")");
    std::vector<int32_t> specials;
    for (const auto& s : special_tokens) {
      auto it = ids.find(s);
      if (it == ids.end()) fail("BPETokenizer", source, ": special token '", s, "' is not in the vocabulary");
      specials.push_back(it->second);
    }
    std::vector<std::pair<int32_t, int32_t>> m;
    m.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto& [a, b] = merges[r];
      auto ia = ids.find(a), ib = ids.find(b);
      const std::string where = source + " merge " + std::to_string(r) + " '" + a + " " + b + "'";
      if (ia == ids.end()) fail("BPETokenizer", where, ": unknown token '", a, "'");
      if (ib == ids.end()) fail("BPETokenizer", where, ": unknown token '", b, "'");
      m.emplace_back(ia->second, ib->second);
    }
    t.build(std::move(tokens), std::move(m), specials, source, source);
    return t;
  }

  // Writes dir/encoder.json (Python json.dumps layout, ids in order, special
  // tokens included), dir/vocab.bpe ("#version: 0.2" then one "left right" line
  // per merge) and dir/special_tokens.json ({"special_tokens": [{"id", "content"}],
  // "eos_token": str or null, and "pre_tokenizer" unless gpt2}), each through a temporary file and a rename.
  // For GPT-2 the first two are byte-identical to OpenAI's files.
  void save(const std::string& dir) const {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail("BPETokenizer", "cannot create directory '", dir, "': ", ec.message());
    const fs::path d(dir);
    std::string enc = "{";
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (i) enc += ", ";
      detail::append_json_string(enc, tokens_[i]);
      enc += ": " + std::to_string(i);
    }
    enc += "}";
    std::string bpe = "#version: 0.2\n";
    for (const auto& [a, b] : merges_) bpe += tokens_[size_t(a)] + " " + tokens_[size_t(b)] + "\n";
    detail::write_text_file_atomic((d / "encoder.json").string(), enc);
    detail::write_text_file_atomic((d / "vocab.bpe").string(), bpe);
    nlohmann::ordered_json j;
    j["special_tokens"] = nlohmann::ordered_json::array();
    for (int32_t id : specials_)
      j["special_tokens"].push_back({{"id", id}, {"content", tokens_[size_t(id)]}});
    j["eos_token"] =
        eos_id_ >= 0 ? nlohmann::ordered_json(tokens_[size_t(eos_id_)]) : nlohmann::ordered_json();
    if (pre_ != PreTokenizer::GPT2) j["pre_tokenizer"] = pretokenizer_name(pre_);
    detail::write_text_file_atomic((d / "special_tokens.json").string(), j.dump(2) + "\n");
  }

  // ---- encoding ----------------------------------------------------------
  // With allow_special, special-token strings in text become their ids (never
  // split); otherwise they are ordinary text. Default: ordinary text, so text
  // from users or data cannot inject control tokens.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    encode_to(text, out, allow_special);
    return out;
  }

  // Appends the ids of text to out.
  void encode_to(std::string_view text, std::vector<int32_t>& out, bool allow_special = false) const {
    if (!allow_special || specials_.empty()) {
      encode_ordinary(text, out);
      return;
    }
    const auto* u = reinterpret_cast<const unsigned char*>(text.data());
    size_t seg = 0;
    for (size_t i = 0; i < text.size();) {
      if (!special_first_byte_[u[i]]) {
        ++i;
        continue;
      }
      int32_t hit = -1;
      size_t hit_len = 0;
      for (int32_t id : specials_) {  // longest match at i wins
        const std::string& s = tokens_[size_t(id)];
        if (s.size() > hit_len && text.substr(i, s.size()) == s) {
          hit = id;
          hit_len = s.size();
        }
      }
      if (hit < 0) {
        ++i;
        continue;
      }
      encode_ordinary(text.substr(seg, i - seg), out);
      out.push_back(hit);
      i += hit_len;
      seg = i;
    }
    encode_ordinary(text.substr(seg), out);
  }

  // The raw bytes of the ids, concatenated. Throws on an id out of range.
  std::string decode(std::span<const int32_t> ids) const {
    std::string out;
    size_t total = 0;
    for (int32_t id : ids) {
      check_id(id, "decode");
      total += bytes_[size_t(id)].size();
    }
    out.reserve(total);
    for (int32_t id : ids) out += bytes_[size_t(id)];
    return out;
  }
  std::string decode(const std::vector<int32_t>& ids) const { return decode(std::span<const int32_t>(ids)); }

  // ---- vocabulary ----------------------------------------------------------
  int32_t vocab_size() const { return int32_t(tokens_.size()); }
  size_t num_merges() const { return merges_.size(); }
  // Merges in rank order, as (left id, right id); merge_result(r) is the id it makes.
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  int32_t merge_result(size_t rank) const { return merge_result_.at(rank); }

  // The id of a vocabulary string ("Ġthe", or a special token verbatim).
  std::optional<int32_t> token_to_id(std::string_view token) const {
    auto it = ids_.find(token);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  // The vocabulary string of id ("Ġthe"); throws when out of range.
  const std::string& id_to_token(int32_t id) const {
    check_id(id, "id_to_token");
    return tokens_[size_t(id)];
  }
  // The raw bytes id stands for (" the").
  const std::string& token_bytes(int32_t id) const {
    check_id(id, "token_bytes");
    return bytes_[size_t(id)];
  }
  // The id of the single-byte token for b; -1 when the vocabulary has none.
  int32_t byte_to_id(uint8_t b) const { return byte_ids_[b]; }

  // ---- special tokens ------------------------------------------------------
  // Adds special tokens (non-empty, valid UTF-8) and returns their ids. A new
  // string gets the next id; one already special keeps its id; an ordinary
  // vocabulary token whose text equals the bytes it stands for (e.g. "<|x|>")
  // becomes special under its id. The first "<|endoftext|>" added becomes EOS
  // if there is none yet.
  std::vector<int32_t> add_special_tokens(const std::vector<std::string>& tokens) {
    std::vector<int32_t> out;
    for (const auto& t : tokens) out.push_back(add_special_token(t));
    return out;
  }
  int32_t add_special_token(const std::string& token) {
    NQ_CHECK(!token.empty(), "BPETokenizer::add_special_tokens", "special tokens must not be empty");
    NQ_CHECK(unicode::is_valid_utf8(token), "BPETokenizer::add_special_tokens", "special token '", token,
             "' is not valid UTF-8");
    int32_t id;
    if (auto it = ids_.find(token); it != ids_.end()) {
      id = it->second;
      if (!is_special_[size_t(id)]) {
        NQ_CHECK(bytes_[size_t(id)] == token, "BPETokenizer::add_special_tokens", "'", token,
                 "' is an ordinary token (id ", id, ") for different bytes; it cannot become special");
        mark_special(id);
      }
    } else {
      id = int32_t(tokens_.size());
      tokens_.push_back(token);
      bytes_.push_back(token);
      is_special_.push_back(0);
      ids_.emplace(token, id);
      mark_special(id);
    }
    if (eos_id_ < 0 && token == "<|endoftext|>") eos_id_ = id;
    return id;
  }
  bool is_special(int32_t id) const {
    check_id(id, "is_special");
    return is_special_[size_t(id)] != 0;
  }
  // Special tokens in the order they were added.
  std::vector<std::string> special_tokens() const {
    std::vector<std::string> out;
    for (int32_t id : specials_) out.push_back(tokens_[size_t(id)]);
    return out;
  }

  // End-of-sequence token: "<|endoftext|>" (50256 for GPT-2) unless changed.
  bool has_eos() const { return eos_id_ >= 0; }
  int32_t eos_id() const {
    NQ_CHECK(eos_id_ >= 0, "BPETokenizer::eos_id",
             "no EOS token (add \"<|endoftext|>\" with add_special_tokens or call set_eos_token)");
    return eos_id_;
  }
  void set_eos_token(std::string_view token) {
    auto id = token_to_id(token);
    NQ_CHECK(id && is_special_[size_t(*id)], "BPETokenizer::set_eos_token", "'", token,
             "' is not a special token");
    eos_id_ = *id;
  }

  // ---- pre-tokenizer and missing bytes -------------------------------------
  PreTokenizer pre_tokenizer() const { return pre_; }
  void set_pre_tokenizer(PreTokenizer p) {
    pre_ = p;
    cache_.clear();
  }
  // Bytes without a vocabulary symbol, and how many encode has dropped so far.
  bool has_byte(uint8_t b) const { return byte_ids_[b] >= 0; }
  int num_missing_bytes() const {
    return int(std::count_if(byte_ids_.begin(), byte_ids_.end(), [](int32_t id) { return id < 0; }));
  }
  uint64_t dropped_bytes() const { return dropped_.n.load(std::memory_order_relaxed); }
  // HF's ignore_merges (Llama 3): a piece that is itself a vocabulary token is
  // that token, whatever the merges would make of it.
  bool ignore_merges() const { return ignore_merges_; }
  void set_ignore_merges(bool on) {
    ignore_merges_ = on;
    cache_.clear();
  }

  // BPE of one pre-token (raw bytes), without the cache. Exposed for tests.
  std::vector<int32_t> bpe(std::string_view piece) const {
    std::vector<int32_t> s, work;
    bpe_piece(piece, s, work);
    return s;
  }

 private:
  struct Uninit {};
  explicit BPETokenizer(Uninit) {}

  static constexpr int32_t kNoRank = std::numeric_limits<int32_t>::max();
  static constexpr size_t kLinearMax = 48;  // longer pieces use a heap

  std::vector<std::string> tokens_;  // id -> vocabulary string
  std::vector<std::string> bytes_;   // id -> raw bytes
  std::unordered_map<std::string, int32_t, detail::StringHash, std::equal_to<>> ids_;
  std::array<int32_t, 256> byte_ids_{};
  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::vector<int32_t> merge_result_;  // rank -> id
  detail::U64Map<int32_t> ranks_;      // pair_key(left, right) -> rank
  std::vector<uint8_t> is_special_;
  std::vector<int32_t> specials_;  // insertion order
  std::array<bool, 256> special_first_byte_{};
  int32_t eos_id_ = -1;
  PreTokenizer pre_ = PreTokenizer::GPT2;
  bool missing_bytes_ = false;  // some byte has no symbol
  bool ignore_merges_ = false;
  struct Counter {  // copyable atomic
    std::atomic<uint64_t> n{0};
    Counter() = default;
    Counter(const Counter& o) : n(o.n.load()) {}
    Counter& operator=(const Counter& o) {
      n = o.n.load();
      return *this;
    }
  };
  mutable Counter dropped_;
  mutable detail::PieceCache cache_;

  void check_id(int32_t id, const char* fn) const {
    if (id < 0 || id >= int32_t(tokens_.size()))
      fail("BPETokenizer", fn, ": id ", id, " is out of range [0, ", tokens_.size(), ")");
  }

  void mark_special(int32_t id) {
    if (is_special_[size_t(id)]) return;
    is_special_[size_t(id)] = 1;
    specials_.push_back(id);
    special_first_byte_[uint8_t(tokens_[size_t(id)][0])] = true;
  }

  int32_t rank_of(int32_t a, int32_t b) const {
    const int32_t* r = ranks_.find(detail::pair_key(a, b));
    return r ? *r : kNoRank;
  }

  // Applies merges to s in place: lowest rank first, leftmost among equals.
  void apply_merges(std::vector<int32_t>& s) const {
    const size_t n = s.size();
    if (n < 2) return;
    if (n > kLinearMax) {
      apply_merges_heap(s);
      return;
    }
    std::array<int32_t, kLinearMax> rank;
    for (size_t i = 0; i + 1 < n; ++i) rank[i] = rank_of(s[i], s[i + 1]);
    size_t m = n;
    while (m > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < m; ++i)
        if (rank[i] < rank[best]) best = i;
      if (rank[best] == kNoRank) break;
      s[best] = merge_result_[size_t(rank[best])];
      for (size_t i = best + 1; i + 1 < m; ++i) {
        s[i] = s[i + 1];
        rank[i] = rank[i + 1];
      }
      --m;
      if (best > 0) rank[best - 1] = rank_of(s[best - 1], s[best]);
      if (best + 1 < m) rank[best] = rank_of(s[best], s[best + 1]);
    }
    s.resize(m);
  }

  // Same result as the linear scan, O(n log n): a min-heap of (rank, position)
  // over a linked list of symbols; stale entries are skipped when popped.
  void apply_merges_heap(std::vector<int32_t>& s) const {
    const int32_t n = int32_t(s.size());
    std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
    std::vector<uint8_t> alive(size_t(n), 1);
    for (int32_t i = 0; i < n; ++i) {
      prev[size_t(i)] = i - 1;
      next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    }
    using Entry = std::pair<int32_t, int32_t>;  // (rank, position)
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    for (int32_t i = 0; i + 1 < n; ++i) {
      const int32_t r = rank_of(s[size_t(i)], s[size_t(i) + 1]);
      if (r != kNoRank) heap.emplace(r, i);
    }
    while (!heap.empty()) {
      const auto [r, pos] = heap.top();
      heap.pop();
      const size_t p = size_t(pos);
      if (!alive[p] || next[p] < 0) continue;
      const size_t nx = size_t(next[p]);
      if (rank_of(s[p], s[nx]) != r) continue;  // stale
      s[p] = merge_result_[size_t(r)];
      alive[nx] = 0;
      next[p] = next[nx];
      if (next[p] >= 0) prev[size_t(next[p])] = pos;
      if (prev[p] >= 0) {
        const int32_t rr = rank_of(s[size_t(prev[p])], s[p]);
        if (rr != kNoRank) heap.emplace(rr, prev[p]);
      }
      if (next[p] >= 0) {
        const int32_t rr = rank_of(s[p], s[size_t(next[p])]);
        if (rr != kNoRank) heap.emplace(rr, pos);
      }
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[size_t(i)]) s[m++] = s[size_t(i)];
    s.resize(m);
  }

  // Appends the BPE of one piece to out; a byte without a symbol is dropped
  // and ends the stretch of bytes that merge together.
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out, std::vector<int32_t>& work) const {
    if (ignore_merges_) {
      if (auto it = ids_.find(std::string_view(bytelevel::encode(piece)));
          it != ids_.end() && !is_special_[size_t(it->second)]) {
        out.push_back(it->second);
        return;
      }
    }
    work.clear();
    auto flush = [&] {
      apply_merges(work);
      out.insert(out.end(), work.begin(), work.end());
      work.clear();
    };
    for (unsigned char b : piece) {
      const int32_t id = byte_ids_[b];
      if (id >= 0) {
        work.push_back(id);
        continue;
      }
      dropped_.n.fetch_add(1, std::memory_order_relaxed);
      flush();
    }
    flush();
  }

  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<int32_t> work, ids;
    pretokenize(pre_, text, [&](std::string_view piece) {
      if (piece.size() == 1 && byte_ids_[uint8_t(piece[0])] >= 0) {
        out.push_back(byte_ids_[uint8_t(piece[0])]);
        return;
      }
      if (cache_.get(piece, out)) {
        if (missing_bytes_)  // a cached piece still counts its dropped bytes
          for (unsigned char b : piece)
            if (byte_ids_[b] < 0) dropped_.n.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      ids.clear();
      bpe_piece(piece, ids, work);
      cache_.put(piece, ids);
      out.insert(out.end(), ids.begin(), ids.end());
    });
  }

  // Validates and indexes the vocabulary. tokens: id -> string; merges: rank ->
  // (left, right) ids; special: ids. Errors name token_source / merge_source and,
  // when given, the file line of each merge.
  void build(std::vector<std::string> tokens, std::vector<std::pair<int32_t, int32_t>> merges,
             const std::vector<int32_t>& special, const std::string& token_source,
             const std::string& merge_source, const std::vector<size_t>* merge_lines = nullptr) {
    const std::string& source = token_source;
    tokens_ = std::move(tokens);
    const size_t n = tokens_.size();
    if (n >= size_t(std::numeric_limits<int32_t>::max()))
      fail("BPETokenizer", source, ": too many tokens (", n, ")");
    is_special_.assign(n, 0);
    for (int32_t id : special) is_special_[size_t(id)] = 1;
    ids_.clear();
    ids_.reserve(n);
    bytes_.assign(n, std::string());
    byte_ids_.fill(-1);
    for (size_t i = 0; i < n; ++i) {
      const std::string& t = tokens_[i];
      if (t.empty()) fail("BPETokenizer", source, ": token ", i, " is the empty string");
      ids_.emplace(t, int32_t(i));
      if (is_special_[i]) {
        bytes_[i] = t;
        continue;
      }
      if (!bytelevel::decode(t, bytes_[i])) {
        fail("BPETokenizer", source, ": token '", t, "' (id ", i,
             ") has a character outside GPT-2's byte-level alphabet (only special tokens may)");
      }
      if (bytes_[i].size() == 1) byte_ids_[uint8_t(bytes_[i][0])] = int32_t(i);
    }
    missing_bytes_ = std::any_of(byte_ids_.begin(), byte_ids_.end(), [](int32_t id) { return id < 0; });
    merges_ = std::move(merges);
    merge_result_.assign(merges_.size(), -1);
    ranks_ = detail::U64Map<int32_t>();
    ranks_.reserve(merges_.size());
    for (size_t r = 0; r < merges_.size(); ++r) {
      const auto [a, b] = merges_[r];
      auto where = [&] {
        return merge_lines ? "line " + std::to_string((*merge_lines)[r]) : "merge " + std::to_string(r);
      };
      const std::string& ta = tokens_[size_t(a)];
      const std::string& tb = tokens_[size_t(b)];
      auto it = ids_.find(ta + tb);
      if (it == ids_.end())
        fail("BPETokenizer", merge_source, " ", where(), ": merge '", ta, " ", tb, "' makes '", ta + tb,
             "', which is not in ", token_source);
      const int32_t c = it->second;
      if (bytes_[size_t(c)] != bytes_[size_t(a)] + bytes_[size_t(b)])
        fail("BPETokenizer", merge_source, " ", where(), ": merge '", ta, " ", tb, "' makes special token '",
             tokens_[size_t(c)], "', whose bytes differ");
      const uint64_t key = detail::pair_key(a, b);
      if (const int32_t* first = ranks_.find(key))
        fail("BPETokenizer", merge_source, " ", where(), ": duplicate merge '", ta, " ", tb, "' (first on ",
             merge_lines ? "line " + std::to_string((*merge_lines)[size_t(*first)])
                         : "merge " + std::to_string(*first),
             ")");
      ranks_[key] = int32_t(r);
      merge_result_[r] = c;
    }
    specials_.clear();
    special_first_byte_.fill(false);
    eos_id_ = -1;
    for (int32_t id : special) {
      is_special_[size_t(id)] = 0;
      mark_special(id);
    }
    if (auto it = ids_.find(std::string_view("<|endoftext|>"));
        it != ids_.end() && is_special_[size_t(it->second)])
      eos_id_ = it->second;
    cache_.clear();
  }

  static BPETokenizer load_files(const std::string& encoder_path, const std::string& vocab_path,
                                 const std::string& special_path) {
    const std::string enc_text = detail::read_text_file(encoder_path);
    const std::string voc_text = detail::read_text_file(vocab_path);
    std::optional<std::string> special_text;
    if (!special_path.empty()) special_text = detail::read_text_file(special_path);
    std::optional<std::string_view> special_view;
    if (special_text) special_view = *special_text;
    return parse_files(enc_text, voc_text, special_view, encoder_path, vocab_path, special_path);
  }

  // The parsing half of load_files; the paths only label errors.
  static BPETokenizer parse_files(std::string_view enc_text, std::string_view voc_text,
                                  std::optional<std::string_view> special_text,
                                  const std::string& encoder_path, const std::string& vocab_path,
                                  const std::string& special_path) {
    detail::BPEFileParts f =
        detail::parse_bpe_files(enc_text, voc_text, special_text, encoder_path, vocab_path, special_path);
    BPETokenizer t(Uninit{});
    t.build(std::move(f.tokens), std::move(f.merges), f.special, encoder_path, vocab_path, &f.merge_lines);
    if (f.eos) t.eos_id_ = f.eos->empty() ? -1 : *t.token_to_id(*f.eos);
    t.pre_ = pretokenizer_from_name(f.pre_tokenizer, special_path);
    return t;
  }
};

}  // namespace nq::data
