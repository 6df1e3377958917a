#pragma once
// Trains a byte-level BPE vocabulary in GPT-2's format.
//
//   nq::data::BPETrainerOptions opt;
//   opt.num_merges = 8000;
//   opt.special_tokens = {"<|endoftext|>", "<|user|>", "<|assistant|>"};
//   nq::data::BPETokenizer tok = nq::data::train_bpe(texts, opt);
//   tok.save("out/tokenizer");   // encoder.json, vocab.bpe, special_tokens.json
//
// Algorithm. Each text is cut at the special-token strings (which are dropped),
// split with the GPT-2 pre-tokenizer (gpt2_pretokenize), and the pieces
// ("words") are counted once. Every word starts as its bytes; ids 0-255 are the
// byte tokens in GPT-2's bytes_to_unicode order, exactly as in GPT-2's
// encoder.json. Then, num_merges times: take the most frequent adjacent pair of
// tokens over all words (each adjacent position counts, weighted by the word's
// frequency, so "aaa" holds the pair (a, a) twice), append the merge, and
// replace the pair left to right, without overlaps, in every word containing
// it. Pair counts are updated incrementally, only for the words that contain the
// merged pair (an index pair -> words), and the best pair comes from a max-heap
// with lazy deletion, so a step costs about the size of those words.
//
// Ties: highest count first; among equal counts the pair whose (left bytes,
// right bytes) is lexicographically smallest, comparing left tokens' bytes
// first, as unsigned bytes. The result depends only on the texts, never on
// hashing or thread order.
//
// Stops early when the best pair occurs fewer than min_frequency times or no
// pair is left. A merge whose bytes equal an existing token reuses that id (so
// the vocabulary can hold fewer than 256 + num_merges ordinary tokens); a pair
// that was already merged and reappears is merged again in the words but not
// recorded twice. Special tokens get the ids after the learned tokens, in the
// given order; "<|endoftext|>" among them becomes EOS.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/bpe.hpp"

namespace nq::data {

struct BPETrainProgress {
  size_t merges_done = 0;  // merges learned so far
  size_t num_merges = 0;   // the target (options.num_merges)
  int64_t count = 0;       // occurrences of the pair just merged
};

struct BPETrainerOptions {
  size_t num_merges = 8000;
  int64_t min_frequency = 2;                              // stop when the best pair occurs fewer times
  std::vector<std::string> special_tokens;                // cut out of the texts, added after the merges
  std::function<void(const BPETrainProgress&)> progress;  // after every merge, if set
};
using TrainerOptions = BPETrainerOptions;

class BPETrainer {
 public:
  explicit BPETrainer(BPETrainerOptions options = {}) : opt_(std::move(options)) {
    for (const auto& s : opt_.special_tokens) {
      NQ_CHECK(!s.empty(), "BPETrainer", "special tokens must not be empty");
      NQ_CHECK(unicode::is_valid_utf8(s), "BPETrainer", "special token '", s, "' is not valid UTF-8");
    }
  }

  // Counts the pre-tokens of text (special-token strings are cut out first).
  void add_text(std::string_view text) {
    size_t seg = 0;
    for (size_t i = 0; i < text.size() && !opt_.special_tokens.empty();) {
      size_t hit = 0;
      for (const auto& s : opt_.special_tokens)
        if (s.size() > hit && text.substr(i, s.size()) == s) hit = s.size();
      if (!hit) {
        ++i;
        continue;
      }
      count_words(text.substr(seg, i - seg));
      i += hit;
      seg = i;
    }
    count_words(text.substr(seg));
  }
  void add_texts(const std::vector<std::string>& texts) {
    for (const auto& t : texts) add_text(t);
  }
  // Adds count occurrences of one pre-token (raw bytes) directly.
  void add_word(std::string_view word, int64_t count = 1) {
    NQ_CHECK(count >= 0, "BPETrainer::add_word", "count must be >= 0, got ", count);
    if (word.empty() || count == 0) return;
    auto it = words_.find(word);
    if (it == words_.end())
      words_.emplace(std::string(word), count);
    else
      it->second += count;
  }
  size_t num_distinct_words() const { return words_.size(); }

