#pragma once
// Personalization datasets: one directory per task holding train.jsonl,
// valid.jsonl and test.jsonl, one record per line:
//
//   {"user": "u0001", "history": ["older subject", ..., "newest subject"],
//    "query": "builtin-branch.c +14 -10", "target": "git branch: ..."}
//
//   auto data = nq::data::load_dir("shared/data/gitcommits");   // throws on the first bad line
//   data.train[0].history.back();                               // the most recent history item
//
// Rules for a record (anything else is rejected):
// - a JSON object on one line; "user", "query" and "target" are strings,
//   "history" is an array of strings, most recent last; it may be empty (a
//   user with no history; the prompt then shows the no-history placeholder);
// - "user" and "target" must not be empty or whitespace only; "query" may be
//   empty; history items must not be empty or whitespace only;
// - every string is valid UTF-8 (a raw invalid byte is reported with the field
//   and the byte offset inside the decoded string value);
// - other fields are ignored (their names are listed in LoadReport::ignored_fields).
// Lines are split on '\n'; a trailing '\r' (CRLF files), a UTF-8 byte order
// mark at the start of the file and a last line without '\n' are accepted.
// Lines holding only spaces/tabs are skipped. Line numbers count from 1 and
// include blank lines.
//
// Error messages name the file, the line and the field, e.g.
//   nq::load_jsonl: data/train.jsonl line 17: field 'target' is empty
//   nq::load_jsonl: data/train.jsonl line 3: invalid JSON: parse error at line 1, column 12: ...
//   nq::load_jsonl: data/train.jsonl line 9: field 'history' must be an array of strings (item 2 is a number)
//   nq::load_jsonl: data/train.jsonl line 4: field 'query' is not valid UTF-8 (byte offset 12)
// History items are counted from 1 in messages. With LoadOptions::skip_bad_lines
// a bad line is counted (LoadReport::skipped) and its message kept (the first
// 10), and loading goes on. A file that is empty or yields no valid example is
// an error either way.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/unicode.hpp"

