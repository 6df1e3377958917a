#!/usr/bin/env bash
# Packaging check: builds and runs tests/package/consumer against this checkout
# three ways, each in its own temp dir:
#   (a) install nextquill to a prefix, then find_package(nextquill CONFIG)
#       (+ the installed pkg-config file, used to compile the consumer by hand)
#   (b) FetchContent_Declare(nextquill SOURCE_DIR <checkout>)
#   (c) add_subdirectory(<checkout>)
# In (b) and (c) nextquill is not the top-level project, so its tests must not
# be part of the build.
#
# usage: bash tests/package/check.sh [--keep]    (--keep: leave the temp dir)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONSUMER="$ROOT/tests/package/consumer"
JOBS="$(nproc 2>/dev/null || echo 2)"
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nq-package-check.XXXXXX")"
cleanup() {
  if [[ $KEEP == 1 ]]; then echo "(kept $WORK)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

hdr="$ROOT/include/nextquill/version.hpp"
ver_part() { sed -n "s/^#define NEXTQUILL_VERSION_$1 \+\([0-9]\+\).*/\1/p" "$hdr"; }
VERSION="$(ver_part MAJOR).$(ver_part MINOR).$(ver_part PATCH)"
echo "nextquill package check: version $VERSION, checkout $ROOT, work dir $WORK"

# The consumer prints one line; check the version and that the default feature
# macros (BLAS, OpenMP on) reached it through the target / pkg-config flags.
check_output() {
  local out="$1"
  echo "consumer says: $out"
  [[ "$out" == "nextquill $VERSION "* ]] || { echo "wrong/missing version in output"; return 1; }
  [[ "$out" == *" blas=1 openmp=1 "* ]] || { echo "feature macros did not propagate"; return 1; }
  if [[ "$out" == *"openblas_parallel=1"* ]]; then
    echo "WARNING: consumer runs the pthread build of OpenBLAS, not the OpenMP one"
  fi
}

# Fails if the nextquill test target made it into a consumer's build tree.
check_no_nextquill_tests() {
  local dir="$1"
  if cmake --build "$dir" --target help 2>/dev/null | grep -qw nextquill_tests; then
    echo "nextquill_tests target exists in $dir (tests must be off for a non-top-level nextquill)"
    return 1
  fi
  if grep -q '^NEXTQUILL_BUILD_TESTS:BOOL=ON' "$dir/CMakeCache.txt"; then
    echo "NEXTQUILL_BUILD_TESTS is ON in $dir/CMakeCache.txt"
    return 1
  fi
  if [[ -n "$(find "$dir" -name nextquill_tests -type f 2>/dev/null)" ]]; then
    echo "a nextquill_tests binary was built in $dir"
    return 1
  fi
  echo "ok: no nextquill_tests in the consumer build"
}

configure_build_run_consumer() {
  local dir="$1"; shift
  cmake -S "$CONSUMER" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@"
  cmake --build "$dir" -j"$JOBS"
  local out
  out="$("$dir/consumer")"
  check_output "$out"
}

mode_package() {
  set -e
  local prefix="$WORK/prefix"
  cmake -S "$ROOT" -B "$WORK/nq-build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DNEXTQUILL_BUILD_TESTS=OFF -DNEXTQUILL_BUILD_BENCHMARKS=OFF \
    -DNEXTQUILL_BUILD_EXAMPLES=OFF -DNEXTQUILL_BUILD_TOOLS=OFF
  cmake --build "$WORK/nq-build" -j"$JOBS"
  cmake --install "$WORK/nq-build"

  configure_build_run_consumer "$WORK/consumer-package" \
    -DNQ_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$prefix"
  local found_dir
  found_dir="$(sed -n 's/^nextquill_DIR:PATH=//p' "$WORK/consumer-package/CMakeCache.txt")"
  [[ "$found_dir" == "$prefix"/* ]] || { echo "find_package picked $found_dir, not the test prefix"; return 1; }

  # pkg-config: the file must resolve and its flags must build the consumer.
  local pc
  pc="$(find "$prefix" -name nextquill.pc -print -quit)"
  [[ -n "$pc" ]] || { echo "nextquill.pc was not installed"; return 1; }
  PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export PKG_CONFIG_PATH
  local modver cflags libs
  modver="$(pkg-config --modversion nextquill)"
  cflags="$(pkg-config --cflags nextquill)"
  libs="$(pkg-config --libs nextquill)"
  echo "pkg-config --modversion: $modver"
  echo "pkg-config --cflags: $cflags"
  echo "pkg-config --libs: $libs"
  [[ "$modver" == "$VERSION" ]] || { echo "pkg-config version $modver != $VERSION"; return 1; }
  # shellcheck disable=SC2086  # flags must word-split
  "${CXX:-c++}" -std=c++20 -O1 $cflags "$CONSUMER/main.cpp" -o "$WORK/consumer-pkgconfig" $libs
  local out
  out="$("$WORK/consumer-pkgconfig")"
  check_output "$out"
}

mode_fetchcontent() {
  set -e
  configure_build_run_consumer "$WORK/consumer-fetchcontent" \
    -DNQ_CONSUMER_MODE=fetchcontent -DNEXTQUILL_SOURCE_DIR="$ROOT"
  check_no_nextquill_tests "$WORK/consumer-fetchcontent"
}

mode_subdirectory() {
  set -e
  configure_build_run_consumer "$WORK/consumer-subdirectory" \
    -DNQ_CONSUMER_MODE=subdirectory -DNEXTQUILL_SOURCE_DIR="$ROOT"
  check_no_nextquill_tests "$WORK/consumer-subdirectory"
}

FAILED=0
RESULTS=()
run_mode() {
  local label="$1" fn="$2" log="$WORK/$2.log"
  echo
  echo "=== $label ==="
  # Subshell so `set -e` stops only that mode. It must not sit in an `if` or
  # `||` list: bash ignores set -e there. (This script itself runs without -e.)
  ( set -e; "$fn" ) >"$log" 2>&1
  local rc=$?
  if [[ $rc == 0 ]]; then
    grep -E '^(consumer says|pkg-config|ok:|WARNING)' "$log" || true
    RESULTS+=("PASS: $label")
    echo "PASS: $label"
  else
    echo "--- last 40 lines of $log ---"
    tail -n 40 "$log"
    RESULTS+=("FAIL: $label")
    echo "FAIL: $label"
    FAILED=1
  fi
}

run_mode "(a) install + find_package(nextquill CONFIG) + pkg-config" mode_package
run_mode "(b) FetchContent SOURCE_DIR" mode_fetchcontent
run_mode "(c) add_subdirectory" mode_subdirectory

echo
echo "=== package check summary ==="
printf '%s\n' "${RESULTS[@]}"
if [[ $FAILED != 0 ]]; then
  KEEP=1
  echo "package check FAILED (logs kept)"
  exit 1
fi
echo "package check PASSED"
