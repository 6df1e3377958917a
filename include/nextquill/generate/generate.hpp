#pragma once
// Batched autoregressive generation with a KV cache.
//
// Prompts of different lengths are left-padded into one (B, L) batch with an
// attention mask, so every row's last prompt token sits in the last column
// and each decoding step appends one column for all rows. Positions follow
// the mask (a row's first real token is position 0), so a padded row decodes
// exactly as it would alone. Token choice per row: repetition penalty over
// the row's real prompt and generated tokens, then greedy or temperature /
// top-k / top-p sampling (generate/sampling.hpp, Hugging Face semantics).
// A row stops at an EOS id (kept in its output) or after max_new_tokens.
//
// Devices: the model runs where its parameters are (Module::to). Ids and the
// mask are built on the host and moved by the model (B int64 per step); each
// step copies the last position's logits, (B,V) fp32, to the host, where the
// logits processors and sampling run. The KV cache lives on the device.
#include <algorithm>
#include <functional>
#include <limits>
#include <vector>

#include "../models/causal_lm.hpp"
#include "sampling.hpp"

namespace nq {

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  // EOS ids get score -inf until this many tokens are generated
  // (transformers' min_new_tokens); 0: off.
  int64_t min_new_tokens = 0;
  sampling::SamplingOptions sampling;  // greedy by default
  std::vector<int64_t> eos_ids;        // stop a row when it emits one of these
  int64_t pad_id = 0;                  // fills left padding (never attended to)
  uint64_t seed = 0;                   // for sampling
  // The repetition penalty counts prompt tokens too (Hugging Face's
  // behaviour). false: only generated tokens, so words the prompt offers
  // (a user's history, file names) are not pushed away.
  bool penalize_prompt = true;
  // Called after each step with the number of new tokens so far (progress).
  std::function<void(int64_t step)> on_step;
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> tokens;  // new tokens per row (EOS included when hit)
  std::vector<bool> hit_eos;
};

inline GenerationResult generate(CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& o) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  NQ_CHECK(o.max_new_tokens >= 0, "generate", "max_new_tokens must be >= 0, got ", o.max_new_tokens);
  NQ_CHECK(o.min_new_tokens >= 0, "generate", "min_new_tokens must be >= 0, got ", o.min_new_tokens);
  GenerationResult res;
  res.tokens.assign(B, {});
  res.hit_eos.assign(B, false);
  if (B == 0 || o.max_new_tokens == 0) return res;
  const int64_t V = model.config().vocab_size;
  int64_t L = 0;
  for (int64_t b = 0; b < B; ++b) {
    NQ_CHECK(!prompts[b].empty(), "generate", "prompt ", b, " is empty (give at least one token, e.g. BOS)");
    for (int64_t id : prompts[b])
      NQ_CHECK(id >= 0 && id < V, "generate", "prompt ", b, " has token id ", id, " outside [0, ", V, ")");
    L = std::max<int64_t>(L, static_cast<int64_t>(prompts[b].size()));
  }
  const int64_t total = L + o.max_new_tokens;
  if (model.config().pos == PosKind::Learned) {
    int64_t longest = 0;
    for (auto& p : prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
    NQ_CHECK(longest + o.max_new_tokens <= model.config().max_seq_len, "generate", "prompt of ", longest,
             " tokens + ", o.max_new_tokens, " new tokens exceeds the model's max_seq_len ",
             model.config().max_seq_len);
  }

  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  Generator gen(o.seed);

  // Left-padded prompt batch and its mask; the mask grows by one column per step.
  std::vector<int64_t> ids(B * L, o.pad_id), mask_v(B * total, 0);
  std::vector<std::vector<int64_t>> seen(B);  // real tokens per row, for the penalty
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size()), off = L - n;
    for (int64_t i = 0; i < n; ++i) {
      ids[b * L + off + i] = prompts[b][i];
      mask_v[b * total + off + i] = 1;
    }
    if (o.penalize_prompt) seen[b] = prompts[b];
  }
  auto mask_upto = [&](int64_t len) {
    std::vector<int64_t> m(B * len);
    for (int64_t b = 0; b < B; ++b) std::copy_n(mask_v.begin() + b * total, len, m.begin() + b * len);
    return from_vector(m, {B, len});
  };

  nn::KVCache cache = model.make_cache(B, total);
  ForwardOptions fo;
  fo.cache = &cache;
  fo.attention_mask = mask_upto(L);
  Tensor h = model.hidden_states(from_vector(ids, {B, L}), fo);  // (B,L,C)
  std::vector<bool> done(B, false);
  std::vector<float> row(V);
  int64_t len = L;
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    Tensor logits = model.logits_from_hidden(h.narrow(1, h.size(1) - 1, 1))
                        .to(kFloat32)
                        .cpu()
                        .contiguous();  // (B,1,V) on the host: the one device-to-host copy per step
    const float* lp = logits.data_ptr<float>();
    std::vector<int64_t> next(B, o.pad_id);
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      std::copy_n(lp + b * V, V, row.begin());
      if (step < o.min_new_tokens)
        for (int64_t e : o.eos_ids)
          if (e >= 0 && e < V) row[e] = -std::numeric_limits<float>::infinity();
      const int64_t tok = sampling::next_token(row.data(), V, seen[b], o.sampling, gen);
      next[b] = tok;
      res.tokens[b].push_back(tok);
      seen[b].push_back(tok);
      if (std::find(o.eos_ids.begin(), o.eos_ids.end(), tok) != o.eos_ids.end()) {
        done[b] = true;
        res.hit_eos[b] = true;
      }
    }
    if (o.on_step) o.on_step(step + 1);
    if (step + 1 == o.max_new_tokens || std::all_of(done.begin(), done.end(), [](bool d) { return d; }))
      break;
    for (int64_t b = 0; b < B; ++b) mask_v[b * total + len] = 1;
    ++len;
    fo.attention_mask = mask_upto(len);
    h = model.hidden_states(from_vector(next, {B, 1}), fo);
  }
  model.train(was_training);
  return res;
}

}  // namespace nq
