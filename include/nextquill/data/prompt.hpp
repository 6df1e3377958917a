#pragma once
// Prompts for personalization: every example is rendered twice, with the
// user's history and without it (a placeholder where the history would be),
// as the NextQuill method's two forward passes need.
//
//   nq::data::PromptBuilder pb(tok, nq::data::PromptTemplate{}, 256);
//   nq::data::EncodedExample e = pb.encode(example);
//   // e.prompt_h, e.prompt_0: token ids of the two prompts; e.target: target ids + EOS
//
// Templates. Placeholders are written {name}; "{{" and "}}" are literal braces.
// Values (user text) are inserted verbatim and never re-expanded.
//   prompt        the whole prompt; must hold {history} once and {query} at
//                 least once; may use {user}.
//   history_block what {history} becomes: must hold {items} once; may use {user}.
//   history_item  one history item: must hold {item}; may use {user}. Items are
//                 joined without separator (put one, e.g. "\n", in the item).
//   no_history    the text put in place of {items} for the no-history prompt,
//                 and when an example has no history (or none fits).
// Default (PromptTemplate{} == PromptTemplate::gitcommits(), for short commit
// subjects with a diffstat query), with history:
//   "Past subjects by this author:\n- <oldest>\n...\n- <newest>\n\nChanges:\n<query>\nSubject:\n"
// and without:
//   "Past subjects by this author:\nNone\nChanges:\n<query>\nSubject:\n"
// followed by the target. As in the reference code, the placeholder replaces the
// items only, so the no-history block ("...:\nNone\n") has no blank line after it.
// The prompt ends in a newline so that the separately tokenized target starts
// a new pre-token: prompt ids + target ids equal the ids of the joined text.
// Items are listed oldest first (the most recent next to the query) unless
// newest_first; max_history > 0 keeps only that many most recent items.
//
// Special tokens: the template's own text may contain the tokenizer's special
// tokens (e.g. "<|im_start|>"), which become their ids when
// template_special_tokens is true (default); user text (user, history, query,
// target) is always encoded with allow_special = false, so data cannot inject
// control tokens.
//
// Truncation (PromptBuilder, max_len > 0): the sequence prompt + target + EOS
// must fit max_len tokens. When it does not, the OLDEST history items are
// dropped first, one at a time; the prompt is re-rendered and re-tokenized for
// each candidate count, and the largest count that fits is found by binary
// search over the exact token counts (each kept item adds text, so counts grow
// with the number of items; the result k always fits and k + 1 items do not).
// The query and the target are never dropped. When even no history (the
// placeholder) does not fit, the example is kept with history_used = 0 and
// overflow = true: the collator (batch.hpp) then cuts the prompt from the left,
// and the target's tail only if the target alone is too long.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/bpe.hpp"
#include "nextquill/data/personalization.hpp"

namespace nq::data {

// A piece of a rendered prompt: template text (trusted: may hold special
// tokens) or a value taken from the data.
struct PromptPiece {
  std::string text;
  bool trusted = false;
};

namespace detail {

struct TemplatePart {
  bool field = false;
  std::string text;  // literal text, or the placeholder name
};

// Splits a template into literals and {placeholders}; checks the names.
inline std::vector<TemplatePart> parse_template(std::string_view t, const char* which,
                                                std::initializer_list<std::string_view> allowed) {
  auto allowed_list = [&] {
    std::string s;
    for (std::string_view a : allowed) {
      s += s.empty() ? "{" : ", {";
      s += a;
      s += '}';
    }
    return s;
  };
  std::vector<TemplatePart> parts;
  std::string lit;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if ((c == '{' || c == '}') && i + 1 < t.size() && t[i + 1] == c) {
      lit += c;
      ++i;
      continue;
    }
    if (c == '}')
      fail("PromptTemplate", which, ": unmatched '}' at byte ", i, " (write '}}' for a literal brace)");
    if (c != '{') {
      lit += c;
      continue;
    }
    const size_t close = t.find('}', i + 1);
    if (close == std::string_view::npos)
      fail("PromptTemplate", which, ": unclosed '{' at byte ", i, " (write '{{' for a literal brace)");
    const std::string name(t.substr(i + 1, close - i - 1));
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
      fail("PromptTemplate", which, ": unknown placeholder '{", name, "}' (allowed: ", allowed_list(),
           "; write '{{' for a literal brace)");
    if (!lit.empty()) parts.push_back({false, std::move(lit)});
    lit.clear();
    parts.push_back({true, name});
    i = close;
  }
  if (!lit.empty()) parts.push_back({false, std::move(lit)});
  return parts;
}

inline size_t count_field(const std::vector<TemplatePart>& parts, std::string_view name) {
  return size_t(std::count_if(parts.begin(), parts.end(),
                              [&](const TemplatePart& p) { return p.field && p.text == name; }));
}

}  // namespace detail

