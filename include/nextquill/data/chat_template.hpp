#pragma once
// Chat formats of instruction-tuned models, recognised from the Jinja text a
// model ships (GGUF `tokenizer.chat_template`, HF `chat_template`), so that
// prompts are rendered exactly as `apply_chat_template` renders them for the
// plain conversations nextquill builds (an optional system turn, user turns,
// assistant turns; no tools).
//
//   ChatML (SmolLM2, Qwen2/2.5):  <|im_start|>ROLE\nCONTENT<|im_end|>\n
//   Llama 3:  <|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
//             (content trimmed, as Llama 3's template does)
//
// A template that is neither is an error naming it; a JSON file with the
// fields of ChatTemplate (from_json) describes any other turn-based format.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/data/prompt.hpp"

namespace nq::data {

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

struct ChatTemplate {
  std::string name;            // chatml, llama3, or a file's name
  std::string bos;             // text before the first turn
  std::string turn_prefix;     // holds {role} once
  std::string turn_suffix;     // after each turn's content
  std::string end_of_turn;     // the special token that ends an assistant turn
  std::string default_system;  // system turn added when the conversation has none ("" = none)
  bool trim_content = false;   // strip leading/trailing whitespace of each content

  static ChatTemplate chatml(std::string default_system = "") {
    return {"chatml", "", "<|im_start|>{role}\n", "<|im_end|>\n", "<|im_end|>", std::move(default_system),
            false};
  }
  static ChatTemplate llama3() {
    return {"llama3",     "<|begin_of_text|>", "<|start_header_id|>{role}<|end_header_id|>\n\n",
            "<|eot_id|>", "<|eot_id|>",        "",
            true};
  }

  // Recognises the model's Jinja template. `where` names its source.
  static ChatTemplate detect(std::string_view jinja, const std::string& where) {
    if (jinja.find("<|im_start|>") != std::string_view::npos &&
        jinja.find("<|im_end|>") != std::string_view::npos)
      return chatml(default_system_of(jinja));
    if (jinja.find("<|start_header_id|>") != std::string_view::npos &&
        jinja.find("<|eot_id|>") != std::string_view::npos) {
      NQ_CHECK(
          jinja.find("Cutting Knowledge Date") == std::string_view::npos, "ChatTemplate", where,
          ": this is Llama 3.1's template (it inserts dates into the system turn), which nextquill does not "
          "render; give a template file with --chat-template");
      return llama3();
    }
    std::string head(jinja.substr(0, 120));
    for (char& c : head)
      if (c == '\n') c = ' ';
    fail("ChatTemplate", where, ": unrecognised chat template (neither ChatML nor Llama 3): \"", head,
         jinja.size() > 120 ? "...\"" : "\"", "; give a template file with --chat-template");
  }

  // Keys: name, bos, turn_prefix (must hold {role}), turn_suffix, end_of_turn
  // (required, non-empty), default_system, trim_content.
  static ChatTemplate from_json(const nlohmann::json& j, const std::string& where) {
    NQ_CHECK(j.is_object(), "ChatTemplate", where, ": expected a JSON object, got ", j.type_name());
    static const char* known[] = {
        "name", "bos", "turn_prefix", "turn_suffix", "end_of_turn", "default_system", "trim_content"};
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool ok = false;
      for (const char* k : known) ok = ok || it.key() == k;
      NQ_CHECK(ok, "ChatTemplate", where, ": unknown key '", it.key(),
               "' (known: name, bos, turn_prefix, turn_suffix, end_of_turn, default_system, trim_content)");
    }
    ChatTemplate t;
    t.name = "custom";
    auto str = [&](const char* k, std::string& dst, bool required) {
      if (!j.contains(k)) {
        NQ_CHECK(!required, "ChatTemplate", where, ": missing key '", k, "'");
        return;
      }
      NQ_CHECK(j.at(k).is_string(), "ChatTemplate", where, ": key '", k, "' must be a string, got ",
               j.at(k).type_name());
      dst = j.at(k).get<std::string>();
    };
    str("name", t.name, false), str("bos", t.bos, false), str("turn_prefix", t.turn_prefix, true);
    str("turn_suffix", t.turn_suffix, true), str("end_of_turn", t.end_of_turn, true);
    str("default_system", t.default_system, false);
    if (j.contains("trim_content")) {
      NQ_CHECK(j.at("trim_content").is_boolean(), "ChatTemplate", where,
               ": key 'trim_content' must be a boolean");
      t.trim_content = j.at("trim_content").get<bool>();
    }
    NQ_CHECK(count(t.turn_prefix, "{role}") == 1, "ChatTemplate", where,
             ": turn_prefix must hold {role} once");
    NQ_CHECK(!t.end_of_turn.empty(), "ChatTemplate", where, ": end_of_turn must not be empty");
    return t;
  }
  static ChatTemplate load(const std::string& path) {
    const std::string text = detail::read_file("ChatTemplate", path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail("ChatTemplate", path, ": invalid JSON: ", detail::json_message(e));
    }
    return from_json(j, path);
  }
  nlohmann::json to_json() const {
    return {{"name", name},
            {"bos", bos},
            {"turn_prefix", turn_prefix},
            {"turn_suffix", turn_suffix},
            {"end_of_turn", end_of_turn},
            {"default_system", default_system},
            {"trim_content", trim_content}};
  }