namespace nq::data {

struct Example {
  std::string user;
  std::vector<std::string> history;  // most recent last
  std::string query, target;
  int64_t line = 0;  // 1-based line in its file
};

struct LoadOptions {
  bool skip_bad_lines = false;  // count and skip malformed lines instead of throwing
  size_t max_examples = 0;      // per file; 0 = all
  // Splits load_dir reads (each "<split>.jsonl" must exist); any of train, valid, test.
  std::vector<std::string> splits = {"train", "valid", "test"};
};

struct LoadReport {
  std::string file;
  size_t loaded = 0, skipped = 0, blank_lines = 0;
  std::vector<std::string> errors;          // the first 10 messages of skipped lines
  std::vector<std::string> ignored_fields;  // unknown field names seen (sorted, each once)
};

namespace detail {

inline constexpr size_t kMaxReportedErrors = 10;

inline bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// Byte offset of the first invalid UTF-8 byte of s, or npos.
inline size_t first_invalid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unicode::Char c = unicode::decode_utf8(s, i);
    if (!c.valid) return i;
    i += c.len;
  }
  return std::string_view::npos;
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
inline std::string json_message(const nlohmann::json::exception& e) {
  std::string m = e.what();
  if (!m.empty() && m[0] == '[') {
    const size_t close = m.find("] ");
    if (close != std::string::npos) m = m.substr(close + 2);
  }
  return m;
}

// Where a raw invalid UTF-8 byte sits in a JSON line: in the name of a
// top-level field, in the value of field `field` (item `item` of an array
// value, 0-based; -1 when not in an array), or outside any string (found = false).
struct Utf8Site {
  bool found = false, is_key = false;
  std::string field;
  int64_t item = -1;
  size_t offset = 0;  // byte offset of the bad byte in the decoded string
};

// Decodes a complete JSON string literal; on failure returns the raw text.
inline std::string decode_literal(std::string_view lit) {
  try {
    return nlohmann::json::parse(lit).get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return std::string(lit);
  }
}

// Scans line up to the invalid byte at `bad` tracking objects, arrays and
// string literals (enough of JSON to name the field; the caller has checked
// that the line is otherwise well-formed).
inline Utf8Site locate_invalid_utf8(std::string_view line, size_t bad) {
  struct Frame {
    char kind;
    bool expect_key;
    int64_t index;
  };
  std::vector<Frame> stack;
  std::string key;  // the current top-level field name
  Utf8Site site;
  size_t i = 0;
  while (i < bad && i < line.size()) {
    const char c = line[i];
    if (c == '"') {
      size_t j = i + 1;
      while (j < line.size() && line[j] != '"') j += line[j] == '\\' ? 2 : 1;
      const bool is_key = !stack.empty() && stack.back().kind == '{' && stack.back().expect_key;
      if (bad < j || j >= line.size()) {  // the bad byte is inside this literal
        site.found = true;
        site.is_key = stack.size() == 1 && is_key;
        site.field = key;
        if (stack.size() >= 2 && stack[1].kind == '[') site.item = stack[1].index;
        std::string prefix(line.substr(i, bad - i));
        prefix += '"';
        try {
          site.offset = nlohmann::json::parse(prefix).get<std::string>().size();
        } catch (const nlohmann::json::exception&) {
          site.offset = bad - i - 1;
        }
        if (site.is_key) site.offset = bad;  // offset in the line for a field name
        return site;
      }
      if (stack.size() == 1 && is_key) key = decode_literal(line.substr(i, j + 1 - i));
      i = j + 1;
      continue;
    }
    switch (c) {
      case '{':
        stack.push_back({'{', true, 0});
        break;
      case '[':
        stack.push_back({'[', false, 0});
        break;
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        break;
      case ':':
        if (!stack.empty() && stack.back().kind == '{') stack.back().expect_key = false;
        break;
      case ',':
        if (!stack.empty()) {
          if (stack.back().kind == '{')
            stack.back().expect_key = true;
          else
            ++stack.back().index;
        }
        break;
      default:
        break;
    }
    ++i;
  }
  return site;
}

// "null", "a number", "an array", ... for messages.
inline std::string a_type(const nlohmann::json& j) {
  const std::string t = j.type_name();
  if (j.is_null()) return t;
  return std::string(t[0] == 'a' || t[0] == 'o' ? "an " : "a ").append(t);
}

// Parses one non-blank line into ex; returns "" or the reason it is rejected.
inline std::string parse_record(std::string_view line, Example& ex, std::set<std::string>& ignored) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    const size_t bad = first_invalid_utf8(line);
    if (bad != std::string_view::npos) {
      // Report a bad byte inside an otherwise well-formed record by field.
      std::string clean(line);
      for (size_t i = 0; i < clean.size();) {
        const unicode::Char c = unicode::decode_utf8(clean, i);
        if (!c.valid) clean[i] = '?';
        i += c.len;
      }
      const bool well_formed = nlohmann::json::accept(clean);
      const Utf8Site site = locate_invalid_utf8(line, bad);
      if (well_formed && site.found) {
        if (site.is_key)
          return nq::detail::concat("a field name is not valid UTF-8 (byte ", site.offset, " of the line)");
        if (site.item >= 0)
          return nq::detail::concat("field '", site.field, "' item ", site.item + 1,
                                    " is not valid UTF-8 (byte offset ", site.offset, ")");
        return nq::detail::concat("field '", site.field, "' is not valid UTF-8 (byte offset ", site.offset,
                                  ")");
      }
    }
    return std::string("invalid JSON: ").append(json_message(e));
  }
  if (!j.is_object()) return nq::detail::concat("expected a JSON object, got ", a_type(j));
  auto text_field = [&](const char* name, std::string& dst, bool allow_empty) -> std::string {
    auto it = j.find(name);
    if (it == j.end()) return nq::detail::concat("missing field '", name, "'");
    if (!it->is_string()) return nq::detail::concat("field '", name, "' must be a string, got ", a_type(*it));
    dst = it->get<std::string>();
    if (const size_t bad = first_invalid_utf8(dst); bad != std::string::npos)
      return nq::detail::concat("field '", name, "' is not valid UTF-8 (byte offset ", bad, ")");
    if (!allow_empty && is_blank(dst))
      return nq::detail::concat("field '", name, "' is empty", dst.empty() ? "" : " (whitespace only)");
    return "";
  };
  std::string err;
  if (!(err = text_field("user", ex.user, false)).empty()) return err;
  auto h = j.find("history");
  if (h == j.end()) return "missing field 'history'";
  if (!h->is_array())
    return nq::detail::concat("field 'history' must be an array of strings, got ", a_type(*h));
  ex.history.clear();
  ex.history.reserve(h->size());
  for (size_t k = 0; k < h->size(); ++k) {
    const nlohmann::json& item = (*h)[k];
    if (!item.is_string())
      return nq::detail::concat("field 'history' must be an array of strings (item ", k + 1, " is ",
                                a_type(item), ")");
    ex.history.push_back(item.get<std::string>());
    const std::string& s = ex.history.back();
    if (const size_t bad = first_invalid_utf8(s); bad != std::string::npos)
      return nq::detail::concat("field 'history' item ", k + 1, " is not valid UTF-8 (byte offset ", bad,
                                ")");
    if (is_blank(s)) return nq::detail::concat("field 'history' item ", k + 1, " is empty");
  }
  if (!(err = text_field("query", ex.query, true)).empty()) return err;
  if (!(err = text_field("target", ex.target, false)).empty()) return err;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k != "user" && k != "history" && k != "query" && k != "target") ignored.insert(k);
  }
  return "";
}