struct PromptTemplate {
  std::string prompt = "{history}Changes:\n{query}\nSubject:\n";
  std::string history_block = "Past subjects by this author:\n{items}\n";
  std::string history_item = "- {item}\n";
  std::string no_history = "None";
  bool newest_first = false;            // list history items newest first
  int64_t max_history = 0;              // > 0: keep at most this many most recent items
  bool template_special_tokens = true;  // special-token strings in template text become their ids
  std::string end_token;                // ends every target ("" = the tokenizer's EOS; chat: end of turn)

  // The default: git commit subjects (query = diffstat, target = subject line).
  static PromptTemplate gitcommits() { return {}; }
  // Task-neutral wording.
  static PromptTemplate generic() {
    PromptTemplate t;
    t.prompt = "{history}Query:\n{query}\nAnswer:\n";
    t.history_block = "History:\n{items}\n";
    return t;
  }
  // Tiny Shakespeare speakers (query = the previous speech "NAME: text").
  static PromptTemplate shakespeare() {
    PromptTemplate t;
    t.prompt = "{history}{query}\n\n{user}:\n";
    t.history_block = "Earlier speeches of {user}:\n{items}\n";
    t.history_item = "{item}\n--\n";
    return t;
  }

  // Throws nq::Error naming the template field when a template is malformed.
  void validate() const {
    const auto p = detail::parse_template(prompt, "prompt", {"history", "query", "user"});
    NQ_CHECK(detail::count_field(p, "history") == 1, "PromptTemplate",
             "prompt must contain {history} exactly once");
    NQ_CHECK(detail::count_field(p, "query") >= 1, "PromptTemplate", "prompt must contain {query}");
    const auto b = detail::parse_template(history_block, "history_block", {"items", "user"});
    NQ_CHECK(detail::count_field(b, "items") == 1, "PromptTemplate",
             "history_block must contain {items} exactly once");
    const auto it = detail::parse_template(history_item, "history_item", {"item", "user"});
    NQ_CHECK(detail::count_field(it, "item") >= 1, "PromptTemplate", "history_item must contain {item}");
    NQ_CHECK(max_history >= 0, "PromptTemplate", "max_history must be >= 0, got ", max_history);
  }

  // Keys: preset ("gitcommits", "generic", "shakespeare": the base whose values
  // the other keys override; default gitcommits), prompt, history_block,
  // history_item, no_history, newest_first, max_history, template_special_tokens,
  // end_token.
  // Unknown keys and wrong types are errors naming `where`.
  static PromptTemplate from_json(const nlohmann::json& j, const std::string& where = "prompt template") {
    NQ_CHECK(j.is_object(), "PromptTemplate", where, ": expected a JSON object, got ", j.type_name());
    static const char* known[] = {"preset",     "prompt",       "history_block", "history_item",
                                  "no_history", "newest_first", "max_history",   "template_special_tokens",
                                  "end_token"};
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool ok = false;
      for (const char* k : known) ok = ok || it.key() == k;
      if (!ok) {
        std::string list;
        for (const char* k : known) {
          if (!list.empty()) list += ", ";
          list += k;
        }
        fail("PromptTemplate", where, ": unknown key '", it.key(), "' (known: ", list, ")");
      }
    }
    auto get = [&](const char* k, auto& dst) {
      if (!j.contains(k)) return;
      using T = std::decay_t<decltype(dst)>;
      const nlohmann::json& v = j.at(k);
      bool ok;
      if constexpr (std::is_same_v<T, std::string>)
        ok = v.is_string();
      else if constexpr (std::is_same_v<T, bool>)
        ok = v.is_boolean();
      else
        ok = v.is_number_integer();
      if (!ok)
        fail("PromptTemplate", where, ": key '", k, "' must be ",
             std::is_same_v<T, std::string> ? "a string"
             : std::is_same_v<T, bool>      ? "a boolean"
                                            : "an integer",
             ", got ", v.type_name());
      dst = v.get<T>();
    };
    PromptTemplate t;
    std::string preset = "gitcommits";
    get("preset", preset);
    if (preset == "generic")
      t = generic();
    else if (preset == "shakespeare")
      t = shakespeare();
    else if (preset != "gitcommits")
      fail("PromptTemplate", where, ": unknown preset '", preset, "' (gitcommits, generic, shakespeare)");
    get("prompt", t.prompt), get("history_block", t.history_block), get("history_item", t.history_item);
    get("no_history", t.no_history), get("newest_first", t.newest_first), get("max_history", t.max_history);
    get("template_special_tokens", t.template_special_tokens), get("end_token", t.end_token);
    for (const std::string* s : {&t.prompt, &t.history_block, &t.history_item, &t.no_history})
      NQ_CHECK(unicode::is_valid_utf8(*s), "PromptTemplate", where, ": a template string is not valid UTF-8");
    try {
      t.validate();
    } catch (const Error& e) {
      fail("PromptTemplate", where, ": ", std::string(e.what()).substr(sizeof("nq::PromptTemplate: ") - 1));
    }
    return t;
  }
  // A JSON file holding from_json's object.
  static PromptTemplate load(const std::string& path) {
    const std::string text = detail::read_file("PromptTemplate", path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
      fail("PromptTemplate", path, ": invalid JSON: ", detail::json_message(e));
    }
    return from_json(j, path);
  }
  nlohmann::json to_json() const {
    nlohmann::json j = {{"prompt", prompt},
                        {"history_block", history_block},
                        {"history_item", history_item},
                        {"no_history", no_history},
                        {"newest_first", newest_first},
                        {"max_history", max_history},
                        {"template_special_tokens", template_special_tokens}};
    if (!end_token.empty()) j["end_token"] = end_token;
    return j;
  }

  // Items of ex the template may show: min(history size, max_history).
  size_t history_available(const Example& ex) const {
    const size_t n = ex.history.size();
    return max_history > 0 ? std::min(n, size_t(max_history)) : n;
  }

  // The prompt text of ex with its `keep` most recent (available) history items,
  // or with the placeholder when !with_history or no item is kept.
  std::string render(const Example& ex, bool with_history,
                     size_t keep = std::numeric_limits<size_t>::max()) const;
};

