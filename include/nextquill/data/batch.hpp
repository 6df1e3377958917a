#pragma once
// Batches for personalization training: every example gives two sequences,
// prompt_h + target (with history) and prompt_0 + target (without), and each
// pass is padded only to its own longest row (dynamic padding). Instead of
// padding both to one fixed length so that the targets line up (the reference
// code's 4097 tokens), the batch lists the target tokens once and, for each,
// the row of the logits that predicts it in each pass:
//
//   PairedBatch b = collate_pairs(examples, pad_id);           // right padding
//   Tensor hh = model.hidden_states(b.ids_h, {.attention_mask = b.mask_h});
//   Tensor h0 = model.hidden_states(b.ids_0, {.attention_mask = b.mask_0});
//   Tensor zh = model.logits_from_hidden(embedding(hh.reshape({-1, C}), b.rows_h));  // (N, V)
//   Tensor z0 = model.logits_from_hidden(embedding(h0.reshape({-1, C}), b.rows_0));  // (N, V)
//   cross_entropy(zh, b.targets);  cross_entropy(zh - z0, b.targets);
//
// Sequence layout (standard causal LM): s = prompt ++ target, where target ends
// with EOS; the logits at position t predict s[t + 1], so target token k is
// predicted at position |prompt| + k - 1. The last token of s (the EOS) is
// never an input (nothing is predicted from it), so the inputs are
// s[0 .. |s| - 2], of length |prompt| + |target| - 1. rows_h[k] / rows_0[k] are
// flat indices b * L + t into the (B, L) inputs (or the (B*L, ...) outputs) of
// each pass; targets[k] is the gold id. The k-th entries of rows_h, rows_0,
// targets and example always belong to the same target token.
//
// Padding: PadSide::Right puts each row at column 0; PadSide::Left aligns each
// row's last token with the last column (as generation does). Masks are 1 on
// real tokens, 0 on padding; CausalLM derives positions from the mask, so both
// sides give the same logits. Pads use pad_id.
//
// Length cap (max_len > 0), applied to each pass separately to the sequence
// prompt + target (EOS included), for examples that PromptBuilder marked
// overflow: when |prompt| + |target| > max_len, the prompt is cut from the
// LEFT, keeping its last max_len - |target| tokens. The target is never cut
// unless it alone needs more than max_len - 1 tokens; then the prompt keeps its
// last token and the target keeps its first max_len - 2 tokens followed by its
// EOS. Both passes therefore always share the same target tokens.
#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/core/generator.hpp"
#include "nextquill/data/prompt.hpp"
#include "nextquill/ops/elementwise.hpp"
#include "nextquill/ops/factory.hpp"
#include "nextquill/ops/reduce.hpp"
#include "nextquill/ops/view.hpp"

namespace nq::data {

enum class PadSide { Left, Right };

struct PairedBatch {
  Tensor ids_h, mask_h;   // (B, Lh) int64, mask 1 = real token
  Tensor ids_0, mask_0;   // (B, L0) int64
  Tensor rows_h, rows_0;  // (N) int64: flat index b*L + t of the position whose logits predict target token k
  Tensor targets;         // (N) int64 gold ids (target tokens and EOS)
  Tensor example;         // (N) int64 batch row of each target token
  int64_t batch_size = 0, num_targets = 0;
  std::vector<int64_t> target_len;  // per row (after any cut)
  PadSide side = PadSide::Right;

  // Classic next-token label tensors, (B, L) int64, already shifted:
  // labels[b, t] is the gold id predicted by the logits at (b, t), and -100 on
  // prompt and pad positions, so cross_entropy(logits.reshape({-1, V}),
  // labels.reshape({-1}), ignore_index -100) is the usual masked LM loss.
  // (Unlike Hugging Face's unshifted labels: the inputs do not hold the EOS.)
  // On the ids' device.
  Tensor labels_h() const { return labels(ids_h, rows_h); }
  Tensor labels_0() const { return labels(ids_0, rows_0); }

