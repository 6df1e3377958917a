#pragma once
// Self-contained SVG charts for study reports: line plots (training curves,
// metric vs. step) and overlaid histograms (e.g. token DCE per method with the
// threshold delta marked). The output is a standalone .svg file that can also
// be inlined into HTML: viewBox set, generic font family only, no CSS or other
// external resources, all text XML-escaped.
//
//   std::string s = nq::report::line_plot_svg({{"train", steps, losses}, {"val", steps, vlosses}},
//                                             {.title = "loss", .xlabel = "step", .ylabel = "nats"});
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"

namespace nq::report {

// Members default-initialised so designated initialisers may omit any of
// them without -Wmissing-field-initializers.
struct Series {
  std::string name = {};
  std::vector<double> x = {}, y = {};
};

struct PlotOptions {
  std::string title = {}, xlabel = {}, ylabel = {};
  int width = 640, height = 360;
  bool log_y = false;  // log10 y axis; points with y <= 0 are then skipped like non-finite ones
};

namespace detail {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes
// there are not one (stray continuation byte, truncated or overlong sequence,
// surrogate, > U+10FFFF, or the XML-forbidden noncharacters U+FFFE/U+FFFF).
inline size_t utf8_len(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, cp = c & 0x0Fu;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, cp = c & 0x07u;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3Fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ||
      cp == 0xFFFE || cp == 0xFFFF) {
    return 0;
  }
  return n;
}

inline constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

}  // namespace detail

// Text for XML (and HTML) content or attribute values: & < > " ' become
// entities; bytes that are not valid UTF-8 and control characters XML 1.0
// forbids (all C0 but tab, LF, CR; and DEL) become U+FFFD, so the result is
// always well-formed UTF-8 whatever bytes a token or name holds.
inline std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (size_t i = 0; i < s.size();) {
    const size_t n = detail::utf8_len(s, i);
    if (n == 0) {
      out += detail::kReplacement;
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    const char c = s[i++];
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        if ((u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7F) {
          out += detail::kReplacement;
        } else {
          out += c;
        }
    }
  }
  return out;
}

// Counts of the finite values of `values` in `bins` equal-width bins over
// [lo, hi]: bin k holds [lo + k w, lo + (k+1) w), except that the last bin is
// closed so a value equal to hi is counted (in it). Values outside [lo, hi]
// and non-finite values are not counted.
inline std::vector<int64_t> histogram_counts(const std::vector<double>& values, int bins, double lo,
                                             double hi) {
  NQ_CHECK(bins >= 1, "report::histogram_counts", "bins must be >= 1, got ", bins);
  NQ_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi, "report::histogram_counts",
           "need finite lo < hi, got [", lo, ", ", hi, "]");
  std::vector<int64_t> counts(static_cast<size_t>(bins), 0);
  const double scale = static_cast<double>(bins) / (hi - lo);
  for (double v : values) {
    if (!std::isfinite(v) || v < lo || v > hi) continue;
    // Clamp: v == hi, and rounding for v just below hi, would give index `bins`.
    const auto k = std::min(static_cast<int64_t>((v - lo) * scale), static_cast<int64_t>(bins - 1));
    ++counts[static_cast<size_t>(k)];
  }
  return counts;
}

// Axis ticks at "nice" values (1, 2 or 5 times a power of ten; Heckbert's loose
// labelling): [lo, hi] is the data range widened to whole steps, `values` the
// ticks from lo to hi. About `target` ticks; a zero-width range is widened.
struct Ticks {
  double lo = 0, hi = 1, step = 1;
  std::vector<double> values;
};

namespace detail {

// The nice number (1, 2, 5 or 10 times a power of ten) nearest x (round) or
// not below x (!round).
inline double nice_num(double x, bool round) {
  const double e = std::floor(std::log10(x));
  const double p = std::pow(10.0, e);
  const double f = x / p;
  double nf = 10;
  if (round) {
    nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  } else {
    nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  }
  return nf * p;
}

}  // namespace detail

