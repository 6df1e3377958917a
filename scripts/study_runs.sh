#!/usr/bin/env bash
# Keeps a long study's finished runs across machines and sessions without
# their weights: what `nextquill study` needs to reuse a finished run is its
# eval-test.json, predictions-test.jsonl and nextquill.json (losses.tsv feeds
# the report's loss curves). A few hundred KB per run instead of tens of MB.
#
#   scripts/study_runs.sh save    STUDY_OUT KEEP_DIR   finished runs -> KEEP_DIR/<run>/
#   scripts/study_runs.sh restore KEEP_DIR STUDY_OUT   KEEP_DIR/<run>/ -> STUDY_OUT/runs/<run>/
#
# restore never overwrites a run that has its own results, and leaves out a
# seed's context-sft run while any other run of that seed is missing from
# KEEP_DIR: the study uses that run's weights as the frozen DCE estimator of the
# seed's weighted methods, so it must be retrained first (training is
# deterministic for a fixed thread count, so it comes back the same). A seed
# counts as complete with STUDY_METHODS runs kept (default 7, all methods).
set -euo pipefail
shopt -s nullglob

required=(eval-test.json predictions-test.jsonl nextquill.json)  # what makes a run finished
files=("${required[@]}" losses.tsv)

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -eq 3 ]] || usage
mode=$1 from=$2 to=$3

case "$mode" in
  save)
    [[ -d "$from/runs" ]] || { echo "study_runs: no runs under '$from/runs'" >&2; exit 1; }
    n=0
    for d in "$from"/runs/*/; do
      run=$(basename "$d")
      finished=1
      for f in "${required[@]}"; do [[ -f "$d/$f" ]] || finished=0; done
      [[ $finished -eq 1 ]] || continue
      mkdir -p "$to/$run"
      for f in "${files[@]}"; do
        if [[ -f "$d/$f" ]]; then cp "$d/$f" "$to/$run/$f.tmp" && mv "$to/$run/$f.tmp" "$to/$run/$f"; fi
      done
      n=$((n + 1))
    done
    echo "study_runs: saved $n finished runs of $from into $to"
    ;;
  restore)
    [[ -d "$from" ]] || { echo "study_runs: nothing to restore: '$from' does not exist"; exit 0; }
    kept=()
    for d in "$from"/*/; do kept+=("$(basename "$d")"); done
    n=0 skipped=()
    for run in "${kept[@]}"; do
      src="$from/$run" dst="$to/runs/$run"
      [[ -f "$dst/eval-test.json" ]] && continue  # its own results win
      for f in "${required[@]}"; do
        [[ -f "$src/$f" ]] || { echo "study_runs: ERROR: $src/$f is missing" >&2; exit 1; }
      done
      if [[ "$run" == context-sft-s* ]]; then
        seed=${run#context-sft-s}
        n_seed=$(find "$from" -mindepth 1 -maxdepth 1 -type d -name "*-s$seed" | wc -l)
        if [[ "$n_seed" -lt "${STUDY_METHODS:-7}" ]]; then
          skipped+=("$run")
          continue
        fi
      fi
      mkdir -p "$dst"
      for f in "${files[@]}"; do
        if [[ -f "$src/$f" ]]; then cp "$src/$f" "$dst/$f"; fi
      done
      n=$((n + 1))
    done
    echo "study_runs: restored $n finished runs from $from into $to/runs"
    if [[ ${#skipped[@]} -gt 0 ]]; then
      echo "study_runs: not restored (the study retrains them: they are the DCE estimator of their seed's" \
        "unfinished runs): ${skipped[*]}"
    fi
    ;;
  *) usage ;;
esac
