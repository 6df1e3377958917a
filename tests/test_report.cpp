// Reporting (nq::report): mean/stddev against hand-computed values; the paired
// bootstrap (null, clearly better/worse, exact p on degenerate inputs,
// determinism, errors); SVG line plots and histograms checked with a small
// well-formedness checker; the inspect HTML page (escaping, DCE colours,
// preference marks, whitespace); Markdown tables and number formatting.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nextquill/report/report.hpp>
#include <random>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using nqtest::contains;
using nqtest::error_of;
namespace rp = nq::report;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t p = s.find(part); p != std::string::npos; p = s.find(part, p + part.size())) ++n;
  return n;
}

// Uniform noise in [-0.5, 0.5) from mt19937_64's raw output, which the
// standard fixes (its distributions are implementation-defined).
std::vector<double> noise(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = static_cast<double>(g() >> 11) * 0x1.0p-53 - 0.5;
  return v;
}

// "" when `doc` is well-formed XML-ish markup (every tag closed in order,
// quoted attributes, no raw '<' or '&' in text, only known entities), else
// what is wrong. HTML void elements (meta, br, ...) need no closing tag;
// <!...> and <?...?> are skipped; <style> content is taken as text.
std::string markup_problem(const std::string& doc) {
  const std::vector<std::string> voids = {"meta", "br", "link", "img", "hr", "input"};
  std::vector<std::string> stack;
  size_t i = 0;
  while (i < doc.size()) {
    const char c = doc[i];
    if (c == '&') {
      const size_t semi = doc.find(';', i);
      if (semi == std::string::npos || semi - i > 8) return "bare & at " + std::to_string(i);
      const std::string ent = doc.substr(i, semi - i + 1);
      const bool numeric = ent.size() > 3 && ent[1] == '#';
      if (!numeric && ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;") {
        return "unknown entity " + ent;
      }
      i = semi + 1;
      continue;
    }
    if (c != '<') {
      ++i;
      continue;
    }
    if (doc.compare(i, 2, "<!") == 0 || doc.compare(i, 2, "<?") == 0) {
      const size_t e = doc.find('>', i);
      if (e == std::string::npos) return "unterminated <! or <?";
      i = e + 1;
      continue;
    }
    const bool closing = i + 1 < doc.size() && doc[i + 1] == '/';
    size_t j = i + (closing ? 2 : 1);
    const size_t name_start = j;
    while (j < doc.size() &&
           (std::isalnum(static_cast<unsigned char>(doc[j])) || doc[j] == '-' || doc[j] == ':')) {
      ++j;
    }
    const std::string name = doc.substr(name_start, j - name_start);
    if (name.empty()) return "raw '<' at " + std::to_string(i);
    char quote = 0;
    while (j < doc.size() && (quote || doc[j] != '>')) {
      if (quote && doc[j] == quote) {
        quote = 0;
      } else if (!quote && (doc[j] == '"' || doc[j] == '\'')) {
        quote = doc[j];
      } else if (quote && doc[j] == '<') {
        return "raw '<' in an attribute of <" + name + ">";
      }
      ++j;
    }
    if (j >= doc.size()) return "unterminated tag <" + name;
    const bool self_closing = doc[j - 1] == '/';
    i = j + 1;
    if (closing) {
      if (stack.empty() || stack.back() != name) {
        return "</" + name + "> closes <" + (stack.empty() ? std::string("nothing") : stack.back()) + ">";
      }
      stack.pop_back();
    } else if (!self_closing && std::find(voids.begin(), voids.end(), name) == voids.end()) {
      stack.push_back(name);
    }
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = rp::detail::utf8_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// The complete token spans (<span class="tok...">...</span>, nested spans
// included) of an inspect page, in order.
std::vector<std::string> token_spans(const std::string& html) {
  std::vector<std::string> out;
  for (size_t p = html.find("<span class=\"tok"); p != std::string::npos;
       p = html.find("<span class=\"tok", p + 1)) {
    int depth = 0;
    size_t q = p;
    do {
      const size_t open = html.find("<span", q), close = html.find("</span>", q);
      REQUIRE(close != std::string::npos);
      if (open < close) {
        ++depth, q = open + 5;
      } else {
        --depth, q = close + 7;
      }
    } while (depth > 0);
    out.push_back(html.substr(p, q - p));
  }
  return out;
}

// The text between a span's opening tag and its last "</span>".
std::string span_body(const std::string& span) {
  const size_t open_end = span.find('>');
  return span.substr(open_end + 1, span.size() - 7 - open_end - 1);
}

// Sum of the per-bar counts histogram_svg puts in each bar's <title> ("...: N</title>").
int64_t bar_count_sum(const std::string& svg) {
  int64_t sum = 0;
  for (size_t p = svg.find("<rect class=\"bar\""); p != std::string::npos;
       p = svg.find("<rect class=\"bar\"", p + 1)) {
    const size_t end = svg.find("</title>", p);
    const size_t colon = svg.rfind(": ", end);
    sum += std::stoll(svg.substr(colon + 2, end - colon - 2));
  }
  return sum;
}

}  // namespace

// --- stats ---------------------------------------------------------------------

TEST_CASE("report: mean and sample stddev against hand-computed values") {
  const std::vector<double> v = {2, 4, 4, 4, 5, 5, 7, 9};  // sum 40; squared deviations sum to 32
  CHECK(rp::mean(v) == doctest::Approx(5.0));
  CHECK(rp::stddev(v) == doctest::Approx(std::sqrt(32.0 / 7.0)));
  CHECK(rp::mean({-1, 1, 3}) == doctest::Approx(1.0));
  CHECK(rp::stddev({1, 2}) == doctest::Approx(std::sqrt(0.5)));
  CHECK(rp::stddev({1.5}) == 0.0);
  CHECK(rp::stddev({}) == 0.0);
  CHECK(contains(error_of([] { rp::mean({}); }), "report::mean"));
}

TEST_CASE("report: paired bootstrap on identical systems finds no difference") {
  const auto a = noise(200, 7);
  const auto r = rp::paired_bootstrap(a, a, 2000);
  CHECK(r.diff == 0.0);
  CHECK(r.p_value >= 0.4);
  CHECK(r.ci_low == 0.0);
  CHECK(r.ci_high == 0.0);
  CHECK(r.n == 200);
  CHECK(r.iterations == 2000);
}

TEST_CASE("report: paired bootstrap on a clearly better and a clearly worse system") {
  const size_t n = 300;
  std::vector<double> b = noise(n, 1), e = noise(n, 2), a(n);
  for (size_t i = 0; i < n; ++i) b[i] += 0.5, a[i] = b[i] + 0.1 + e[i];
  const auto better = rp::paired_bootstrap(a, b);
  CHECK(better.diff == doctest::Approx(rp::mean(a) - rp::mean(b)));
  CHECK(better.diff > 0.05);
  CHECK(better.p_value < 0.01);
  CHECK(better.p_value > 0.0);  // the +1 in the definition: never exactly 0
  CHECK(better.ci_low > 0.0);
  CHECK(better.ci_low < better.diff);
  CHECK(better.ci_high > better.diff);
  CHECK(better.iterations == 10000);

  const auto worse = rp::paired_bootstrap(b, a);
  CHECK(worse.diff == doctest::Approx(-better.diff));
  CHECK(worse.p_value > 0.99);
  CHECK(worse.ci_high < 0.0);
}

TEST_CASE("report: paired bootstrap p-value follows its definition exactly") {
  // Every resample of a constant difference of +1 has mean 1 > 0: p = 1 / (1 + iterations).
  const auto r = rp::paired_bootstrap({1, 1, 1}, {0, 0, 0}, 99);
  CHECK(r.p_value == doctest::Approx(0.01));
  CHECK(r.ci_low == doctest::Approx(1.0));
  CHECK(r.ci_high == doctest::Approx(1.0));
  // ... and of -1: every resample counts, p = (1 + 99) / (1 + 99) = 1.
  CHECK(rp::paired_bootstrap({0, 0, 0}, {1, 1, 1}, 99).p_value == 1.0);
}

TEST_CASE("report: paired bootstrap is deterministic for a fixed seed") {
  const size_t n = 120;
  std::vector<double> b = noise(n, 3), e = noise(n, 4), a(n);
  for (size_t i = 0; i < n; ++i) a[i] = b[i] + 0.02 + e[i];  // a weak effect: p well inside (0, 1)
  const auto r1 = rp::paired_bootstrap(a, b, 3000, 42);
  const auto r2 = rp::paired_bootstrap(a, b, 3000, 42);
  const auto r3 = rp::paired_bootstrap(a, b, 3000, 43);
  CHECK(r1.p_value == r2.p_value);
  CHECK(r1.ci_low == r2.ci_low);
  CHECK(r1.ci_high == r2.ci_high);
  CHECK(r1.p_value > 0.01);
  CHECK(r1.p_value < 0.99);
  CHECK((r3.p_value != r1.p_value || r3.ci_low != r1.ci_low));
}

TEST_CASE("report: paired bootstrap errors") {
  const std::string size_err = error_of([] { rp::paired_bootstrap({1, 2, 3}, {1, 2, 3, 4, 5}); });
  CHECK(contains(size_err, "report::paired_bootstrap"));
  CHECK(contains(size_err, "a has 3"));
  CHECK(contains(size_err, "b has 5"));
  CHECK(contains(error_of([] { rp::paired_bootstrap({}, {}); }), "no examples"));
  CHECK(contains(error_of([] { rp::paired_bootstrap({1}, {0}, 0); }), "iterations"));
  CHECK(contains(error_of([] { rp::paired_bootstrap({1, kNaN}, {0, 0}); }), "example 1"));
}

// --- svg ------------------------------------------------------------------------

TEST_CASE("report: histogram_counts bins finite values, the last bin closed at hi") {
  const std::vector<double> v = {0, 0.1, 0.5, 0.99, 1.0, kNaN, -0.1, 1.5, kInf, -kInf};
  CHECK(rp::histogram_counts(v, 4, 0, 1) == std::vector<int64_t>{2, 0, 1, 2});
  // hi with a step that is not exact in binary still lands in the last bin.
  CHECK(rp::histogram_counts({0.1, 0.7, 0.7}, 3, 0.1, 0.7) == std::vector<int64_t>{1, 0, 2});
  const auto r = noise(1000, 9);
  int64_t total = 0;
  for (int64_t c : rp::histogram_counts(r, 17, -0.5, 0.5)) total += c;
  CHECK(total == 1000);
  CHECK(contains(error_of([] { rp::histogram_counts({1}, 0, 0, 1); }), "bins"));
  CHECK(contains(error_of([] { rp::histogram_counts({1}, 3, 1, 1); }), "lo < hi"));
}

TEST_CASE("report: nice_ticks uses 1-2-5 steps and covers the range") {
  const auto t = rp::nice_ticks(0.13, 0.97, 5);
  CHECK(t.lo == 0.0);
  CHECK(t.hi == doctest::Approx(1.0));
  CHECK(t.step == doctest::Approx(0.2));
  CHECK(t.values.size() == 6);
  const auto u = rp::nice_ticks(0, 1234, 5);
  CHECK(u.step == 500.0);
  CHECK(u.values == std::vector<double>{0, 500, 1000, 1500});
  const auto z = rp::nice_ticks(-0.3, 0.2, 5);
  CHECK(z.lo <= -0.3);
  CHECK(z.hi >= 0.2);
  for (double x : z.values) CHECK_FALSE((x == 0 && std::signbit(x)));  // no "-0" tick
  const auto c = rp::nice_ticks(3, 3);  // a single value still gets an axis around it
  CHECK(c.lo < 3.0);
  CHECK(c.hi > 3.0);
}

TEST_CASE("report: line plot SVG is well formed with one polyline per non-empty series") {
  std::vector<double> x, y1, y2;
  for (int i = 0; i < 10; ++i) x.push_back(i * 100), y1.push_back(3.0 - i * 0.2), y2.push_back(2.5 - i * 0.1);
  const std::string svg = rp::line_plot_svg({{"train <&>", x, y1}, {"val", x, y2}, {"empty", {}, {}}},
                                            {.title = "loss \"curve\"", .xlabel = "step", .ylabel = "nats"});
  CHECK(markup_problem(svg) == "");
  CHECK(count(svg, "<svg") == 1);
  CHECK(count(svg, "</svg>") == 1);
  CHECK(svg.rfind("</svg>") > svg.rfind("<polyline"));
  CHECK(contains(svg, "viewBox=\"0 0 640 360\""));
  CHECK(count(svg, "<polyline") == 2);
  CHECK(contains(svg, "train &lt;&amp;&gt;"));
  CHECK_FALSE(contains(svg, "train <&>"));
  CHECK(contains(svg, "loss &quot;curve&quot;"));
  CHECK(contains(svg, "class=\"legend\""));
  CHECK(contains(svg, "stroke=\"#0072B2\""));  // first two palette colours, one per series
  CHECK(contains(svg, "stroke=\"#D55E00\""));
  CHECK(contains(svg, ">step</text>"));
  CHECK(contains(svg, ">800</text>"));  // a nice x tick (0 to 1000 by 200)
  CHECK(count(svg, "http://") == 1);    // only the xmlns namespace name: no external resources

  const std::string one = rp::line_plot_svg({{"only", x, y1}});
  CHECK(markup_problem(one) == "");
  CHECK_FALSE(contains(one, "class=\"legend\""));
}

TEST_CASE("report: line plot skips non-finite points as gaps") {
  const std::vector<double> x = {0, 1, 2, 3, 4, 5};
  const std::string gap = rp::line_plot_svg({{"s", x, {1, 2, kNaN, 4, 5, 6}}});
  CHECK(markup_problem(gap) == "");
  CHECK(count(gap, "<polyline") == 2);
  CHECK_FALSE(contains(gap, "nan"));
  CHECK_FALSE(contains(gap, "inf"));
  // Points isolated by gaps (NaN in x or y) become dots.
  const std::string dots = rp::line_plot_svg({{"s", {0, 1, 2, kNaN, 4}, {1, kNaN, 3, 4, kInf}}});
  CHECK(count(dots, "<polyline") == 0);
  CHECK(count(dots, "<circle") == 2);
  // With log_y, y <= 0 cannot be drawn and is skipped too.
  const std::string log = rp::line_plot_svg({{"s", {0, 1, 2, 3}, {1, 0, 10, 100}}}, {.log_y = true});
  CHECK(markup_problem(log) == "");
  CHECK(count(log, "<polyline") == 1);
  CHECK(count(log, "<circle") == 1);
  CHECK(contains(log, ">100</text>"));
}

TEST_CASE("report: line plot errors and empty input") {
  const std::string err = error_of([] {
    rp::line_plot_svg({{"ok", {1, 2}, {1, 2}}, {"val <x>", {1, 2, 3}, {1, 2}}});
  });
  CHECK(contains(err, "report::line_plot_svg"));
  CHECK(contains(err, "\"val <x>\""));
  CHECK(contains(err, "3 x values"));
  CHECK(contains(error_of([] { rp::line_plot_svg({}, {.width = 10}); }), "plot size"));
  for (const auto& in : {std::vector<rp::Series>{}, std::vector<rp::Series>{{"a", {}, {}}, {"b", {}, {}}},
                         std::vector<rp::Series>{{"nan", {1, 2}, {kNaN, kNaN}}}}) {
    const std::string svg = rp::line_plot_svg(in, {.title = "t"});
    CHECK(markup_problem(svg) == "");
    CHECK(contains(svg, "no data"));
    CHECK(contains(svg, "viewBox="));
    CHECK(count(svg, "<polyline") == 0);
  }
}

TEST_CASE("report: histogram SVG bars hold every finite value, marker drawn when given") {
  std::vector<double> g1 = noise(500, 11), g2 = noise(300, 12);
  for (auto& v : g2) v = v * 0.5 + 0.2;
  g1.push_back(kNaN);
  g2.push_back(kInf);
  const std::string svg = rp::histogram_svg({{"sft", g1}, {"nq <dyn>", g2}}, 20,
                                            {.title = "token DCE", .xlabel = "DCE"}, 0.05, "\xCE\xB4 = 0.05");
  CHECK(markup_problem(svg) == "");
  CHECK(bar_count_sum(svg) == 800);
  CHECK(count(svg, "<rect class=\"bar\"") <= 40);
  CHECK(contains(svg, "class=\"marker\""));
  CHECK(contains(svg, "stroke-dasharray=\"5 4\""));
  CHECK(contains(svg, ">\xCE\xB4 = 0.05</text>"));
  CHECK(contains(svg, "nq &lt;dyn&gt;"));
  CHECK(contains(svg, "class=\"legend\""));
  CHECK(contains(svg, ">count</text>"));

  const std::string plain = rp::histogram_svg({{"one", {1, 1, 1}}}, 5);
  CHECK(markup_problem(plain) == "");
  CHECK_FALSE(contains(plain, "class=\"marker\""));
  CHECK_FALSE(contains(plain, "class=\"legend\""));
  CHECK(bar_count_sum(plain) == 3);

  const std::string log = rp::histogram_svg({{"a", g1}}, 10, {.log_y = true});
  CHECK(markup_problem(log) == "");
  CHECK(bar_count_sum(log) == 500);

  CHECK(contains(rp::histogram_svg({{"a", {kNaN}}}, 5), "no data"));
  CHECK(contains(error_of([] { rp::histogram_svg({{"a", {1}}}, 0); }), "bins"));
  CHECK(contains(error_of([] { rp::histogram_svg({{"a", {1}}}, 5, {}, kNaN); }), "marker"));
}

// --- html -----------------------------------------------------------------------

TEST_CASE("report: html_escape escapes markup and repairs bytes") {
  CHECK(rp::html_escape("<script>alert('x')&\"</script>") ==
        "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;");
  CHECK(rp::html_escape("caf\xC3\xA9\n\ttab") == "caf\xC3\xA9\n\ttab");
  CHECK(rp::html_escape("a\xFF"
                        "b") ==
        "a\xEF\xBF\xBD"
        "b");  // invalid byte -> U+FFFD
  CHECK(rp::html_escape("a\x01"
                        "b") ==
        "a\xEF\xBF\xBD"
        "b");                                                        // control character -> U+FFFD
  CHECK(rp::html_escape("\xE4\xB8") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // truncated sequence
}

TEST_CASE("report: dce_color diverging scale") {
  CHECK(rp::dce_color(0.5) == "#ca0020");
  CHECK(rp::dce_color(3.0) == "#ca0020");  // clamped
  CHECK(rp::dce_color(-0.5) == "#0571b0");
  CHECK(rp::dce_color(-9.0) == "#0571b0");
  CHECK(rp::dce_color(0.0) == "#ffffff");
  CHECK(rp::dce_color(0.25) == "#e58090");  // halfway from white: (255+202)/2, (255+0)/2, (255+32)/2, rounded
  CHECK(rp::dce_color(kNaN) == "#d9d9d9");
}

TEST_CASE("report: inspect page escapes everything, colours and marks every token") {
  rp::InspectPage page;
  page.title = "inspect <run>";
  page.subtitle = "dynamic & fixed";
  page.delta = 0.05;
  page.info = {{"run", "runs/s1"}, {"estimator", "p_h - p_0"}};
  rp::InspectExample ex;
  ex.user = "<script>alert(1)</script>";
  ex.history = {"first item", "second <b>item</b>"};
  ex.query = "Write a title:\n  keep the indent";
  ex.target = {{"<script>", 0.5, 0.9, 0.01, false},
               {" world", -0.5, 0.1, 0.02, false},
               {"\n", 0.0, 0.1, 0.0, false},
               {"x", 0.05, 0.1, 0.0, false},
               {"y", 0.06, 0.9, 0.0, false},
               {"z", 2.0, 0.9, 0.0, false},
               {"  two spaces", -0.01, 0.1, 0.0, false}};
  ex.generated_with_history = "with <history>";
  ex.generated_without_history = "";
  page.examples = {ex};
  page.figures = {{"DCE <histogram>", rp::histogram_svg({{"a", {0.1, 0.2}}}, 4)}};
  const std::string html = rp::inspect_html(page);

  CHECK(markup_problem(html) == "");
  CHECK(valid_utf8(html));
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK_FALSE(contains(html, "<script"));
  CHECK(contains(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
  CHECK(contains(html, "inspect &lt;run&gt;"));
  CHECK(contains(html, "dynamic &amp; fixed"));
  CHECK(contains(html, "second &lt;b&gt;item&lt;/b&gt;"));
  CHECK(html.find("first item") < html.find("second &lt;b&gt;"));  // oldest first
  CHECK(contains(html, "<ol class=\"history\">"));
  CHECK(contains(html, "Write a title:\n  keep the indent"));
  CHECK(contains(html, "with &lt;history&gt;"));
  CHECK(contains(html, "(empty)"));  // the missing generation
  CHECK(contains(html, "<th>estimator</th><td>p_h - p_0</td>"));
  CHECK(contains(html, "DCE &gt; &#948; = 0.05"));
  CHECK(contains(html, "DCE &lt;histogram&gt;"));
  CHECK(contains(html, "<svg xmlns="));  // figure markup inserted as is
  CHECK(contains(html, "white-space:pre-wrap"));
  // No external resources or scripts.
  for (const char* ext : {"<link", "src=", "href=", "@import", "url(", "<script"})
    CHECK_FALSE(contains(html, ext));

  const auto spans = token_spans(html);
  REQUIRE(spans.size() == ex.target.size());
  CHECK(contains(spans[0], "background:#ca0020"));
  CHECK(contains(spans[1], "background:#0571b0"));
  CHECK(contains(spans[2], "background:#ffffff"));
  CHECK(contains(spans[5], "background:#ca0020"));
  for (size_t i = 0; i < spans.size(); ++i) {
    CAPTURE(i);
    CHECK(contains(spans[i], "class=\"tok pref\"") == (ex.target[i].dce > page.delta));
    CHECK(contains(spans[i], "title=\"token: "));
    CHECK(contains(spans[i], "\nDCE: "));
    CHECK(contains(spans[i], "\nweight: "));
    CHECK(contains(spans[i], "\nMCE: "));
  }
  CHECK(span_body(spans[0]) == "&lt;script&gt;");
  CHECK(contains(spans[0], "title=\"token: &quot;&lt;script&gt;&quot;\nDCE: 0.5\nweight: 0.9\nMCE: 0.01"));
  CHECK(span_body(spans[1]) == " world");  // the leading space kept as is
  CHECK(span_body(spans[6]) == "  two spaces");
  CHECK(contains(span_body(spans[2]), "\xE2\x86\xB5</span>\n"));  // newline shown and kept
  CHECK(contains(spans[2], "token: &quot;\\n&quot;"));
  CHECK(contains(html, "3 preference-bearing"));
}

TEST_CASE("report: inspect page shows a caller-flagged token and bytes that are not text") {
  rp::InspectPage page;
  rp::InspectExample ex;
  ex.user = "u1";
  // A token holding half of a 3-byte character (as byte-level BPE can produce), and one
  // the caller flagged as preference-bearing although its DCE is below delta.
  ex.target = {{"\xE4\xB8", 0.0, 0.1, 0.0, false}, {"a\x01", 0.01, 0.9, 0.0, true}};
  page.examples = {ex};
  const std::string html = rp::inspect_html(page);
  CHECK(markup_problem(html) == "");
  CHECK(valid_utf8(html));
  const auto spans = token_spans(html);
  REQUIRE(spans.size() == 2);
  CHECK(span_body(spans[0]) == "<span class=\"raw\">\\xE4</span><span class=\"raw\">\\xB8</span>");
  CHECK(contains(spans[0], "token: &quot;\\xE4\\xB8&quot;"));
  CHECK(contains(spans[1], "class=\"tok pref\""));
  CHECK(contains(span_body(spans[1]), "\\x01"));
  CHECK(contains(html, "No history."));
}

// --- table ----------------------------------------------------------------------

TEST_CASE("report: markdown_table alignment row, padding and errors") {
  CHECK(rp::markdown_table({"method", "score", "n"}, {{"a", "0.1", "3"}, {"bbbb", "10.25", "12345"}},
                           {'l', 'r', 'c'}) ==
        "| method | score |   n   |\n"
        "| :----- | ----: | :---: |\n"
        "| a      |   0.1 |   3   |\n"
        "| bbbb   | 10.25 | 12345 |\n");
  CHECK(rp::markdown_table({"x"}, {{"a|b"}}) ==
        "| x    |\n"
        "| ---- |\n"
        "| a\\|b |\n");
  // Width counts characters, not UTF-8 bytes.
  CHECK(rp::markdown_table({"m"}, {{rp::fmt_mean_std(1, 0.5, 1)}}, {'r'}) ==
        "|         m |\n"
        "| --------: |\n"
        "| 1.0 \xC2\xB1 0.5 |\n");
  const std::string err = error_of([] { rp::markdown_table({"a", "b"}, {{"1", "2"}, {"3"}}); });
  CHECK(contains(err, "report::markdown_table"));
  CHECK(contains(err, "row 1"));
  CHECK(contains(err, "1 cells"));
  CHECK(contains(error_of([] { rp::markdown_table({"a"}, {}, {'x'}); }), "'x'"));
  CHECK(contains(error_of([] { rp::markdown_table({"a", "b"}, {}, {'l'}); }), "align has 1"));
  CHECK(contains(error_of([] { rp::markdown_table({}, {}); }), "empty header"));
}

TEST_CASE("report: fmt and fmt_mean_std") {
  CHECK(rp::fmt(0.25314, 4) == "0.2531");
  CHECK(rp::fmt(-1.5, 1) == "-1.5");
  CHECK(rp::fmt(-0.00001, 3) == "0.000");
  CHECK(rp::fmt(12.0, 0) == "12");
  CHECK(rp::fmt(kNaN, 2) == "nan");
  CHECK(rp::fmt(-kInf, 2) == "-inf");
  CHECK(rp::fmt_mean_std(0.2531, 0.0042) == "0.2531 \xC2\xB1 0.0042");
  CHECK(rp::fmt_mean_std(1, 0.5, 2) == "1.00 \xC2\xB1 0.50");
  CHECK(contains(error_of([] { rp::fmt(1, -1); }), "decimals"));
}
