#pragma once
// Number formatting and Markdown tables for study reports (README-style
// results tables that read well both rendered and as plain text).
//
//   nq::report::markdown_table({"method", "ROUGE-1"}, {{"sft", nq::report::fmt_mean_std(0.2531, 0.0042)}},
//                              {'l', 'r'});
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "nextquill/core/error.hpp"

namespace nq::report {

// v with `decimals` digits after the point ("%.*f"); "nan", "inf", "-inf" for
// non-finite values. A value that rounds to zero prints without a minus sign
// ("-0.0000" in a table reads as a real negative result).
inline std::string fmt(double v, int decimals) {
  NQ_CHECK(decimals >= 0 && decimals <= 17, "report::fmt", "decimals must be in [0, 17], got ", decimals);
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  const int len = std::snprintf(nullptr, 0, "%.*f", decimals, v);
  std::string s(static_cast<size_t>(len), '\0');
  std::snprintf(s.data(), s.size() + 1, "%.*f", decimals, v);
  if (s[0] == '-' && s.find_first_not_of("0.", 1) == std::string::npos) s.erase(0, 1);
  return s;
}

// "mean ± std", both with `decimals` digits, e.g. "0.2531 ± 0.0042".
inline std::string fmt_mean_std(double mean, double std, int decimals = 4) {
  return fmt(mean, decimals) + " \xC2\xB1 " + fmt(std, decimals);  // U+00B1 PLUS-MINUS SIGN in UTF-8
}

namespace detail {

// Code points in UTF-8 text: the column width used for padding (close enough
// for the Latin text and symbols tables hold).
inline size_t display_width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xC0) != 0x80;
  return w;
}

// A cell as Markdown: '|' would end the cell and a newline the row.
inline std::string markdown_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      out += "<br>";
    } else if (c != '\r') {
      out += c;
    }
  }
  return out;
}

inline std::string pad_cell(const std::string& s, size_t width, char align) {
  const size_t fill = width - std::min(width, display_width(s));
  if (align == 'r') return std::string(fill, ' ') + s;
  if (align == 'c') return std::string(fill / 2, ' ') + s + std::string(fill - fill / 2, ' ');
  return s + std::string(fill, ' ');
}

}  // namespace detail

// A GitHub-flavoured Markdown table, columns padded to equal width. `align`
// is empty (default alignment) or one of 'l', 'r', 'c' per column. Every row
// must have as many cells as the header. Cells have '|' escaped and newlines
// turned into <br>.
inline std::string markdown_table(const std::vector<std::string>& header,
                                  const std::vector<std::vector<std::string>>& rows,
                                  const std::vector<char>& align = {}) {
  const size_t nc = header.size();
  NQ_CHECK(nc > 0, "report::markdown_table", "empty header");
  NQ_CHECK(align.empty() || align.size() == nc, "report::markdown_table", "align has ", align.size(),
           " entries but the header has ", nc, " columns");
  for (size_t j = 0; j < align.size(); ++j) {
    NQ_CHECK(align[j] == 'l' || align[j] == 'r' || align[j] == 'c', "report::markdown_table", "align[", j,
             "] is '", align[j], "'; expected 'l', 'r' or 'c'");
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    NQ_CHECK(rows[i].size() == nc, "report::markdown_table", "row ", i, " (0-based) has ", rows[i].size(),
             " cells but the header has ", nc);
  }

  std::vector<std::string> head(nc);
  std::vector<std::vector<std::string>> body(rows.size(), std::vector<std::string>(nc));
  std::vector<size_t> width(nc, 3);  // "---" is the shortest delimiter cell
  for (size_t j = 0; j < nc; ++j) {
    head[j] = detail::markdown_cell(header[j]);
    width[j] = std::max(width[j], detail::display_width(head[j]));
    for (size_t i = 0; i < rows.size(); ++i) {
      body[i][j] = detail::markdown_cell(rows[i][j]);
      width[j] = std::max(width[j], detail::display_width(body[i][j]));
    }
  }
  auto al = [&](size_t j) { return align.empty() ? 'l' : align[j]; };
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = "|";
    // Appends rather than `" " + ...`: GCC 12 at -O3 gives a false -Wstringop-overflow on the latter.
    for (size_t j = 0; j < nc; ++j) {
      s += ' ';
      s += detail::pad_cell(cells[j], width[j], al(j));
      s += " |";
    }
    s += '\n';
    return s;
  };

  std::string out = line(head);
  out += "|";
  for (size_t j = 0; j < nc; ++j) {
    const size_t w = width[j];
    std::string d;
    if (align.empty()) {
      d = std::string(w, '-');
    } else if (align[j] == 'l') {
      d = ":" + std::string(w - 1, '-');
    } else if (align[j] == 'r') {
      d = std::string(w - 1, '-') + ":";
    } else {
      d = ":" + std::string(w - 2, '-') + ":";
    }
    out += " " + d + " |";
  }
  out += "\n";
  for (const auto& r : body) out += line(r);
  return out;
}

}  // namespace nq::report
