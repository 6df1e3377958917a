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
// (2) Split every other stretch with GPT-2's pre-tokenizer, the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// implemented as a hand-written scanner (gpt2_pretokenize below). (3) Each piece
// starts as its bytes' ids and takes merges in rank order: repeatedly the pair
// with the lowest rank, leftmost first, exactly like HF tokenizers (and, for
// GPT-2's files, OpenAI's encoder.py). Results per piece are cached.
// The output equals HF tokenizers' GPT-2 tokenizer id for id (tests check ~2 MB
// of varied text), and decode(encode(s)) == s for every byte string s, including
// invalid UTF-8 (a malformed byte is one character of class Other).
//
// Vocabulary strings (encoder.json keys, id_to_token, token_to_id) are in GPT-2's
// byte-level alphabet: every byte is a printable character (space -> "Ġ",
// newline -> "Ċ", ...); special tokens are stored verbatim.
//
// Thread safety: encode/decode may run concurrently (the piece cache is guarded
// by a mutex); add_special_tokens, set_eos_token and assignment may not.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/unicode.hpp"
#include "nextquill/io/atomic_file.hpp"

namespace nq::data {

// ---------------------------------------------------------------------------
// GPT-2's byte <-> character alphabet (bytes_to_unicode in OpenAI's encoder.py):
// the 188 printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' map to themselves, the
// other 68 to U+0100.. in byte order. Byte-token id i is the byte kOrder[i]
// (the printable ones first), as in encoder.json.
namespace bytelevel {

struct Tables {
  std::array<char32_t, 256> cp{};         // byte -> character
  std::array<uint8_t, 256> order{};       // byte-token id -> byte
  std::array<int16_t, 324> byte_of{};     // character -> byte, -1 if none
  std::array<int16_t, 256> id_of_byte{};  // byte -> byte-token id
};

inline constexpr Tables make_tables() {
  Tables t{};
  auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  int id = 0;
  for (int b = 0; b < 256; ++b)
    if (printable(b)) t.order[size_t(id++)] = uint8_t(b);
  for (int b = 0; b < 256; ++b)
    if (!printable(b)) t.order[size_t(id++)] = uint8_t(b);
  int extra = 0;
  for (int b = 0; b < 256; ++b) t.cp[size_t(b)] = printable(b) ? char32_t(b) : char32_t(256 + extra++);
  for (auto& v : t.byte_of) v = -1;
  for (int b = 0; b < 256; ++b) t.byte_of[t.cp[size_t(b)]] = int16_t(b);
  for (int i = 0; i < 256; ++i) t.id_of_byte[t.order[size_t(i)]] = int16_t(i);
  return t;
}
inline constexpr Tables kTables = make_tables();

// The alphabet character of byte b, as UTF-8.
inline std::string byte_char(uint8_t b) {
  std::string s;
  unicode::append_utf8(s, kTables.cp[b]);
  return s;
}

// Raw bytes -> alphabet string ("\n hi" -> "ĊĠhi").
inline std::string encode(std::string_view raw) {
  std::string s;
  s.reserve(raw.size() + raw.size() / 4);
  for (unsigned char b : raw) unicode::append_utf8(s, kTables.cp[b]);
  return s;
}

// Alphabet string -> raw bytes, appended to out; false (out unspecified) when
// some character is not in the alphabet.
inline bool decode(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size();) {
    const unicode::Char c = unicode::decode_utf8(s, i);
    if (!c.valid || c.cp >= kTables.byte_of.size() || kTables.byte_of[c.cp] < 0) return false;
    out += char(kTables.byte_of[c.cp]);
    i += c.len;
  }
  return true;
}

}  // namespace bytelevel

