#!/usr/bin/env bash
# Build nextquill and run the demo: examples/train_tiny trains a tiny model on
# the bundled text and prints its loss curve. Extra arguments go to train_tiny.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# Same build dir as scripts/test.sh; options already in its cache are kept.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNEXTQUILL_BUILD_EXAMPLES=ON
if [[ -f examples/train_tiny.cpp ]]; then
  cmake --build build -j"$(nproc)" --target train_tiny
else
  cmake --build build -j"$(nproc)"
fi

if [[ ! -x build/examples/train_tiny ]]; then
  echo "main: ERROR: build/examples/train_tiny was not built (is there an examples/train_tiny.cpp?)" >&2
  exit 1
fi
exec build/examples/train_tiny "$@"