inline Ticks nice_ticks(double lo, double hi, int target = 5) {
  NQ_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "report::nice_ticks",
           "need finite lo <= hi, got [", lo, ", ", hi, "]");
  NQ_CHECK(std::isfinite(hi - lo), "report::nice_ticks", "range [", lo, ", ", hi, "] is too wide");
  target = std::max(target, 2);
  // A range below the precision of its values (or zero) gets a visible width.
  const double mag = std::max(std::abs(lo), std::abs(hi));
  if (hi - lo <= mag * 1e-9) {
    const double pad = mag > 0 ? mag * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  Ticks t;
  const double range = detail::nice_num(hi - lo, false);
  t.step = detail::nice_num(range / (target - 1), true);
  const double first = std::floor(lo / t.step), last = std::ceil(hi / t.step);
  t.lo = first * t.step;
  t.hi = last * t.step;
  const auto n = static_cast<int64_t>(last - first);
  for (int64_t k = 0; k <= n; ++k) {
    double v = (first + static_cast<double>(k)) * t.step;
    if (std::abs(v) < t.step * 1e-9) v = 0;  // no "-0" tick
    t.values.push_back(v);
  }
  return t;
}

namespace detail {

// Coordinates and other SVG numbers: at most 2 decimals, no trailing zeros.
inline std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

// Tick labels of a linear axis: fixed decimals from the step (0.2 -> 1 digit),
// or %g with enough significant digits to tell ticks apart for very large or
// small values.
inline std::vector<std::string> linear_labels(const Ticks& t) {
  double maxabs = 0;
  for (double v : t.values) maxabs = std::max(maxabs, std::abs(v));
  std::vector<std::string> out;
  char buf[64];
  for (double v : t.values) {
    if (maxabs >= 1e6 || t.step < 1e-4) {
      const int sig = std::clamp(static_cast<int>(std::ceil(std::log10(maxabs / t.step))) + 1, 1, 15);
      std::snprintf(buf, sizeof buf, "%.*g", sig, v);
    } else {
      const int dec = std::max(0, static_cast<int>(-std::floor(std::log10(t.step) + 1e-9)));
      std::snprintf(buf, sizeof buf, "%.*f", dec, v);
    }
    out.emplace_back(buf);
  }
  return out;
}

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  std::vector<std::string> labels;
  // Position of v along the axis, 0 at lo and 1 at hi.
  double frac(double v) const {
    if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

inline Axis linear_axis(double lo, double hi, int target) {
  const Ticks t = nice_ticks(lo, hi, target);
  Axis a;
  a.lo = t.lo, a.hi = t.hi, a.ticks = t.values, a.labels = linear_labels(t);
  return a;
}

// "1000", "0.01" for moderate decades, "1e-7" beyond.
inline std::string decade_label(int k) {
  if (k >= 0 && k <= 5) return "1" + std::string(static_cast<size_t>(k), '0');
  if (k < 0 && k >= -4) return "0." + std::string(static_cast<size_t>(-k - 1), '0') + "1";
  return "1e" + std::to_string(k);
}

// Log10 axis over whole decades covering [lo, hi] (both > 0): a tick per
// decade (fewer when there are many), plus 2x and 5x within a single decade.
inline Axis log_axis(double lo, double hi) {
  int dlo = static_cast<int>(std::floor(std::log10(lo)));
  int dhi = static_cast<int>(std::ceil(std::log10(hi)));
  if (dhi <= dlo) dhi = dlo + 1;
  Axis a;
  a.log = true;
  a.lo = std::pow(10.0, dlo);
  a.hi = std::pow(10.0, dhi);
  const int every = std::max(1, (dhi - dlo + 5) / 6);
  for (int k = dlo; k <= dhi; k += every) {
    a.ticks.push_back(std::pow(10.0, k));
    a.labels.push_back(decade_label(k));
  }
  if (dhi - dlo == 1) {
    char buf[64];
    for (double m : {2.0, 5.0}) {
      const double v = m * a.lo;
      std::snprintf(buf, sizeof buf, "%g", v);
      a.ticks.insert(a.ticks.end() - 1, v);
      a.labels.insert(a.labels.end() - 1, buf);
    }
  }
  return a;
}

// Okabe-Ito colour-blind-safe palette (yellow left out: unreadable on white).
// Series beyond it repeat the colours with a dash pattern.
inline constexpr const char* kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                           "#E69F00", "#56B4E9", "#000000"};
inline constexpr size_t kPaletteSize = sizeof kPalette / sizeof kPalette[0];

inline const char* colour(size_t i) { return kPalette[i % kPaletteSize]; }
inline const char* dash(size_t i) {
  const size_t round = i / kPaletteSize;
  return round == 0 ? "" : round % 2 == 1 ? "6 3" : "2 2";
}

// Rough rendered width of text in a sans-serif font (0.6 em per code point).
inline double text_width(const std::string& s, double font_size) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return static_cast<double>(n) * font_size * 0.6;
}

