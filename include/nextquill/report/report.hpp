#pragma once
// Reporting for `nextquill study` and `nextquill inspect`: statistics and the
// paired bootstrap (stats.hpp), SVG charts (svg.hpp), the inspect HTML page
// (html.hpp) and Markdown tables (table.hpp). Dependency-free beyond nq::Error.
#include "nextquill/report/html.hpp"
#include "nextquill/report/stats.hpp"
#include "nextquill/report/svg.hpp"
#include "nextquill/report/table.hpp"
