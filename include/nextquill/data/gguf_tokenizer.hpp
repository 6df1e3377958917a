#pragma once
// The tokenizer a GGUF file carries in its `tokenizer.ggml.*` metadata, for
// byte-level BPE models (tokenizer.ggml.model "gpt2": GPT-2, SmolLM, Llama 3,
// Qwen2 and most other BPE models llama.cpp converts).
//
//   tokenizer.ggml.tokens      id -> vocabulary string (byte-level alphabet)
//   tokenizer.ggml.merges      "left right" in rank order
//   tokenizer.ggml.token_type  1 normal, 2 unknown, 3 control, 4 user-defined,
//                              5 unused, 6 byte; control and user-defined
//                              tokens are special (matched whole in text)
//   tokenizer.ggml.pre         the pre-tokenizer, mapped as transformers maps it
//                              (gguf_pre_tokenizer below)
//   tokenizer.ggml.eos_token_id
//
// The result equals transformers' tokenizer for the same file
// (AutoTokenizer.from_pretrained(dir, gguf_file=...)), the reference the tests
// use. That differs from llama.cpp in one place: for `smollm` llama.cpp also
// isolates every \p{N} character, transformers does not; the two agree on
// ASCII digits (SmolLM2 has no merge that joins a digit), not on "½" or "²".
#include <string>
#include <utility>
#include <vector>

#include "nextquill/data/bpe.hpp"
#include "nextquill/data/pretokenize.hpp"
#include "nextquill/io/gguf.hpp"

namespace nq::data {

// tokenizer.ggml.pre -> pre-tokenizer, following transformers' GGUF loader:
// the Llama 3 and Qwen2 families split with their regexes; names it has no
// regex for use GPT-2's byte-level regex (gpt2, smollm, default, starcoder,
// ...); the regexes nextquill lacks are an error.
inline PreTokenizer gguf_pre_tokenizer(const std::string& pre, const std::string& where) {
  for (const char* n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                        "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"})
    if (pre == n) return PreTokenizer::Llama3;
  for (const char* n : {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"})
    if (pre == n) return PreTokenizer::Qwen2;
  for (const char* n : {"tekken", "qwen35", "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"})
    if (pre == n)
      fail("gguf", where, ": tokenizer.ggml.pre '", pre,
           "' uses a pre-tokenizer regex nextquill does not have (it has gpt2, llama-bpe and qwen2)");
  return PreTokenizer::GPT2;
}

inline BPETokenizer tokenizer_from_gguf(const io::gguf::File& f) {
  const std::string& path = f.path();
  const std::optional<std::string> model = f.opt_string("tokenizer.ggml.model");
  NQ_CHECK(model, "gguf", path, ": missing metadata key 'tokenizer.ggml.model' (the file has no tokenizer)");
  if (*model == "llama")
    fail("gguf", path,
         ": tokenizer.ggml.model 'llama' (SentencePiece) is not supported yet; byte-level BPE ('gpt2') is");
  NQ_CHECK(*model == "gpt2", "gguf", path, ": tokenizer.ggml.model '", *model,
           "' is not supported (byte-level BPE 'gpt2' is)");
  std::vector<std::string> tokens = f.get_strings("tokenizer.ggml.tokens");
  NQ_CHECK(!tokens.empty(), "gguf", path, ": tokenizer.ggml.tokens is empty");
  std::vector<std::pair<std::string, std::string>> merges;
  if (f.has("tokenizer.ggml.merges")) {
    const std::vector<std::string>& m = f.get_strings("tokenizer.ggml.merges");
    merges.reserve(m.size());
    for (size_t r = 0; r < m.size(); ++r) {
      const size_t sp = m[r].find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == m[r].size() ||
          m[r].find(' ', sp + 1) != std::string::npos)
        fail("gguf", path, ": tokenizer.ggml.merges[", r, "] '", m[r], "' is not \"left right\"");
      merges.emplace_back(m[r].substr(0, sp), m[r].substr(sp + 1));
    }
  }
  std::vector<std::string> specials;
  if (f.has("tokenizer.ggml.token_type")) {
    const std::vector<int64_t>& types = f.get_ints("tokenizer.ggml.token_type");
    NQ_CHECK(types.size() == tokens.size(), "gguf", path, ": tokenizer.ggml.token_type has ", types.size(),
             " entries for ", tokens.size(), " tokens");
    for (size_t i = 0; i < types.size(); ++i) {
      NQ_CHECK(types[i] >= 1 && types[i] <= 6, "gguf", path, ": tokenizer.ggml.token_type[", i, "] is ",
               types[i], " (1 to 6)");
    }
  }
  // As transformers does: a token spelled outside the byte-level alphabet is
  // its UTF-8 bytes respelled in it, and is not special even when marked so.
  std::string scratch;
  for (size_t i = 0; i < tokens.size(); ++i) {
    scratch.clear();
    const bool spelled = bytelevel::decode(tokens[i], scratch);
    if (!spelled) tokens[i] = bytelevel::encode(tokens[i]);
    const int64_t type = f.has("tokenizer.ggml.token_type") ? f.get_ints("tokenizer.ggml.token_type")[i] : 1;
    if (spelled && (type == 3 || type == 4)) specials.push_back(tokens[i]);
  }
  BPETokenizer tok = BPETokenizer::from_vocab(tokens, merges, specials, path + ": tokenizer.ggml.tokens");
  tok.set_pre_tokenizer(gguf_pre_tokenizer(f.opt_string("tokenizer.ggml.pre").value_or("gpt2"), path));
  if (const auto eos = f.opt_int("tokenizer.ggml.eos_token_id")) {
    NQ_CHECK(*eos >= 0 && *eos < tok.vocab_size(), "gguf", path, ": tokenizer.ggml.eos_token_id ", *eos,
             " is not a token id (vocabulary of ", tok.vocab_size(), ")");
    const std::string& e = tok.id_to_token(int32_t(*eos));
    if (!tok.is_special(int32_t(*eos))) tok.add_special_token(e);
    tok.set_eos_token(e);
  }
  return tok;
}

}  // namespace nq::data