inline void check_size(const PlotOptions& o, const char* op) {
  NQ_CHECK(o.width >= 160 && o.height >= 120 && o.width <= 20000 && o.height <= 20000, op,
           "plot size must be within 160x120 and 20000x20000, got ", o.width, "x", o.height);
}

inline std::string svg_open(const PlotOptions& o) {
  const std::string w = std::to_string(o.width), h = std::to_string(o.height);
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w + "\" height=\"" + h +
                  "\" viewBox=\"0 0 " + w + " " + h +
                  "\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\n";
  if (!o.title.empty()) s += "<title>" + xml_escape(o.title) + "</title>\n";
  s += "<rect width=\"" + w + "\" height=\"" + h + "\" fill=\"#ffffff\"/>\n";
  if (!o.title.empty()) {
    s += "<text x=\"" + num(o.width / 2.0) +
         "\" y=\"21\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\" fill=\"#222222\">" +
         xml_escape(o.title) + "</text>\n";
  }
  return s;
}

// A valid chart that says there is nothing to show (rather than an error: an
// empty run should still produce a report).
inline std::string no_data_svg(const PlotOptions& o) {
  return svg_open(o) + "<text x=\"" + num(o.width / 2.0) + "\" y=\"" + num(o.height / 2.0) +
         "\" text-anchor=\"middle\" font-size=\"14\" fill=\"#666666\">no data</text>\n</svg>\n";
}

// The plot area inside the margins, in SVG pixels.
struct Frame {
  double left = 0, top = 0, pw = 0, ph = 0;
  double x(const Axis& a, double v) const { return left + pw * a.frac(v); }
  double y(const Axis& a, double v) const { return top + ph * (1 - a.frac(v)); }
};

// Margins fitted to the title, axis labels and y tick labels.
inline Frame make_frame(const PlotOptions& o, const Axis& ya, const char* op) {
  double label_w = 0;
  for (const auto& l : ya.labels) label_w = std::max(label_w, text_width(l, 11));
  Frame f;
  f.left = 8 + (o.ylabel.empty() ? 0 : 18) + label_w + 8;
  f.top = o.title.empty() ? 12 : 34;
  const double bottom = 24 + (o.xlabel.empty() ? 0 : 18) + 4;
  const double right = 20;
  f.pw = o.width - f.left - right;
  f.ph = o.height - f.top - bottom;
  NQ_CHECK(f.pw >= 40 && f.ph >= 40, op, "plot area too small (", o.width, "x", o.height, " leaves ", f.pw,
           "x", f.ph, " after margins)");
  return f;
}

