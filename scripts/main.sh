#!/usr/bin/env bash
# Build nextquill and run the demo: examples/train_gpt trains a GPT-2-layout
# model (the benchmark's S config) on the bundled text for about three minutes,
# with a progress bar, checkpoints in runs/train_gpt/, and a generated sample.
# Extra arguments go to train_gpt (e.g. --steps 1000, --resume).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# Same build dir as scripts/test.sh; options already in its cache are kept.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNEXTQUILL_BUILD_EXAMPLES=ON
cmake --build build -j"$(nproc)" --target train_gpt

if [[ ! -x build/examples/train_gpt ]]; then
  echo "main: ERROR: build/examples/train_gpt was not built" >&2
  exit 1
fi
exec build/examples/train_gpt --threads "$(nproc)" "$@"
