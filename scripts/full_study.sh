#!/usr/bin/env bash
# The full study of docs/results.md: both bundled datasets, 3 seeds, all seven
# methods, each trained on the whole training split for one epoch and
# evaluated on the whole test split, from the shipped base models. The
# weighted methods use the settings chosen on the validation split
# (docs/results.md): DCE from the same seed's frozen context-sft run,
# stop-gradient on z_0, λ 2, ε 1, α 0.01. Shakespeare is decoded with at
# least 32 new tokens (--min-new-tokens 32, chosen on its validation split:
# greedy decoding otherwise stops its speeches at half their length).
#
# About 12 CPU-hours on 2 cores. Interrupt it at will: rerunning the same
# command reuses finished runs and resumes the others from their checkpoints.
# Finished runs are also kept, without their weights, under
# docs/studies/DS/runs (scripts/study_runs.sh), so that a study spread over
# several sessions or machines resumes from a fresh clone.
#   DATASETS="gitcommits shakespeare"  which datasets, in order (default both)
#   THREADS=N                          threads per run (default: all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target nextquill_cli

settings=(--estimator fixed:context-sft --stop-grad-z0 --lambda 2 --epsilon 1 --alpha 0.01
          --epochs 1 --seeds 3 --threads "${THREADS:-$(nproc)}")
for ds in ${DATASETS:-gitcommits shakespeare}; do
  case "$ds" in
    gitcommits) out=runs/study-gitcommits-tuned extra=() ;;
    shakespeare) out=runs/study-shakespeare-min32 extra=(--min-new-tokens 32) ;;
    *) echo "full_study: unknown dataset '$ds' (gitcommits, shakespeare)" >&2; exit 2 ;;
  esac
  base="models/$ds-base"
  if [[ ! -f "$base/model.safetensors" ]]; then
    echo "full_study: ERROR: $base/model.safetensors is missing (a partial clone?)" >&2
    exit 1
  fi
  # Finished runs kept in the repository (results without weights) count as done.
  keep="docs/studies/$ds/runs"
  bash scripts/study_runs.sh restore "$keep" "$out"
  build/bin/nextquill study --data "data/$ds" --base "$base" --out "$out" "${settings[@]}" "${extra[@]}"
  bash scripts/study_runs.sh save "$out" "$keep"
done