  // The batch with every tensor on `d` (collate builds on the CPU): a
  // training loop moves ids, masks, rows and targets once per step. The
  // model also accepts host tensors (it moves them itself); keeping the masks
  // on the host spares it a device-to-host copy for the positions, so a loop
  // that only feeds the model may as well not move at all.
  PairedBatch to(Device d) const {
    PairedBatch b = *this;
    for (Tensor* t : {&b.ids_h, &b.mask_h, &b.ids_0, &b.mask_0, &b.rows_h, &b.rows_0, &b.targets, &b.example})
      if (t->defined()) *t = t->to(d);
    return b;
  }
  Device device() const { return ids_h.defined() ? ids_h.device() : Device::cpu(); }

 private:
  Tensor labels(const Tensor& ids, const Tensor& rows) const {
    const int64_t B = ids.size(0), L = ids.size(1);
    std::vector<int64_t> lab(size_t(B * L), -100);
    const auto r = rows.cpu().contiguous().to_vector<int64_t>();
    const auto y = targets.cpu().contiguous().to_vector<int64_t>();
    for (int64_t k = 0; k < num_targets; ++k) lab[size_t(r[size_t(k)])] = y[size_t(k)];
    return from_vector(lab, {B, L}).to(ids.device());
  }
};

namespace detail {

// How much of a prompt of P tokens and a target of T tokens a cap keeps:
// the last p_keep prompt tokens; the first t_keep - 1 target tokens + its last.
inline void fit_lengths(size_t P, size_t T, int64_t max_len, size_t& p_keep, size_t& t_keep) {
  p_keep = P;
  t_keep = T;
  if (max_len <= 0 || int64_t(P + T) <= max_len) return;
  if (int64_t(T) <= max_len - 1) {
    p_keep = size_t(max_len) - T;
  } else {
    p_keep = 1;
    t_keep = size_t(max_len) - 1;
  }
}

template <typename Get>
PairedBatch collate(size_t B, Get&& get, int32_t pad_id, PadSide side, int64_t max_len) {
  NQ_CHECK(B > 0, "collate_pairs", "no examples");
  NQ_CHECK(max_len <= 0 || max_len >= 2, "collate_pairs", "max_len must be >= 2 or 0 (no cap), got ",
           max_len);
  PairedBatch out;
  out.batch_size = int64_t(B);
  out.side = side;
  out.target_len.resize(B);
  // Per row and pass: kept prompt length and the target after any cut.
  std::vector<std::vector<int32_t>> tgt(B);
  std::vector<size_t> ph(B), p0(B);
  size_t Lh = 0, L0 = 0, N = 0;
  for (size_t b = 0; b < B; ++b) {
    const EncodedExample& e = get(b);
    NQ_CHECK(!e.prompt_h.empty() && !e.prompt_0.empty(), "collate_pairs", "example ", b,
             " has an empty prompt (a target's first token needs a position to be predicted from)");
    NQ_CHECK(!e.target.empty(), "collate_pairs", "example ", b,
             " has an empty target (it should end with EOS)");
    size_t th, t0;
    fit_lengths(e.prompt_h.size(), e.target.size(), max_len, ph[b], th);
    fit_lengths(e.prompt_0.size(), e.target.size(), max_len, p0[b], t0);
    (void)t0;  // equal to th: the cut depends on the target length and max_len only
    tgt[b].assign(e.target.begin(), e.target.begin() + int64_t(th) - 1);
    tgt[b].push_back(e.target.back());
    out.target_len[b] = int64_t(th);
    N += th;
    Lh = std::max(Lh, ph[b] + th - 1);
    L0 = std::max(L0, p0[b] + th - 1);
  }
  std::vector<int64_t> idh(B * Lh, pad_id), mh(B * Lh, 0), id0(B * L0, pad_id), m0(B * L0, 0);
  std::vector<int64_t> rh, r0, y, ex;
  rh.reserve(N), r0.reserve(N), y.reserve(N), ex.reserve(N);
  auto fill = [&](const std::vector<int32_t>& prompt, size_t p_keep, const std::vector<int32_t>& t, size_t b,
                  size_t L, std::vector<int64_t>& ids, std::vector<int64_t>& mask,
                  std::vector<int64_t>& rows) {
    const size_t len = p_keep + t.size() - 1;
    const size_t base = b * L + (side == PadSide::Left ? L - len : 0);
    size_t j = base;
    for (size_t i = prompt.size() - p_keep; i < prompt.size(); ++i) ids[j++] = prompt[i];
    for (size_t i = 0; i + 1 < t.size(); ++i) ids[j++] = t[i];
    std::fill(mask.begin() + int64_t(base), mask.begin() + int64_t(base + len), 1);
    for (size_t k = 0; k < t.size(); ++k) rows.push_back(int64_t(base + p_keep - 1 + k));
  };
  for (size_t b = 0; b < B; ++b) {
    const EncodedExample& e = get(b);
    fill(e.prompt_h, ph[b], tgt[b], b, Lh, idh, mh, rh);
    fill(e.prompt_0, p0[b], tgt[b], b, L0, id0, m0, r0);
    for (int32_t id : tgt[b]) {
      y.push_back(id);
      ex.push_back(int64_t(b));
    }
  }
  const int64_t Bi = int64_t(B), n = int64_t(N);
  out.ids_h = from_vector(idh, {Bi, int64_t(Lh)});
  out.mask_h = from_vector(mh, {Bi, int64_t(Lh)});
  out.ids_0 = from_vector(id0, {Bi, int64_t(L0)});
  out.mask_0 = from_vector(m0, {Bi, int64_t(L0)});
  out.rows_h = from_vector(rh, {n});
  out.rows_0 = from_vector(r0, {n});
  out.targets = from_vector(y, {n});
  out.example = from_vector(ex, {n});
  out.num_targets = n;
  return out;
}

}  // namespace detail

// Pads and pairs a batch (see the top of this file). max_len > 0 caps each
// pass's prompt + target; 0 = no cap.
inline PairedBatch collate_pairs(const std::vector<EncodedExample>& examples, int32_t pad_id,
                                 PadSide side = PadSide::Right, int64_t max_len = 0) {
  return detail::collate(
      examples.size(), [&](size_t b) -> const EncodedExample& { return examples[b]; }, pad_id, side, max_len);
}

// Prompts for nq::generate (which left-pads them itself): prompt_h or prompt_0
// as int64 ids; max_prompt_len > 0 keeps each prompt's last max_prompt_len tokens.
inline std::vector<std::vector<int64_t>> generation_prompts(const std::vector<EncodedExample>& examples,
                                                            bool with_history, int64_t max_prompt_len = 0) {
  std::vector<std::vector<int64_t>> out;
  out.reserve(examples.size());
  for (const EncodedExample& e : examples) {
    const std::vector<int32_t>& p = with_history ? e.prompt_h : e.prompt_0;
    const size_t keep = max_prompt_len > 0 ? std::min(p.size(), size_t(max_prompt_len)) : p.size();
    out.emplace_back(p.end() - int64_t(keep), p.end());
  }
  return out;
}

// Where a PairedLoader stands: enough to resume it exactly. rng_state is the
// shuffling generator's state at the start of the epoch (the order is redrawn
// from it), size the dataset size (checked on resume).
struct LoaderPosition {
  int64_t epoch = 0, cursor = 0, size = 0;
  std::string rng_state;