namespace detail {

// A validated template, parsed once.
class CompiledTemplate {
 public:
  explicit CompiledTemplate(const PromptTemplate& t) : t_(t) {
    t.validate();
    prompt_ = parse_template(t.prompt, "prompt", {"history", "query", "user"});
    block_ = parse_template(t.history_block, "history_block", {"items", "user"});
    item_ = parse_template(t.history_item, "history_item", {"item", "user"});
  }

  void render(const Example& ex, bool with_history, size_t keep, std::vector<PromptPiece>& out) const {
    out.clear();
    const size_t avail = t_.history_available(ex);
    const size_t k = with_history ? std::min(keep, avail) : 0;
    const size_t first = ex.history.size() - k;  // the k most recent items
    auto lit = [&](const std::string& s) { out.push_back({s, true}); };
    auto val = [&](const std::string& s) { out.push_back({s, false}); };
    for (const TemplatePart& p : prompt_) {
      if (!p.field) {
        lit(p.text);
      } else if (p.text == "query") {
        val(ex.query);
      } else if (p.text == "user") {
        val(ex.user);
      } else {  // history
        for (const TemplatePart& b : block_) {
          if (!b.field) {
            lit(b.text);
          } else if (b.text == "user") {
            val(ex.user);
          } else if (k == 0) {  // items
            lit(t_.no_history);
          } else {
            for (size_t r = 0; r < k; ++r) {
              const size_t idx = t_.newest_first ? ex.history.size() - 1 - r : first + r;
              for (const TemplatePart& it : item_) {
                if (!it.field)
                  lit(it.text);
                else
                  val(it.text == "item" ? ex.history[idx] : ex.user);
              }
            }
          }
        }
      }
    }
  }

  const PromptTemplate& tpl() const { return t_; }

 private:
  PromptTemplate t_;
  std::vector<TemplatePart> prompt_, block_, item_;
};

}  // namespace detail

inline std::string PromptTemplate::render(const Example& ex, bool with_history, size_t keep) const {
  std::vector<PromptPiece> pieces;
  detail::CompiledTemplate(*this).render(ex, with_history, keep, pieces);
  std::string s;
  for (const auto& p : pieces) s += p.text;
  return s;
}

// One example tokenized for the two passes. The target (with its EOS) is shared.
struct EncodedExample {
  std::vector<int32_t> prompt_h;  // prompt with history (placeholder when none is used)
  std::vector<int32_t> prompt_0;  // prompt without history (placeholder)
  std::vector<int32_t> target;    // target ids, then EOS
  int64_t history_used = 0;       // items in prompt_h
  int64_t history_dropped = 0;    // available items dropped to fit max_len (oldest first)
  bool overflow = false;          // some prompt + target exceeds max_len even without history
  std::string user;               // copied from the Example, with its line
  int64_t line = 0;
};