  std::string turn(const std::string& role, std::string_view content) const {
    std::string p = turn_prefix;
    p.replace(p.find("{role}"), 6, role);
    return p + std::string(trim_content ? trim(content) : content) + turn_suffix;
  }
  std::string generation_prompt() const {
    std::string p = turn_prefix;
    return p.replace(p.find("{role}"), 6, "assistant");
  }
  // apply_chat_template(messages, add_generation_prompt).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    std::string s = bos;
    if (!default_system.empty() && (messages.empty() || messages.front().role != "system"))
      s += turn("system", default_system);
    for (const ChatMessage& m : messages) s += turn(m.role, m.content);
    if (add_generation_prompt) s += generation_prompt();
    return s;
  }

  // The personalization prompt of `inner` as one user turn, the target as the
  // assistant's answer ending in end_of_turn (which is then also what the loss
  // covers after the target and what generation stops at).
  PromptTemplate wrap(const PromptTemplate& inner) const {
    PromptTemplate t = inner;
    std::string before = bos;
    if (!default_system.empty()) before += turn("system", default_system);
    std::string p = turn_prefix;
    before += p.replace(p.find("{role}"), 6, "user");
    std::string body = inner.prompt;
    if (trim_content) body = trim_literal_ends(body);
    t.prompt = escape_braces(before) + body + escape_braces(turn_suffix + generation_prompt());
    t.end_token = end_of_turn;
    t.template_special_tokens = true;
    return t;
  }

 private:
  static size_t count(std::string_view s, std::string_view w) {
    size_t n = 0;
    for (size_t p = s.find(w); p != std::string_view::npos; p = s.find(w, p + w.size())) ++n;
    return n;
  }
  static std::string_view trim(std::string_view s) {
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
  }
  // Whitespace at the ends of a template's literal text (placeholders kept).
  static std::string trim_literal_ends(const std::string& s) {
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws), e = s.find_last_not_of(ws);
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  }
  static std::string escape_braces(const std::string& s) {
    std::string o;
    for (char c : s) {
      o += c;
      if (c == '{' || c == '}') o += c;
    }
    return o;
  }
  // ChatML templates that add a default system turn carry it as a literal
  // '<|im_start|>system\n...<|im_end|>' string (SmolLM2, Qwen2.5); the first
  // such literal whose text holds no Jinja is it.
  static std::string default_system_of(std::string_view j) {
    const std::string_view open = "<|im_start|>system";
    for (size_t p = j.find(open); p != std::string_view::npos; p = j.find(open, p + 1)) {
      size_t b = p + open.size();
      if (j.substr(b, 1) == "\n")
        b += 1;
      else if (j.substr(b, 2) == "\\n")
        b += 2;
      else
        continue;
      const size_t e = j.find("<|im_end|>", b);
      if (e == std::string_view::npos) break;
      const std::string_view text = j.substr(b, e - b);
      if (text.find_first_of("'\"{}%+") != std::string_view::npos || text.empty()) continue;
      std::string out;
      for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'n') {
          out += '\n';
          ++i;
        } else {
          out += text[i];
        }
      }
      return out;
    }
    return "";
  }
};

}  // namespace nq::data
