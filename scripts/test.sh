#!/usr/bin/env bash
# Configure, build and run the nextquill test suite (Release, warnings as errors).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

cmake -S . -B build \
  -DCMAKE_BUILD_TYPE=Release \
  -DNEXTQUILL_BUILD_TESTS=ON \
  -DNEXTQUILL_WARNINGS_AS_ERRORS=ON
cmake --build build -j"$(nproc)"

status=0
ctest --test-dir build --output-on-failure || status=$?
exit "$status"
