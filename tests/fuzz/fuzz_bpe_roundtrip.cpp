// Fuzzes BPE encoding: decode(encode(x)) == x for every byte string x (valid
// UTF-8 or not), with a fixed small tokenizer trained at start-up by
// train_bpe (byte tokens, a few hundred merges including long ones, and
// special tokens). The first byte picks allow_special; the rest is x. Also
// checks that the pre-tokenizer's pieces tile x and that the cached encoder
// agrees with the uncached per-piece BPE.
#include <nextquill/data/bpe_trainer.hpp>

#include "fuzz_common.hpp"

namespace {

const nq::data::BPETokenizer& tokenizer() {
  static const nq::data::BPETokenizer tok = [] {
    const std::vector<std::string> texts = {
        "git branch: add --sort option; builtin-branch.c +14 -10\n"
        "Merge branch 'maint' into master\r\n\tFix typo in the the docs.\n",
        "O Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy name; "
        "or, if thou wilt not, be but sworn my love, and I'll no longer be a Capulet.",
        "Ünïcödé: naïve café, Straße, ελληνικά, русский, 日本語のテキスト, 한국어, عربى, "
        "emoji 😀👍🏽, digits ١٢٣ ½ Ⅻ, spaces\u00a0\u2003\u3000 and tabs\t\t\t.",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
        "abababababababababababababababababababababababababababababababababab 1234567890123456789012345",
        "it's they're we've I'm you'll he'd 'S 'T <|user|> hello <|assistant|> hi <|endoftext|>",
        "    indented code() {\n        return x->y[0] + 0x1f;\n    }\n\n\n",
    };
    nq::data::BPETrainerOptions opt;
    opt.num_merges = 400;
    opt.min_frequency = 1;
    opt.special_tokens = {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|"};
    return nq::data::train_bpe(texts, opt);
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool allow_special = data[0] & 1;
  const std::string_view x = nqfuzz::as_text(data + 1, size - 1);
  const nq::data::BPETokenizer& tok = tokenizer();

  const std::vector<int32_t> ids = tok.encode(x, allow_special);
  for (int32_t id : ids) NQ_FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "id in range");
  NQ_FUZZ_CHECK(ids.size() <= x.size(), "at most one id per byte");
  const std::string back = tok.decode(ids);
  NQ_FUZZ_CHECK(back == x, "decode(encode(x)) != x");

  if (!allow_special) {
    // Pieces tile the text; per-piece BPE without the cache gives the same ids.
    std::vector<int32_t> direct;
    size_t pos = 0;
    nq::data::gpt2_pretokenize(x, [&](std::string_view piece) {
      NQ_FUZZ_CHECK(!piece.empty() && piece.data() == x.data() + pos, "pieces tile the text");
      pos += piece.size();
      const std::vector<int32_t> p = tok.bpe(piece);
      direct.insert(direct.end(), p.begin(), p.end());
    });
    NQ_FUZZ_CHECK(pos == x.size(), "pieces cover the text");
    NQ_FUZZ_CHECK(direct == ids, "cached encode differs from per-piece bpe");
  } else {
    // Without special handling the special strings are ordinary text; same bytes back.
    NQ_FUZZ_CHECK(tok.decode(tok.encode(x, false)) == x, "ordinary encode round trip");
  }
  return 0;
}