// Grid, frame, ticks with labels, and axis labels.
inline std::string axes_svg(const PlotOptions& o, const Frame& f, const Axis& xa, const Axis& ya) {
  const double right = f.left + f.pw, bottom = f.top + f.ph;
  std::string s = "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  for (double t : ya.ticks) {
    const std::string y = num(f.y(ya, t));
    s += "<line x1=\"" + num(f.left) + "\" y1=\"" + y + "\" x2=\"" + num(right) + "\" y2=\"" + y + "\"/>\n";
  }
  for (double t : xa.ticks) {
    const std::string x = num(f.x(xa, t));
    s += "<line x1=\"" + x + "\" y1=\"" + num(f.top) + "\" x2=\"" + x + "\" y2=\"" + num(bottom) + "\"/>\n";
  }
  s += "</g>\n<rect class=\"frame\" x=\"" + num(f.left) + "\" y=\"" + num(f.top) + "\" width=\"" + num(f.pw) +
       "\" height=\"" + num(f.ph) + "\" fill=\"none\" stroke=\"#444444\"/>\n";
  s += "<g class=\"ticks\" fill=\"#333333\" stroke=\"#444444\">\n";
  for (size_t i = 0; i < ya.ticks.size(); ++i) {
    const double y = f.y(ya, ya.ticks[i]);
    s += "<line x1=\"" + num(f.left - 4) + "\" y1=\"" + num(y) + "\" x2=\"" + num(f.left) + "\" y2=\"" +
         num(y) + "\"/>\n";
    s += "<text x=\"" + num(f.left - 7) + "\" y=\"" + num(y + 4) + "\" text-anchor=\"end\" stroke=\"none\">" +
         xml_escape(ya.labels[i]) + "</text>\n";
  }
  for (size_t i = 0; i < xa.ticks.size(); ++i) {
    const double x = f.x(xa, xa.ticks[i]);
    s += "<line x1=\"" + num(x) + "\" y1=\"" + num(bottom) + "\" x2=\"" + num(x) + "\" y2=\"" +
         num(bottom + 4) + "\"/>\n";
    s += "<text x=\"" + num(x) + "\" y=\"" + num(bottom + 16) + "\" text-anchor=\"middle\" stroke=\"none\">" +
         xml_escape(xa.labels[i]) + "</text>\n";
  }
  s += "</g>\n";
  if (!o.xlabel.empty()) {
    s += "<text class=\"xlabel\" x=\"" + num(f.left + f.pw / 2) + "\" y=\"" + num(o.height - 8.0) +
         "\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222222\">" + xml_escape(o.xlabel) + "</text>\n";
  }
  if (!o.ylabel.empty()) {
    s += "<text class=\"ylabel\" transform=\"translate(16 " + num(f.top + f.ph / 2) +
         ") rotate(-90)\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222222\">" + xml_escape(o.ylabel) +
         "</text>\n";
  }
  return s;
}

// Legend box in the top-right corner of the plot area; swatch is a line
// (line plots) or a filled square (histograms).
inline std::string legend_svg(const Frame& f, const std::vector<std::string>& names, bool filled_swatch) {
  double name_w = 0;
  for (const auto& n : names) name_w = std::max(name_w, text_width(n, 11));
  const double w = 8 + 22 + 6 + name_w + 8, h = 6 + 16.0 * static_cast<double>(names.size()) + 2;
  const double x0 = f.left + f.pw - w - 6, y0 = f.top + 6;
  std::string s = "<g class=\"legend\">\n<rect x=\"" + num(x0) + "\" y=\"" + num(y0) + "\" width=\"" +
                  num(w) + "\" height=\"" + num(h) +
                  "\" fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#cccccc\"/>\n";
  for (size_t i = 0; i < names.size(); ++i) {
    const double cy = y0 + 6 + 16.0 * static_cast<double>(i) + 8;
    if (filled_swatch) {
      s += "<rect x=\"" + num(x0 + 12) + "\" y=\"" + num(cy - 5) + "\" width=\"14\" height=\"10\" fill=\"" +
           colour(i) + "\" fill-opacity=\"0.45\" stroke=\"" + colour(i) + "\"/>\n";
    } else {
      const std::string d = dash(i);
      s += "<line x1=\"" + num(x0 + 8) + "\" y1=\"" + num(cy) + "\" x2=\"" + num(x0 + 30) + "\" y2=\"" +
           num(cy) + "\" stroke=\"" + colour(i) + "\" stroke-width=\"2\"" +
           (d[0] ? std::string(" stroke-dasharray=\"") + d + "\"" : std::string()) + "/>\n";
    }
    s += "<text x=\"" + num(x0 + 36) + "\" y=\"" + num(cy + 4) + "\" fill=\"#222222\">" +
         xml_escape(names[i]) + "</text>\n";
  }
  return s + "</g>\n";
}

}  // namespace detail

