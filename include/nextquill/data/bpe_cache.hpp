#pragma once
// The BPE tokenizer's lookup structures: an open-addressing map for merge
// ranks keyed by token-id pairs, and the per-piece cache of encode results.
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nq::data::detail {

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

}  // namespace nq::data::detail
