#pragma once
// The one place the version lives. CMake parses these three lines, so the
// package version and the header can never disagree.
#define NEXTQUILL_VERSION_MAJOR 0
#define NEXTQUILL_VERSION_MINOR 1
#define NEXTQUILL_VERSION_PATCH 0

#define NEXTQUILL_VERSION \
  (NEXTQUILL_VERSION_MAJOR * 10000 + NEXTQUILL_VERSION_MINOR * 100 + NEXTQUILL_VERSION_PATCH)

namespace nq {
inline constexpr const char* version_string = "0.1.0";
}  // namespace nq