  // "epoch cursor size rng_state" on one line (for TrainState::extra).
  std::string str() const { return nq::detail::concat(epoch, ' ', cursor, ' ', size, ' ', rng_state); }
  static LoaderPosition parse(const std::string& s) {
    LoaderPosition p;
    std::istringstream is(s);
    if (!(is >> p.epoch >> p.cursor >> p.size)) fail("LoaderPosition", "cannot parse '", s, "'");
    is.get();
    std::getline(is, p.rng_state);
    NQ_CHECK(!p.rng_state.empty(), "LoaderPosition", "'", s, "' has no RNG state");
    return p;
  }
};

// Batches of a dataset in epochs, shuffled (deterministically from seed) or in
// order. next() fills the next batch and returns false at the end of an epoch;
// reset_epoch() then starts the next one with a new order. position() and
// set_position() save and restore the place exactly (checkpoint resume). The
// data must outlive the loader.
class PairedLoader {
 public:
  PairedLoader(const std::vector<EncodedExample>& data, int64_t batch_size, bool shuffle, uint64_t seed,
               PadSide side = PadSide::Right, int32_t pad_id = 0, int64_t max_len = 0, bool drop_last = false)
      : data_(&data),
        batch_size_(batch_size),
        shuffle_(shuffle),
        side_(side),
        pad_id_(pad_id),
        max_len_(max_len),
        drop_last_(drop_last),
        gen_(seed) {
    NQ_CHECK(batch_size > 0, "PairedLoader", "batch_size must be > 0, got ", batch_size);
    NQ_CHECK(!data.empty(), "PairedLoader", "the dataset is empty");
    start_epoch();
  }
  PairedLoader(std::vector<EncodedExample>&&, int64_t, bool, uint64_t, PadSide = PadSide::Right, int32_t = 0,
               int64_t = 0, bool = false) = delete;  // would dangle