// One line per series over shared axes (x linear, y linear or log10). Each
// unbroken run of two or more drawable points is one <polyline>; a
// non-finite point (or y <= 0 with log_y) is skipped and leaves a gap, and a
// point isolated by gaps is drawn as a dot. Series get colours in order from a
// colour-blind-safe palette; a legend is drawn when there is more than one
// series. x/y length mismatch is an error naming the series; no drawable
// point at all gives a valid SVG that says "no data".
inline std::string line_plot_svg(const std::vector<Series>& series, const PlotOptions& opt = {}) {
  constexpr const char* op = "report::line_plot_svg";
  detail::check_size(opt, op);
  for (const auto& s : series) {
    NQ_CHECK(s.x.size() == s.y.size(), op, "series \"", s.name, "\" has ", s.x.size(), " x values but ",
             s.y.size(), " y values");
  }
  auto drawable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!opt.log_y || y > 0);
  };
  constexpr double inf = std::numeric_limits<double>::infinity();
  double xlo = inf, xhi = -inf, ylo = inf, yhi = -inf;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!drawable(s.x[i], s.y[i])) continue;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
    }
  }
  if (xlo > xhi) return detail::no_data_svg(opt);

  const detail::Axis ya = opt.log_y ? detail::log_axis(ylo, yhi)
                                    : detail::linear_axis(ylo, yhi, std::clamp((opt.height - 80) / 50, 2, 8));
  const detail::Frame f = detail::make_frame(opt, ya, op);
  const detail::Axis xa = detail::linear_axis(xlo, xhi, std::clamp(static_cast<int>(f.pw / 90), 2, 10));

  std::string out = detail::svg_open(opt) + detail::axes_svg(opt, f, xa, ya);
  for (size_t si = 0; si < series.size(); ++si) {
    const Series& s = series[si];
    const std::string colour = detail::colour(si), d = detail::dash(si);
    out += "<g class=\"series\" fill=\"none\" stroke=\"" + colour +
           "\" stroke-width=\"1.6\" stroke-linejoin=\"round\" stroke-linecap=\"round\"" +
           (d.empty() ? "" : " stroke-dasharray=\"" + d + "\"") + ">\n";
    out += "<title>" + xml_escape(s.name) + "</title>\n";
    size_t i = 0;
    while (i < s.x.size()) {
      if (!drawable(s.x[i], s.y[i])) {
        ++i;
        continue;
      }
      size_t j = i;
      std::string pts;
      while (j < s.x.size() && drawable(s.x[j], s.y[j])) {
        if (!pts.empty()) pts += ' ';
        pts += detail::num(f.x(xa, s.x[j])) + "," + detail::num(f.y(ya, s.y[j]));
        ++j;
      }
      if (j - i >= 2) {
        out += "<polyline points=\"" + pts + "\"/>\n";
      } else {
        out += "<circle cx=\"" + detail::num(f.x(xa, s.x[i])) + "\" cy=\"" + detail::num(f.y(ya, s.y[i])) +
               "\" r=\"2.2\" fill=\"" + colour + "\" stroke=\"none\"/>\n";
      }
      i = j;
    }
    out += "</g>\n";
  }
  if (series.size() > 1) {
    std::vector<std::string> names;
    for (const auto& s : series) names.push_back(s.name);
    out += detail::legend_svg(f, names, false);
  }
  return out + "</svg>\n";
}

