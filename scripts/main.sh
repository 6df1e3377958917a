#!/usr/bin/env bash
# The main job: install what is missing, build the nextquill CLI, and run a
# quick personalization study on the bundled gitcommits data, starting from the
# shipped base model (models/gitcommits-base). It trains every method on 800
# users' examples, evaluates on 200 test examples, scores the trivial
# baselines, prints the results table and writes an HTML report.
# Runs already finished under runs/quick-gitcommits are reused; extra
# arguments go to `nextquill study` (e.g. --methods sft,nextquill, --threads 4).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# Same build dir as scripts/test.sh; options already in its cache are kept.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target nextquill_cli

if [[ ! -x build/bin/nextquill ]]; then
  echo "main: ERROR: build/bin/nextquill was not built" >&2
  exit 1
fi
if [[ ! -f models/gitcommits-base/model.safetensors ]]; then
  echo "main: ERROR: models/gitcommits-base/model.safetensors is missing (a partial clone?)" >&2
  exit 1
fi
threads=(--threads "$(nproc)")
for a in "$@"; do [[ "$a" == --threads* ]] && threads=(); done
exec build/bin/nextquill study --quick --data data/gitcommits --base models/gitcommits-base \
  --out runs/quick-gitcommits "${threads[@]}" "$@"