class PromptBuilder {
 public:
  // max_len <= 0: no length limit. The tokenizer must outlive the builder and
  // have an EOS token.
  PromptBuilder(const BPETokenizer& tok, PromptTemplate tpl = {}, int64_t max_len = 256)
      : tok_(&tok), tpl_(tpl), max_len_(max_len) {
    NQ_CHECK(tok.has_eos(), "PromptBuilder",
             "the tokenizer has no EOS token (add \"<|endoftext|>\" with add_special_tokens or call "
             "set_eos_token)");
    NQ_CHECK(max_len <= 0 || max_len >= 2, "PromptBuilder",
             "max_len must be >= 2 (one prompt token and EOS) or <= 0 for no limit, got ", max_len);
    eos_ = tok.eos_id();
    if (const std::string& end = tpl_.tpl().end_token; !end.empty()) {
      const auto id = tok.token_to_id(end);
      NQ_CHECK(id, "PromptBuilder", "the template's end_token '", end, "' is not a token of the tokenizer");
      eos_ = *id;
    }
    if (tpl_.tpl().template_special_tokens)
      for (const std::string& s : tok.special_tokens()) specials_.emplace_back(s, *tok.token_to_id(s));
  }
  PromptBuilder(BPETokenizer&&, PromptTemplate = {}, int64_t = 256) = delete;  // would dangle

  const PromptTemplate& prompt_template() const { return tpl_.tpl(); }
  int64_t max_len() const { return max_len_; }
  int32_t eos_id() const { return eos_; }

  // Token ids of the prompt with the `keep` most recent history items (no
  // truncation applied).
  std::vector<int32_t> encode_prompt(const Example& ex, bool with_history,
                                     size_t keep = std::numeric_limits<size_t>::max()) const {
    std::vector<PromptPiece> pieces;
    tpl_.render(ex, with_history, keep, pieces);
    return encode_pieces(pieces);
  }

  EncodedExample encode(const Example& ex) const {
    EncodedExample r;
    r.user = ex.user;
    r.line = ex.line;
    r.target = tok_->encode(ex.target, false);
    r.target.push_back(eos_);
    auto fits = [&](const std::vector<int32_t>& p) {
      return max_len_ <= 0 || int64_t(p.size() + r.target.size()) <= max_len_;
    };
    r.prompt_0 = encode_prompt(ex, false);
    const size_t avail = tpl_.tpl().history_available(ex);
    size_t used = 0;
    if (avail == 0) {
      r.prompt_h = r.prompt_0;
    } else if (std::vector<int32_t> full = encode_prompt(ex, true, avail); fits(full)) {
      r.prompt_h = std::move(full);
      used = avail;
    } else {
      // Largest k in [0, avail - 1] that fits; k = 0 is the placeholder prompt.
      size_t lo = 0, hi = avail - 1;
      std::vector<int32_t> best = r.prompt_0;
      while (lo < hi) {
        const size_t mid = (lo + hi + 1) / 2;
        std::vector<int32_t> ids = encode_prompt(ex, true, mid);
        if (fits(ids)) {
          lo = mid;
          best = std::move(ids);
        } else {
          hi = mid - 1;
        }
      }
      r.prompt_h = std::move(best);
      used = lo;
    }
    r.history_used = int64_t(used);
    r.history_dropped = int64_t(avail - used);
    r.overflow = !fits(r.prompt_h) || !fits(r.prompt_0);
    return r;
  }

  std::vector<EncodedExample> encode_all(const std::vector<Example>& exs) const {
    std::vector<EncodedExample> out;
    out.reserve(exs.size());
    for (const Example& ex : exs) out.push_back(encode(ex));
    return out;
  }

 private:
  const BPETokenizer* tok_;
  detail::CompiledTemplate tpl_;
  int64_t max_len_;
  int32_t eos_ = -1;
  std::vector<std::pair<std::string, int32_t>> specials_;  // empty unless template_special_tokens

  // Joins the pieces into runs of plain text (encoded with allow_special =
  // false) cut only at special-token strings found in template text.
  std::vector<int32_t> encode_pieces(const std::vector<PromptPiece>& pieces) const {
    std::vector<int32_t> out;
    std::string run;
    auto flush = [&] {
      tok_->encode_to(run, out, false);
      run.clear();
    };
    for (const PromptPiece& p : pieces) {
      if (!p.trusted || specials_.empty()) {
        run += p.text;
        continue;
      }
      size_t seg = 0;
      for (size_t i = 0; i < p.text.size();) {
        int32_t hit = -1;
        size_t len = 0;
        for (const auto& [s, id] : specials_)
          if (s.size() > len && std::string_view(p.text).substr(i, s.size()) == s) hit = id, len = s.size();
        if (hit < 0) {
          ++i;
          continue;
        }
        run.append(p.text, seg, i - seg);
        flush();
        out.push_back(hit);
        i += len;
        seg = i;
      }
      run.append(p.text, seg, std::string::npos);
    }
    flush();
    return out;
  }
};

}  // namespace nq::data
