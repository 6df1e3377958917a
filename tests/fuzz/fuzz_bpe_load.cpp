// Fuzzes loading a BPE vocabulary from file contents
// (BPETokenizer::from_file_contents, the parsing half of load / load_gpt2).
// The input is encoder.json, a NUL byte, vocab.bpe and optionally a second
// NUL byte and special_tokens.json. nq::Error is the expected way to reject
// them. A tokenizer that loads must encode/decode its own texts losslessly,
// and save() + load() (in a per-process temporary directory) must give it back.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nextquill/data/bpe.hpp>

#include "fuzz_common.hpp"

namespace {

// Never destroyed, so the atexit cleanup can still read it.
const std::string& save_dir() {
  static const std::string* dir = [] {
    auto* d = new std::string(
        (std::filesystem::temp_directory_path() / ("nq-fuzz-bpe-" + std::to_string(::getpid()))).string());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(*dir, ec);
    });
    return d;
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = nqfuzz::as_text(data, size);
  const size_t sep = in.find('\0');
  if (sep == std::string_view::npos) return 0;
  const std::string_view enc = in.substr(0, sep);
  std::string_view voc = in.substr(sep + 1);
  std::optional<std::string_view> special;
  if (const size_t sep2 = voc.find('\0'); sep2 != std::string_view::npos) {
    special = voc.substr(sep2 + 1);
    voc = voc.substr(0, sep2);
  }
  std::optional<nq::data::BPETokenizer> tok;
  try {
    tok.emplace(nq::data::BPETokenizer::from_file_contents(enc, voc, special));
  } catch (const nq::Error& e) {
    const std::string m = e.what();
    NQ_FUZZ_CHECK(m.find(".json") != std::string::npos || m.find("vocab.bpe") != std::string::npos,
                  "the message names the file: " + m);
    return 0;
  }

  // Round trips over the vocabulary's own strings and the raw input.
  // A byte without a symbol is dropped by encode (as HF tokenizers does).
  for (int b = 0; b < 256; ++b) {
    const int32_t id = tok->byte_to_id(uint8_t(b));
    NQ_FUZZ_CHECK(id < 0 || tok->token_bytes(id) == std::string(1, char(b)), "byte token");
    NQ_FUZZ_CHECK((id >= 0) == tok->has_byte(uint8_t(b)), "has_byte");
  }
  auto kept = [&](std::string_view x) {
    std::string k;
    for (unsigned char c : x)
      if (tok->has_byte(c)) k += char(c);
    return k;
  };
  std::string all;
  for (int32_t id = 0; id < tok->vocab_size() && all.size() < 4096; ++id) all += tok->token_bytes(id);
  for (const std::string_view x : {std::string_view(all), in}) {
    for (const bool allow_special : {false, true}) {
      const uint64_t dropped = tok->dropped_bytes();
      const std::vector<int32_t> ids = tok->encode(x, allow_special);
      if (!allow_special) {
        const std::string k = kept(x);
        NQ_FUZZ_CHECK(tok->decode(ids) == k, "decode(encode(x)) != x without its dropped bytes");
        NQ_FUZZ_CHECK(tok->dropped_bytes() - dropped == x.size() - k.size(), "dropped byte count");
      } else if (tok->num_missing_bytes() == 0) {
        NQ_FUZZ_CHECK(tok->decode(ids) == x, "decode(encode(x)) != x");
      }
    }
  }
  for (size_t r = 0; r < tok->num_merges(); ++r) {
    const auto [a, b] = tok->merges()[r];
    NQ_FUZZ_CHECK(tok->token_bytes(tok->merge_result(r)) == tok->token_bytes(a) + tok->token_bytes(b),
                  "merge result bytes");
  }
  if (tok->has_eos()) NQ_FUZZ_CHECK(tok->is_special(tok->eos_id()), "EOS is special");

  tok->save(save_dir());
  const nq::data::BPETokenizer back = nq::data::BPETokenizer::load(save_dir());
  NQ_FUZZ_CHECK(back.vocab_size() == tok->vocab_size() && back.merges() == tok->merges(), "save + load");
  for (int32_t id = 0; id < tok->vocab_size(); ++id)
    NQ_FUZZ_CHECK(back.id_to_token(id) == tok->id_to_token(id) && back.is_special(id) == tok->is_special(id),
                  "save + load token " + std::to_string(id));
  NQ_FUZZ_CHECK(back.special_tokens() == tok->special_tokens(), "save + load special tokens");
  NQ_FUZZ_CHECK(back.has_eos() == tok->has_eos() && (!back.has_eos() || back.eos_id() == tok->eos_id()),
                "save + load EOS");
  return 0;
}
