// Fuzzes the personalization JSONL loader (nq::data::parse_jsonl, the
// in-memory core of load_jsonl). The first byte picks the options
// (skip_bad_lines, max_examples); the rest is the file's contents. nq::Error
// is the expected way to reject a file. What loads must obey the record rules
// of personalization.hpp.
#include <nextquill/data/personalization.hpp>

#include "fuzz_common.hpp"

namespace {

bool blank(const std::string& s) { return nq::data::detail::is_blank(s); }
bool utf8(const std::string& s) { return nq::data::unicode::is_valid_utf8(s); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  nq::data::LoadOptions opts;
  opts.skip_bad_lines = data[0] & 1;
  opts.max_examples = (data[0] >> 1) & 7;  // 0 = all
  const std::string_view text = nqfuzz::as_text(data + 1, size - 1);
  nq::data::LoadReport rep;
  std::vector<nq::data::Example> out;
  try {
    out = nq::data::parse_jsonl(text, "fuzz.jsonl", opts, &rep);
  } catch (const nq::Error& e) {
    const std::string m = e.what();
    NQ_FUZZ_CHECK(m.find("fuzz.jsonl") != std::string::npos, "the message names the file: " + m);
    return 0;
  }
  NQ_FUZZ_CHECK(!out.empty(), "a file that loads has an example");
  NQ_FUZZ_CHECK(opts.max_examples == 0 || out.size() <= opts.max_examples, "max_examples");
  NQ_FUZZ_CHECK(rep.loaded == out.size() && rep.file == "fuzz.jsonl", "report");
  NQ_FUZZ_CHECK(opts.skip_bad_lines || rep.skipped == 0, "no skipped line without skip_bad_lines");
  NQ_FUZZ_CHECK(rep.errors.size() <= rep.skipped && rep.errors.size() <= 10, "report errors");
  int64_t prev_line = 0;
  for (const auto& ex : out) {
    NQ_FUZZ_CHECK(ex.line > prev_line, "line numbers increase");
    prev_line = ex.line;
    NQ_FUZZ_CHECK(!blank(ex.user) && utf8(ex.user), "user");
    NQ_FUZZ_CHECK(!blank(ex.target) && utf8(ex.target), "target");
    NQ_FUZZ_CHECK(utf8(ex.query), "query");
    for (const auto& h : ex.history) NQ_FUZZ_CHECK(!blank(h) && utf8(h), "history item");
  }
  return 0;
}