// ---------------------------------------------------------------------------
// GPT-2 pre-tokenizer: calls emit(std::string_view piece) for each match of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// in order; the pieces concatenate to text. Alternatives are tried in that order
// at each position (leftmost-first, like the regex engines). For a whitespace
// run followed by a non-space, \s+(?!\S) backtracks by one character, which
// then starts the next piece (so " world" keeps its space).
template <typename Emit>
void gpt2_pretokenize(std::string_view text, Emit&& emit) {
  using unicode::CharClass;
  const size_t n = text.size();
  const auto* u = reinterpret_cast<const unsigned char*>(text.data());
  // Class and byte length of the character at i < n.
  auto at = [&](size_t i, CharClass& cls) -> size_t {
    if (u[i] < 0x80) {
      cls = unicode::detail::kAsciiClasses[u[i]];
      return 1;
    }
    const unicode::Char c = unicode::decode_utf8(text, i);
    cls = unicode::char_class(c);
    return c.len;
  };
  // End of the run of class `cls` starting at i.
  auto run_end = [&](size_t i, CharClass cls) {
    CharClass k;
    while (i < n) {
      const size_t len = at(i, k);
      if (k != cls) break;
      i += len;
    }
    return i;
  };
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    // 's 't 're 've 'm 'll 'd (lower case only, like the original regex)
    if (u[i] == '\'' && i + 1 < n) {
      const unsigned char c1 = u[i + 1];
      size_t len = 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        len = 2;
      } else if (i + 2 < n && ((c1 == 'r' && u[i + 2] == 'e') || (c1 == 'v' && u[i + 2] == 'e') ||
                               (c1 == 'l' && u[i + 2] == 'l'))) {
        len = 3;
      }
      if (len) {
        emit(text.substr(start, len));
        i += len;
        continue;
      }
    }
    CharClass k0;
    const size_t len0 = at(i, k0);
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' with the optional space
    if (u[i] == ' ' && i + 1 < n) {
      CharClass k1;
      const size_t len1 = at(i + 1, k1);
      if (k1 != CharClass::Space) {
        i = run_end(i + 1 + len1, k1);
        emit(text.substr(start, i - start));
        continue;
      }
    }
    if (k0 != CharClass::Space) {
      i = run_end(i + len0, k0);
      emit(text.substr(start, i - start));
      continue;
    }
    // '\s+(?!\S)' then '\s+': a whitespace run up to the end, or all of it but
    // its last character when something else follows (a 1-character run stays).
    size_t last = i, j = i + len0;
    CharClass k;
    while (j < n) {
      const size_t len = at(j, k);
      if (k != CharClass::Space) break;
      last = j;
      j += len;
    }
    i = (j < n && last > start) ? last : j;
    emit(text.substr(start, i - start));
  }
}

inline std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  gpt2_pretokenize(text, [&](std::string_view p) { out.push_back(p); });
  return out;
}

namespace detail {

// Open-addressing hash map from uint64 keys (never ~0) to V; no erase.
template <typename V>
class U64Map {
 public:
  static constexpr uint64_t kEmpty = ~uint64_t(0);

  size_t size() const { return size_; }
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap * 3 < n * 4 + 4) cap *= 2;
    if (cap > keys_.size()) rehash(cap);
  }
  const V* find(uint64_t key) const {
    if (keys_.empty()) return nullptr;
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return &vals_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }
  V* find(uint64_t key) { return const_cast<V*>(std::as_const(*this).find(key)); }
  // The value for key, default-constructed when absent.
  V& operator[](uint64_t key) {
    if ((size_ + 1) * 4 > keys_.size() * 3) rehash(keys_.empty() ? 16 : keys_.size() * 2);
    size_t i = slot(key);
    for (; keys_[i] != kEmpty; i = (i + 1) & mask_)
      if (keys_[i] == key) return vals_[i];
    keys_[i] = key;
    ++size_;
    return vals_[i];
  }
  template <typename F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] != kEmpty) f(keys_[i], vals_[i]);
  }

 private:
  size_t slot(uint64_t k) const {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return size_t(k) & mask_;
  }
  void rehash(size_t cap) {
    std::vector<uint64_t> keys(cap, kEmpty);
    std::vector<V> vals(cap);
    std::swap(keys, keys_);
    std::swap(vals, vals_);
    mask_ = cap - 1;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == kEmpty) continue;
      size_t j = slot(keys[i]);
      while (keys_[j] != kEmpty) j = (j + 1) & mask_;
      keys_[j] = keys[i];
      vals_[j] = std::move(vals[i]);
    }
  }
  std::vector<uint64_t> keys_;
  std::vector<V> vals_;
  size_t size_ = 0, mask_ = 0;
};

inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Per-piece BPE results: raw piece bytes -> ids (a slice of `pool`). Copies
// start empty; bounded by clearing when full.
struct PieceCache {
  static constexpr size_t kMaxEntries = size_t(1) << 20;
  static constexpr size_t kMaxPool = size_t(1) << 24;
  static constexpr size_t kMaxPieceBytes = 256;  // longer pieces are not cached

  std::mutex mu;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, StringHash, std::equal_to<>> map;
  std::vector<int32_t> pool;

  PieceCache() = default;
  PieceCache(const PieceCache&) {}
  PieceCache& operator=(const PieceCache&) {
    clear();
    return *this;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu);
    map.clear();
    pool.clear();
  }
  // Appends the cached ids of piece to out; false when absent.
  bool get(std::string_view piece, std::vector<int32_t>& out) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = map.find(piece);
    if (it == map.end()) return false;
    out.insert(out.end(), pool.begin() + it->second.first,
               pool.begin() + it->second.first + it->second.second);
    return true;
  }
  void put(std::string_view piece, std::span<const int32_t> ids) {
    if (piece.size() > kMaxPieceBytes) return;
    std::lock_guard<std::mutex> lock(mu);
    if (map.size() >= kMaxEntries || pool.size() + ids.size() > kMaxPool) {
      map.clear();
      pool.clear();
    }
    if (map.try_emplace(std::string(piece), uint32_t(pool.size()), uint32_t(ids.size())).second)
      pool.insert(pool.end(), ids.begin(), ids.end());
  }
};

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

}  // namespace detail

// ---------------------------------------------------------------------------
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
  // "eos_token": str or null}), each through a temporary file and a rename. For
  // GPT-2 the first two are byte-identical to OpenAI's files.
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
  // The id of the single-byte token for b.
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

  // BPE of one pre-token (raw bytes), without the cache. Exposed for tests.
  std::vector<int32_t> bpe(std::string_view piece) const {
    std::vector<int32_t> s;
    s.reserve(piece.size());
    for (unsigned char b : piece) s.push_back(byte_ids_[b]);
    apply_merges(s);
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

  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<int32_t> work;
    gpt2_pretokenize(text, [&](std::string_view piece) {
      if (piece.size() == 1) {
        out.push_back(byte_ids_[uint8_t(piece[0])]);
        return;
      }
      if (cache_.get(piece, out)) return;
      work.clear();
      for (unsigned char b : piece) work.push_back(byte_ids_[b]);
      apply_merges(work);
      cache_.put(piece, work);
      out.insert(out.end(), work.begin(), work.end());
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
    for (int b = 0; b < 256; ++b)
      if (byte_ids_[size_t(b)] < 0) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", b);
        fail("BPETokenizer", source, ": the vocabulary has no token for byte ", hex, " ('",
             bytelevel::byte_char(uint8_t(b)), "'); a byte-level vocabulary needs all 256");
      }
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
    const std::string enc_name = std::filesystem::path(encoder_path).filename().string();
    // encoder.json: {"token": id, ...} with ids 0..n-1, each once.
    const nlohmann::json enc = detail::parse_json_file(enc_text, encoder_path);
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
    if (special_text) {
      const nlohmann::json j = detail::parse_json_file(*special_text, special_path);
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
    BPETokenizer t(Uninit{});
    t.build(std::move(tokens), std::move(merges), special, encoder_path, vocab_path, &lines);
    if (eos) {
      t.eos_id_ = eos->empty() ? -1 : *t.token_to_id(*eos);
    }
    return t;
  }
};

}  // namespace nq::data