// Overlaid semi-transparent histograms of several groups over one shared bin
// range (the finite values' min to max, split into `bins` equal bins; see
// histogram_counts), one colour per group, y = count (log10 with log_y, bars
// then start at 0.1 so a count of 1 shows). `marker` draws a dashed vertical
// line at that x (e.g. the threshold delta) labelled with `marker_label`; the
// x axis is widened to include it. A legend is drawn when there is more than
// one group; no finite value at all gives a valid SVG that says "no data".
inline std::string histogram_svg(const std::vector<std::pair<std::string, std::vector<double>>>& groups,
                                 int bins, const PlotOptions& opt = {},
                                 std::optional<double> marker = std::nullopt,
                                 const std::string& marker_label = "") {
  constexpr const char* op = "report::histogram_svg";
  detail::check_size(opt, op);
  NQ_CHECK(bins >= 1 && bins <= 100000, op, "bins must be in [1, 100000], got ", bins);
  NQ_CHECK(!marker || std::isfinite(*marker), op, "marker must be finite, got ", marker.value_or(0));
  constexpr double inf = std::numeric_limits<double>::infinity();
  double lo = inf, hi = -inf;
  for (const auto& g : groups) {
    for (double v : g.second) {
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
  if (lo > hi) return detail::no_data_svg(opt);
  if (hi - lo <= std::max(std::abs(lo), std::abs(hi)) * 1e-9) {  // one distinct value: give the bins a width
    const double pad = lo != 0 ? std::abs(lo) * 0.05 : 0.5;
    lo -= pad, hi += pad;
  }

  std::vector<std::vector<int64_t>> counts;
  int64_t max_count = 0;
  for (const auto& g : groups) {
    counts.push_back(histogram_counts(g.second, bins, lo, hi));
    for (int64_t c : counts.back()) max_count = std::max(max_count, c);
  }
  PlotOptions o = opt;
  if (o.ylabel.empty()) o.ylabel = "count";
  const double ybase = o.log_y ? 0.1 : 0.0;
  // Counts are whole numbers: a range of at least `target` keeps the tick step >= 1.
  const int target = std::clamp((o.height - 80) / 50, 2, 8);
  const detail::Axis ya =
      o.log_y ? detail::log_axis(0.5, static_cast<double>(std::max<int64_t>(max_count, 1)))
              : detail::linear_axis(0, static_cast<double>(std::max<int64_t>(max_count, target)), target);
  const detail::Frame f = detail::make_frame(o, ya, op);
  const double xlo = marker ? std::min(lo, *marker) : lo, xhi = marker ? std::max(hi, *marker) : hi;
  const detail::Axis xa = detail::linear_axis(xlo, xhi, std::clamp(static_cast<int>(f.pw / 90), 2, 10));

  std::string out = detail::svg_open(o) + detail::axes_svg(o, f, xa, ya);
  const double w = (hi - lo) / bins;
  const double y0 = f.y(ya, std::max(ybase, ya.lo));
  char range[128];
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const std::string colour = detail::colour(gi);
    out += "<g class=\"group\" fill=\"" + colour + "\" fill-opacity=\"0.45\" stroke=\"" + colour +
           "\" stroke-width=\"0.8\">\n";
    for (int b = 0; b < bins; ++b) {
      const int64_t c = counts[gi][static_cast<size_t>(b)];
      if (c == 0) continue;
      const double a = lo + w * b, z = b + 1 == bins ? hi : lo + w * (b + 1);
      const double x1 = f.x(xa, a), x2 = f.x(xa, z), y = f.y(ya, static_cast<double>(c));
      std::snprintf(range, sizeof range, "[%.4g, %.4g%c", a, z, b + 1 == bins ? ']' : ')');
      out += "<rect class=\"bar\" x=\"" + detail::num(x1) + "\" y=\"" + detail::num(y) + "\" width=\"" +
             detail::num(std::max(x2 - x1, 0.5)) + "\" height=\"" + detail::num(y0 - y) + "\"><title>" +
             xml_escape(groups[gi].first) + " " + range + ": " + std::to_string(c) + "</title></rect>\n";
    }
    out += "</g>\n";
  }
  if (marker) {
    const double x = f.x(xa, *marker);
    out += "<g class=\"marker\">\n<line x1=\"" + detail::num(x) + "\" y1=\"" + detail::num(f.top) +
           "\" x2=\"" + detail::num(x) + "\" y2=\"" + detail::num(f.top + f.ph) +
           "\" stroke=\"#222222\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"/>\n";
    if (!marker_label.empty()) {
      // Label to the right of the line unless it would run out of the plot.
      const bool left = x + 4 + detail::text_width(marker_label, 11) > f.left + f.pw;
      out += "<text x=\"" + detail::num(left ? x - 4 : x + 4) + "\" y=\"" + detail::num(f.top + 14) +
             "\" text-anchor=\"" + (left ? "end" : "start") + "\" fill=\"#222222\">" +
             xml_escape(marker_label) + "</text>\n";
    }
    out += "</g>\n";
  }
  if (groups.size() > 1) {
    std::vector<std::string> names;
    for (const auto& g : groups) names.push_back(g.first);
    out += detail::legend_svg(f, names, true);
  }
  return out + "</svg>\n";
}

}  // namespace nq::report