  // Learns the merges; can be called again after adding more text.
  BPETokenizer train() const {
    const auto& order = bytelevel::kTables.order;
    std::vector<std::string> tok_bytes(256);
    for (size_t i = 0; i < 256; ++i) tok_bytes[i] = std::string(1, char(order[i]));
    std::unordered_map<std::string, int32_t> id_of_bytes;
    for (int32_t i = 0; i < 256; ++i) id_of_bytes.emplace(tok_bytes[size_t(i)], i);

    // Words as id sequences (single-byte words hold no pair: skipped).
    std::vector<std::vector<int32_t>> syms;
    std::vector<int64_t> freq;
    syms.reserve(words_.size());
    freq.reserve(words_.size());
    for (const auto& [w, c] : words_) {
      if (w.size() < 2) continue;
      std::vector<int32_t> s;
      s.reserve(w.size());
      for (unsigned char b : w) s.push_back(bytelevel::kTables.id_of_byte[b]);
      syms.push_back(std::move(s));
      freq.push_back(c);
    }

    detail::U64Map<int64_t> counts;
    detail::U64Map<std::vector<int32_t>> where;  // pair -> words that (may) hold it
    for (size_t w = 0; w < syms.size(); ++w) {
      const auto& s = syms[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = detail::pair_key(s[i], s[i + 1]);
        counts[k] += freq[w];
        auto& list = where[k];
        if (list.empty() || list.back() != int32_t(w)) list.push_back(int32_t(w));
      }
    }

    struct Entry {
      int64_t count;
      int32_t a, b;
    };
    // priority_queue's "less": true when x ranks below y.
    auto below = [&tok_bytes](const Entry& x, const Entry& y) {
      if (x.count != y.count) return x.count < y.count;
      const int c = tok_bytes[size_t(x.a)].compare(tok_bytes[size_t(y.a)]);
      if (c != 0) return c > 0;
      return tok_bytes[size_t(x.b)].compare(tok_bytes[size_t(y.b)]) > 0;
    };
    std::priority_queue<Entry, std::vector<Entry>, decltype(below)> heap(below);
    counts.for_each([&](uint64_t k, int64_t c) {
      if (c > 0) heap.push({c, int32_t(k >> 32), int32_t(uint32_t(k))});
    });

    std::vector<std::pair<int32_t, int32_t>> merges;
    detail::U64Map<uint8_t> merged;
    std::vector<size_t> stamp(syms.size(), 0);
    std::vector<uint64_t> changed;
    std::vector<int32_t> out;
    size_t step = 0;
    const int64_t min_freq = std::max<int64_t>(opt_.min_frequency, 1);
    while (merges.size() < opt_.num_merges && !heap.empty()) {
      const Entry top = heap.top();
      heap.pop();
      const uint64_t key = detail::pair_key(top.a, top.b);
      const int64_t cur = *counts.find(key);
      if (cur != top.count) {  // stale: re-queue a lower count; a higher one is queued already
        if (cur > 0 && cur < top.count) heap.push({cur, top.a, top.b});
        continue;
      }
      if (cur < min_freq) break;
      ++step;
      const int32_t a = top.a, b = top.b;
      const std::string zb = tok_bytes[size_t(a)] + tok_bytes[size_t(b)];
      int32_t z;
      if (auto it = id_of_bytes.find(zb); it != id_of_bytes.end()) {
        z = it->second;
      } else {
        z = int32_t(tok_bytes.size());
        tok_bytes.push_back(zb);
        id_of_bytes.emplace(zb, z);
      }
      changed.clear();
      std::vector<int32_t> list = std::move(where[key]);
      where[key] = {};
      for (int32_t w : list) {
        if (stamp[size_t(w)] == step) continue;
        stamp[size_t(w)] = step;
        auto& s = syms[size_t(w)];
        const int64_t f = freq[size_t(w)];
        out.clear();
        bool hit = false;
        for (size_t r = 0; r < s.size();) {
          if (r + 1 < s.size() && s[r] == a && s[r + 1] == b) {
            hit = true;
            counts[key] -= f;
            if (!out.empty()) {
              const int32_t x = out.back();
              counts[detail::pair_key(x, a)] -= f;
              const uint64_t nk = detail::pair_key(x, z);
              counts[nk] += f;
              changed.push_back(nk);
              add_where(where, nk, w);
            }
            if (r + 2 < s.size()) {
              const int32_t y = s[r + 2];
              counts[detail::pair_key(b, y)] -= f;
              const uint64_t nk = detail::pair_key(z, y);
              counts[nk] += f;
              changed.push_back(nk);
              add_where(where, nk, w);
            }
            out.push_back(z);
            r += 2;
          } else {
            out.push_back(s[r++]);
          }
        }
        if (hit) s.assign(out.begin(), out.end());
      }
      std::sort(changed.begin(), changed.end());
      changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
      for (uint64_t k : changed) {
        const int64_t c = *counts.find(k);
        if (c > 0) heap.push({c, int32_t(k >> 32), int32_t(uint32_t(k))});
      }
      uint8_t& seen = merged[key];
      if (!seen) {
        seen = 1;
        merges.emplace_back(a, b);
        if (opt_.progress) opt_.progress({merges.size(), opt_.num_merges, cur});
      }
    }

    std::vector<std::string> tokens(tok_bytes.size());
    for (size_t i = 0; i < tok_bytes.size(); ++i) tokens[i] = bytelevel::encode(tok_bytes[i]);
    std::vector<std::pair<std::string, std::string>> merge_strings;
    merge_strings.reserve(merges.size());
    for (const auto& [a, b] : merges) merge_strings.emplace_back(tokens[size_t(a)], tokens[size_t(b)]);
    BPETokenizer tok = BPETokenizer::from_vocab(std::move(tokens), merge_strings, {}, "trained vocabulary");
    tok.add_special_tokens(opt_.special_tokens);
    return tok;
  }

 private:
  BPETrainerOptions opt_;
  std::unordered_map<std::string, int64_t, detail::StringHash, std::equal_to<>> words_;

  void count_words(std::string_view text) {
    gpt2_pretokenize(text, [&](std::string_view piece) { add_word(piece, 1); });
  }

  static void add_where(detail::U64Map<std::vector<int32_t>>& where, uint64_t k, int32_t w) {
    auto& list = where[k];
    if (list.empty() || list.back() != w) list.push_back(w);
  }
};

// Trains on texts with options (see BPETrainer).
inline BPETokenizer train_bpe(const std::vector<std::string>& texts, const BPETrainerOptions& options = {}) {
  BPETrainer t(options);
  t.add_texts(texts);
  return t.train();
}

}  // namespace nq::data
