#pragma once
// The page `nextquill inspect` writes: per example the history, the query,
// the target with every token coloured by its DCE (preference-bearing tokens
// marked, details in a hover tooltip), and the generations with and without
// history; then figures. One self-contained HTML5 file: inline CSS, no
// JavaScript, no external resources, all text escaped.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nextquill/report/svg.hpp"
#include "nextquill/report/table.hpp"

namespace nq::report {

// Text for HTML content or attribute values (same rules as xml_escape: the
// five special characters as entities, invalid UTF-8 and forbidden control
// characters as U+FFFD).
inline std::string html_escape(std::string_view s) { return xml_escape(s); }

// Members default-initialised so designated initialisers may omit any of
// them without -Wmissing-field-initializers.
struct TokenCell {
  std::string text = {};  // the decoded token's bytes (may hold spaces, newlines, part of a UTF-8 character)
  double dce = 0, weight = 0, mce = 0;
  bool preference_bearing = false;
};

struct InspectExample {
  std::string user = {}, query = {};
  std::vector<std::string> history = {};  // oldest first
  std::vector<TokenCell> target = {};
  std::string generated_with_history = {}, generated_without_history = {};
};

struct InspectPage {
  std::string title = {}, subtitle = {};
  double delta = 0.05;  // preference threshold: DCE > delta
  // Key/value lines shown at the top: run, method, estimator...
  std::vector<std::pair<std::string, std::string>> info = {};
  std::vector<InspectExample> examples = {};
  // (caption, inline SVG markup); the markup is inserted verbatim.
  std::vector<std::pair<std::string, std::string>> figures = {};
};

// |DCE| at which the colour scale saturates.
inline constexpr double kDceClamp = 0.5;

// Background colour "#rrggbb" for a DCE on a diverging scale: white at 0,
// linearly to blue (#0571b0) at -kDceClamp and red (#ca0020) at +kDceClamp,
// clamped beyond (ColorBrewer RdBu ends). NaN is grey.
inline std::string dce_color(double dce) {
  if (std::isnan(dce)) return "#d9d9d9";
  const double t = std::clamp(dce / kDceClamp, -1.0, 1.0);
  const int end[2][3] = {{0x05, 0x71, 0xb0}, {0xca, 0x00, 0x20}};
  const int* e = end[t > 0];
  const double a = std::abs(t);
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(std::lround(255 + a * (e[0] - 255))),
                static_cast<int>(std::lround(255 + a * (e[1] - 255))),
                static_cast<int>(std::lround(255 + a * (e[2] - 255))));
  return buf;
}

