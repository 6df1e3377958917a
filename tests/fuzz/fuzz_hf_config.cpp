// Fuzzes reading a Hugging Face config.json the way load_hf does: the text
// through nq::io::detail::parse_json_text, the JSON through
// hf_config_from_json. The same JSON also goes to CausalLMConfig::from_json,
// nextquill's own config reader (checkpoint metadata, pretrain --config).
// nq::Error is the expected way to reject any of them. An accepted config must
// be one a model can be built from: valid, with sizes whose products the model
// code forms fitting in int64.
#include <nextquill/nextquill.hpp>  // io/hf.hpp needs the ops the model code declares

#include "fuzz_common.hpp"

namespace {
void check_accepted(const nq::CausalLMConfig& c);

// Runs f; an nq::Error is an accepted outcome only if its message names
// `file`. Returns whether f succeeded.
template <class F>
bool ok_or_names_file(const char* file, F&& f) {
  try {
    f();
    return true;
  } catch (const nq::Error& e) {
    const std::string m = e.what();
    NQ_FUZZ_CHECK(m.find(file) != std::string::npos, "the message names the file: " + m);
    return false;
  }
}

// nextquill's own reader: unknown keys and wrong types are errors naming the file.
void fuzz_own_reader(const nlohmann::json& j) {
  nq::CausalLMConfig c;
  if (ok_or_names_file("fuzz/nq-config.json",
                       [&] { c = nq::CausalLMConfig::from_json(j, "fuzz/nq-config.json"); }))
    check_accepted(c);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  if (!ok_or_names_file("fuzz/config.json", [&] {
        j = nq::io::detail::parse_json_text(nqfuzz::as_text(data, size), "fuzz/config.json");
      }))
    return 0;
  fuzz_own_reader(j);
  nq::CausalLMConfig c;
  if (!ok_or_names_file("fuzz/config.json", [&] { c = nq::io::hf_config_from_json(j, "fuzz/config.json"); }))
    return 0;
  check_accepted(c);
  return 0;
}

namespace {
void check_accepted(const nq::CausalLMConfig& c) {
  c.validate();  // throws (a finding) if the reader let an invalid config through
  NQ_FUZZ_CHECK(c.ff() > 0 && c.hdim() > 0 && c.kv_heads() > 0, "derived sizes are positive");
  // The largest products the model code forms (UBSan flags a signed overflow).
  const int64_t q = c.n_heads * c.hdim(), kv = c.kv_heads() * c.hdim();
  const int64_t sizes[] = {c.vocab_size * c.d_model, c.max_seq_len * c.d_model, q * c.d_model,
                           kv * c.d_model,           c.ff() * c.d_model,        (q + 2 * kv) * c.d_model};
  for (int64_t s : sizes) NQ_FUZZ_CHECK(s > 0, "positive parameter count");
  const int64_t d = c.d_model, layer = (q + 2 * kv) * d + q * d + 3 * c.ff() * d;
  NQ_FUZZ_CHECK(2 * c.vocab_size * d + c.max_seq_len * d + c.n_layers * layer > 0, "total parameter count");
  (void)nq::CausalLMConfig::from_json(c.to_json(), "round trip");
  if (c.n_layers <= 64 &&
      (c.arch == "gpt2" || c.arch == "llama" || c.arch == "qwen2" || c.arch == "mistral")) {
    const auto names = nq::io::hf_name_table(c);
    NQ_FUZZ_CHECK(!names.empty(), "name table");
  }
}
}  // namespace
