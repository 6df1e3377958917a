#!/usr/bin/env bash
# Packs the header-only libraries nextquill needs to build (Eigen3,
# nlohmann_json, doctest: headers and CMake package files) from this machine's
# /usr into build-gpu-deps/deps.tar.gz (~2 MB), for a GPU machine that has
# CUDA, CMake and a compiler but not these packages and no network.
# tools/gpu_check.sh unpacks it when its first configure cannot find them.
# (build-gpu-deps/ matches .gitignore's build*/: carry it explicitly.)
#
#   tools/gpu_deps.sh            # then carry build-gpu-deps with the tree
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/build-gpu-deps"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

paths=(
  usr/include/eigen3
  usr/share/eigen3/cmake
  usr/include/nlohmann
  usr/share/cmake/nlohmann_json
  usr/include/doctest
  usr/lib/cmake/doctest
)
for p in "${paths[@]}"; do
  if [[ ! -e "/$p" ]]; then
    echo "gpu_deps: /$p is missing (install libeigen3-dev nlohmann-json3-dev doctest-dev)" >&2
    exit 1
  fi
  mkdir -p "$STAGE/$(dirname "$p")"
  cp -a "/$p" "$STAGE/$p"
done
# Debian's doctestTargets.cmake hard-codes /usr: make it relative to itself.
# shellcheck disable=SC2016  # ${...} is CMake syntax, written as is
sed -i 's|^set(_IMPORT_PREFIX "/usr")|get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)|' \
  "$STAGE/usr/lib/cmake/doctest/doctestTargets.cmake"
mkdir -p "$DEST"
tar -czf "$DEST/deps.tar.gz" -C "$STAGE" usr
echo "gpu_deps: wrote $DEST/deps.tar.gz ($(du -h "$DEST/deps.tar.gz" | cut -f1))"