namespace detail {

// Text colour readable on dce_color(dce).
inline const char* dce_text_color(double dce) {
  return !std::isnan(dce) && std::abs(dce) / kDceClamp > 0.6 ? "#ffffff" : "#111111";
}

inline std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

inline std::string hex_byte(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02X", c);
  return buf;
}

// A token's bytes as a quoted C-style literal for the tooltip, so leading
// spaces, newlines and partial UTF-8 characters are all visible.
inline std::string token_literal(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    const auto c = static_cast<unsigned char>(s[i]);
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
    if (n == 0 || c == 0x7F || (c < 0x20 && c != '\n' && c != '\t' && c != '\r')) {
      out += hex_byte(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// A token's bytes as span content inside a white-space: pre-wrap container:
// spaces and tabs as they are, a newline as a visible "↵" followed by the
// line break, and bytes that are not text (control characters, a partial
// UTF-8 character) as a visible \xNN rather than a silent U+FFFD.
inline std::string token_body(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    const auto c = static_cast<unsigned char>(s[i]);
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
    if (c == '\n') {
      out += "<span class=\"nl\">\xE2\x86\xB5</span>\n";  // U+21B5 DOWNWARDS ARROW WITH CORNER LEFTWARDS
    } else if (n == 0 || c == 0x7F || (c < 0x20 && c != '\t')) {
      out += "<span class=\"raw\">" + hex_byte(c) + "</span>";
    } else {
      out += html_escape(s.substr(i - 1, 1));
    }
  }
  return out;
}

// Marked as preference-bearing when the caller flagged it or its DCE exceeds
// the page's delta (the same strict rule as the threshold weights).
inline bool is_preference(const TokenCell& t, double delta) {
  return t.preference_bearing || (std::isfinite(t.dce) && t.dce > delta);
}

inline std::string token_span(const TokenCell& t, double delta) {
  const bool pref = is_preference(t, delta);
  std::string tip = "token: " + token_literal(t.text) + "\nDCE: " + fmt_g(t.dce) +
                    "\nweight: " + fmt_g(t.weight) + "\nMCE: " + fmt_g(t.mce);
  if (pref) tip += "\npreference-bearing";
  return std::string("<span class=\"tok") + (pref ? " pref" : "") +
         "\" style=\"background:" + dce_color(t.dce) + ";color:" + dce_text_color(t.dce) + "\" title=\"" +
         html_escape(tip) + "\">" + token_body(t.text) + "</span>";
}

// Free text (history, query, generations) in a pre-wrap block; "(empty)"
// when there is none, so a missing generation is not mistaken for a blank one.
inline std::string text_block(const std::string& s, const char* cls = "text") {
  if (s.empty()) return std::string("<div class=\"") + cls + " empty\">(empty)</div>";
  return std::string("<div class=\"") + cls + "\">" + html_escape(s) + "</div>";
}

// Inline SVG without an XML declaration (not allowed inside HTML).
inline std::string_view strip_xml_prolog(std::string_view svg) {
  const size_t start = svg.find_first_not_of(" \t\r\n");
  if (start != std::string_view::npos && svg.substr(start, 5) == "<?xml") {
    const size_t end = svg.find("?>", start);
    if (end != std::string_view::npos) return svg.substr(end + 2);
  }
  return svg;
}

inline constexpr const char* kInspectCss = R"css(
:root{color-scheme:light}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fafafa;max-width:96rem;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.5rem 0 .2rem}
h2{font-size:1.15rem;margin:0 0 .3rem}
h3{font-size:.78rem;text-transform:uppercase;letter-spacing:.04em;color:#555;margin:.9rem 0 .3rem}
code,pre,.text,table.info td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
.subtitle{color:#555;margin:0 0 1rem}
table.info{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem}
table.info th{text-align:left;padding:.1rem 1.2rem .1rem 0;color:#555;font-weight:600;vertical-align:top}
table.info td{padding:.1rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
.legend{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center;font-size:.85rem;background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem .75rem;margin:0 0 1.5rem}
.legend .scale{display:inline-flex;border:1px solid #bbb;border-radius:3px;overflow:hidden}
.legend .scale span{padding:0 .45rem;font-family:ui-monospace,monospace;font-size:.8rem}
.example{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1rem 1.25rem;margin:0 0 1.5rem}
.meta{color:#666;font-size:.85rem;margin:0}
.text,pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.84rem;line-height:1.65;margin:0;background:#f5f5f5;border-radius:4px;padding:.5rem .6rem}
.text.empty{color:#999;font-style:italic}
details.history summary{cursor:pointer;font-size:.78rem;text-transform:uppercase;letter-spacing:.04em;color:#555;margin:.9rem 0 .3rem;font-weight:700}
ol.history{margin:0;padding-left:2.2rem}
ol.history li{margin:.3rem 0}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1rem;align-items:start}
.text.target{background:#fff;border:1px solid #e0e0e0}
.tok{border-radius:2px;box-shadow:inset 0 0 0 1px rgba(0,0,0,.1)}
.tok.pref{font-weight:700;text-decoration:underline;text-decoration-thickness:2px;text-underline-offset:2px}
.tok.pref::after{content:"\2022";font-size:.7em;vertical-align:super}
.tok:empty::before{content:"\2205";color:#999}
.nl,.raw{opacity:.6;font-size:.8em}
figure{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.75rem;margin:0 0 1.25rem}
figure svg{max-width:100%;height:auto;display:block}
figcaption{color:#444;font-size:.9rem;margin-top:.4rem}
)css";

}  // namespace detail

// The whole inspect page. Token spans carry class "tok" (plus "pref" when
// preference-bearing: flagged by the caller, or DCE > page.delta), the DCE
// colour as an inline background, and a title tooltip with the token, DCE,
// weight and MCE. Figures' SVG markup is inserted as is (it is markup, e.g.
// from svg.hpp); their captions and everything else are escaped.
inline std::string inspect_html(const InspectPage& page) {
  const std::string title = page.title.empty() ? "nextquill inspect" : page.title;
  const std::string delta = detail::fmt_g(page.delta);
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<title>" + html_escape(title) + "</title>\n<style>" + detail::kInspectCss +
       "</style>\n</head>\n<body>\n";
  h += "<header>\n<h1>" + html_escape(title) + "</h1>\n";
  if (!page.subtitle.empty()) h += "<p class=\"subtitle\">" + html_escape(page.subtitle) + "</p>\n";
  h += "</header>\n";

  if (!page.info.empty()) {
    h += "<table class=\"info\">\n";
    for (const auto& [k, v] : page.info) {
      h += "<tr><th>" + html_escape(k) + "</th><td>" + html_escape(v) + "</td></tr>\n";
    }
    h += "</table>\n";
  }

  // Legend: the colour scale at a few DCE values, and the markers.
  h += "<div class=\"legend\">\n<span>Token background = DCE, clamped at &#177;" + detail::fmt_g(kDceClamp) +
       ":</span>\n<span class=\"scale\">";
  for (double v : {-kDceClamp, -kDceClamp / 2, 0.0, kDceClamp / 2, kDceClamp}) {
    h += "<span style=\"background:" + dce_color(v) + ";color:" + detail::dce_text_color(v) + "\">" +
         (v > 0 ? "+" : "") + fmt(v, 2) + "</span>";
  }
  h += "</span>\n<span><b><u>bold underlined</u></b>&#8226; = preference-bearing (DCE &gt; &#948; = " +
       html_escape(delta) + ")</span>\n";
  h += "<span>&#8629; = newline, \\xNN = a byte that is not text by itself</span>\n";
  h += "<span>hover a token for token, DCE, weight, MCE</span>\n</div>\n";

  if (page.examples.empty()) h += "<p class=\"meta\">No examples.</p>\n";
  for (size_t i = 0; i < page.examples.size(); ++i) {
    const InspectExample& ex = page.examples[i];
    const std::string num = std::to_string(i + 1);
    size_t n_pref = 0, n_finite = 0;
    double dce_sum = 0;
    for (const auto& t : ex.target) {
      n_pref += detail::is_preference(t, page.delta);
      if (std::isfinite(t.dce)) ++n_finite, dce_sum += t.dce;
    }
    h += "<section class=\"example\" id=\"example-" + num + "\">\n";
    h += "<h2>Example " + num + " &#183; user <code>" + html_escape(ex.user) + "</code></h2>\n";
    h += "<p class=\"meta\">" + std::to_string(ex.target.size()) + " target tokens, " +
         std::to_string(n_pref) + " preference-bearing";
    if (n_finite > 0) h += ", mean DCE " + detail::fmt_g(dce_sum / static_cast<double>(n_finite));
    h += "</p>\n";

    if (ex.history.empty()) {
      h += "<h3>History</h3>\n<p class=\"meta\">No history.</p>\n";
    } else {
      // Long histories start folded so the target stays near the top; <details> needs no script.
      h += std::string("<details class=\"history\"") + (ex.history.size() <= 5 ? " open" : "") +
           "><summary>History: " + std::to_string(ex.history.size()) + " items, oldest first</summary>\n";
      h += "<ol class=\"history\">\n";
      for (const auto& item : ex.history) h += "<li>" + detail::text_block(item) + "</li>\n";
      h += "</ol>\n</details>\n";
    }
    // The parser drops one newline right after <pre>: give it one so a query's own leading newline stays.
    h += "<h3>Query</h3>\n<pre class=\"query\">\n" + html_escape(ex.query) + "</pre>\n";

    h += "<div class=\"cols\">\n<div>\n<h3>Target, coloured by DCE</h3>\n<div class=\"text target\">";
    for (const auto& t : ex.target) h += detail::token_span(t, page.delta);
    if (ex.target.empty()) h += "(no target tokens)";
    h += "</div>\n</div>\n";
    h += "<div>\n<h3>Generated with history</h3>\n" + detail::text_block(ex.generated_with_history) +
         "\n</div>\n";
    h += "<div>\n<h3>Generated without history</h3>\n" + detail::text_block(ex.generated_without_history) +
         "\n</div>\n";
    h += "</div>\n</section>\n";
  }

  if (!page.figures.empty()) {
    h += "<section class=\"figures\">\n<h2>Figures</h2>\n";
    for (const auto& [caption, svg] : page.figures) {
      h += "<figure>\n";
      h += detail::strip_xml_prolog(svg);
      h += "\n<figcaption>" + html_escape(caption) + "</figcaption>\n</figure>\n";
    }
    h += "</section>\n";
  }
  h += "</body>\n</html>\n";
  return h;
}

}  // namespace nq::report