  bool next(PairedBatch& out) {
    const int64_t n = size();
    const int64_t left = n - cursor_;
    if (left <= 0 || (drop_last_ && left < batch_size_)) return false;
    const int64_t b = std::min(batch_size_, left);
    last_.assign(order_.begin() + cursor_, order_.begin() + cursor_ + b);
    cursor_ += b;
    out = detail::collate(
        size_t(b), [&](size_t i) -> const EncodedExample& { return (*data_)[size_t(last_[i])]; }, pad_id_,
        side_, max_len_);
    return true;
  }

  // Starts the next epoch (whatever is left of this one is skipped).
  void reset_epoch() {
    ++epoch_;
    start_epoch();
  }

  LoaderPosition position() const { return {epoch_, cursor_, size(), epoch_rng_}; }
  void set_position(const LoaderPosition& p) {
    NQ_CHECK(p.size == size(), "PairedLoader", "position is for a dataset of ", p.size,
             " examples, this one has ", size());
    NQ_CHECK(p.epoch >= 0 && p.cursor >= 0 && p.cursor <= size(), "PairedLoader", "bad position '", p.str(),
             "'");
    gen_.set_state(p.rng_state);
    epoch_ = p.epoch;
    start_epoch();
    cursor_ = p.cursor;
  }

  int64_t epoch() const { return epoch_; }
  int64_t size() const { return int64_t(data_->size()); }
  int64_t batches_per_epoch() const {
    return drop_last_ ? size() / batch_size_ : (size() + batch_size_ - 1) / batch_size_;
  }
  // Dataset indices of the rows of the last batch.
  const std::vector<int64_t>& last_indices() const { return last_; }
  // This epoch's order of dataset indices.
  const std::vector<int64_t>& order() const { return order_; }

 private:
  const std::vector<EncodedExample>* data_;
  int64_t batch_size_;
  bool shuffle_;
  PadSide side_;
  int32_t pad_id_;
  int64_t max_len_;
  bool drop_last_;
  Generator gen_;
  std::string epoch_rng_;
  int64_t epoch_ = 0, cursor_ = 0;
  std::vector<int64_t> order_, last_;

  // Uniform in [0, n) without modulo bias.
  uint64_t below(uint64_t n) {
    const uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % n);
    uint64_t v;
    do v = gen_.next_u64();
    while (v >= limit);
    return v % n;
  }
  void start_epoch() {
    epoch_rng_ = gen_.state();
    cursor_ = 0;
    order_.resize(data_->size());
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = int64_t(i);
    if (shuffle_)
      for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[size_t(below(i))]);
  }
};

}  // namespace nq::data