inline std::string read_file(const char* op, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(op, "file '", path, "' does not exist");
  if (!fs::is_regular_file(path, ec)) fail(op, "'", path, "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(op, "cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(op, "cannot read '", path, "'");
  return ss.str();
}

}  // namespace detail

// Parses the contents of a JSON-lines file; `path` only names it in messages
// (load_jsonl reads the file and calls this; the fuzz harness calls it directly).
// Same rules and errors as load_jsonl.
inline std::vector<Example> parse_jsonl(std::string_view text, const std::string& path,
                                        const LoadOptions& opts = {}, LoadReport* report = nullptr) {
  LoadReport rep;
  rep.file = path;
  std::set<std::string> ignored;
  std::vector<Example> out;
  std::string_view rest(text);
  if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3);
  int64_t line_no = 0;
  size_t non_blank = 0;
  std::string first_error;
  while (!rest.empty()) {
    if (opts.max_examples && out.size() >= opts.max_examples) break;
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (detail::is_blank(line)) {
      ++rep.blank_lines;
      continue;
    }
    ++non_blank;
    Example ex;
    const std::string err = detail::parse_record(line, ex, ignored);
    if (err.empty()) {
      ex.line = line_no;
      out.push_back(std::move(ex));
      continue;
    }
    const std::string msg = nq::detail::concat(path, " line ", line_no, ": ", err);
    if (!opts.skip_bad_lines) fail("load_jsonl", msg);
    ++rep.skipped;
    if (first_error.empty()) first_error = msg;
    if (rep.errors.size() < detail::kMaxReportedErrors) rep.errors.push_back(msg);
  }
  if (non_blank == 0) fail("load_jsonl", path, ": the file is empty (no records)");
  if (out.empty())
    fail("load_jsonl", path, ": no valid example (all ", rep.skipped,
         " records were rejected; first: ", first_error, ")");
  rep.loaded = out.size();
  rep.ignored_fields.assign(ignored.begin(), ignored.end());
  if (report) *report = std::move(rep);
  return out;
}

// Reads one JSON-lines file. Throws nq::Error naming file, line and field on
// the first bad line, unless opts.skip_bad_lines. Fills *report when given.
inline std::vector<Example> load_jsonl(const std::string& path, const LoadOptions& opts = {},
                                       LoadReport* report = nullptr) {
  return parse_jsonl(detail::read_file("load_jsonl", path), path, opts, report);
}

struct PersonalizationData {
  std::vector<Example> train, valid, test;
};

// Loads dir/<split>.jsonl for each split in opts.splits (default train, valid
// and test, all required); splits not listed stay empty. Appends one report
// per file to *reports when given.
inline PersonalizationData load_dir(const std::string& dir, const LoadOptions& opts = {},
                                    std::vector<LoadReport>* reports = nullptr) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("load_dir", "'", dir, "' is not a directory");
  NQ_CHECK(!opts.splits.empty(), "load_dir", "LoadOptions::splits is empty");
  PersonalizationData data;
  std::set<std::string> seen;
  for (const std::string& split : opts.splits) {
    std::vector<Example>* dst = split == "train"   ? &data.train
                                : split == "valid" ? &data.valid
                                : split == "test"  ? &data.test
                                                   : nullptr;
    if (!dst) fail("load_dir", "unknown split '", split, "' (expected train, valid or test)");
    if (!seen.insert(split).second) fail("load_dir", "split '", split, "' is listed twice");
    const std::string path = (fs::path(dir) / (split + ".jsonl")).string();
    if (!fs::exists(path, ec))
      fail("load_dir", "missing split file '", path, "' (", dir, " must hold ", split,
           ".jsonl; LoadOptions::splits chooses which splits are required)");
    LoadReport rep;
    *dst = load_jsonl(path, opts, &rep);
    if (reports) reports->push_back(std::move(rep));
  }
  return data;
}

}  // namespace nq::data
