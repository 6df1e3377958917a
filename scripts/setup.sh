#!/usr/bin/env bash
# Installs the system packages nextquill needs to build and test (Debian/Ubuntu).
# Idempotent: only touches apt when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential
  cmake
  pkg-config
  libeigen3-dev
  libopenblas-openmp-dev
  doctest-dev
  nlohmann-json3-dev
  libbenchmark-dev
  wordnet-base  # WordNet 3.0 dictionary files for METEOR synonyms (eval/wordnet.hpp)
  openmpi-bin  # mpirun, for the 2-rank data-parallel test (tests/mpi)
  libopenmpi-dev  # MPI headers/libraries: NEXTQUILL_WITH_MPI, include/nextquill/dist/mpi.hpp
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#PACKAGES[@]} system packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: ERROR: apt-get not found; install these by hand: ${missing[*]}" >&2
  exit 1
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "setup: ERROR: not root and no sudo; install these by hand: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup: done"
