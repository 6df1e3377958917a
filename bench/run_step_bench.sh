#!/usr/bin/env bash
# End-to-end GPT training-step benchmark: nextquill (build/bench/bench_step)
# against the PyTorch peer (bench/peers/torch_gpt.py), same arguments, run one
# after another, then a markdown table.
#
#   bench/run_step_bench.sh                    # STEPS=5 WARMUP=2, configs S M, threads 1 2
#   STEPS=10 WARMUP=3 bench/run_step_bench.sh
#
# Environment: STEPS, WARMUP, CONFIGS ("S M"), THREADS ("1 2"),
#   BENCH_STEP (path of the nextquill binary, default build/bench/bench_step),
#   PYTHON (default python3).
# Both programs print one JSON line with --json:
#   {"impl","version","config","threads","step_s","tokens_per_s","peak_rss_mb","loss"}
# ratio = nextquill tok/s / torch tok/s (> 1: nextquill is faster).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STEPS="${STEPS:-5}"
WARMUP="${WARMUP:-2}"
CONFIGS="${CONFIGS:-S M}"
THREADS="${THREADS:-1 2}"
BIN="${BENCH_STEP:-$ROOT/build/bench/bench_step}"
PY="${PYTHON:-python3}"
PEER="$ROOT/bench/peers/torch_gpt.py"

have_bin=1
if [ ! -x "$BIN" ]; then
  have_bin=0
  echo "NOTE: nextquill benchmark binary not found at $BIN" >&2
  echo "      build it first (e.g. cmake --build build --target bench_step) or set BENCH_STEP=..." >&2
  echo "      running the PyTorch peer only." >&2
fi

results="$(mktemp)"
trap 'rm -f "$results"' EXIT

# run LABEL CMD...: append the command's last JSON line to $results
run() {
  local label="$1"; shift
  local out
  if ! out="$("$@")"; then
    echo "FAILED: $label: $*" >&2
    return
  fi
  out="$(printf '%s\n' "$out" | grep '^{' | tail -n 1)"
  if [ -z "$out" ]; then
    echo "FAILED: $label printed no JSON line" >&2
    return
  fi
  printf '%s\n' "$out" >> "$results"
}

for c in $CONFIGS; do
  for t in $THREADS; do
    args=(--config "$c" --threads "$t" --steps "$STEPS" --warmup "$WARMUP" --json)
    if [ "$have_bin" = 1 ]; then
      echo "nextquill config $c threads $t ..." >&2
      run "nextquill $c/$t" "$BIN" "${args[@]}"
    fi
    echo "torch     config $c threads $t ..." >&2
    run "torch $c/$t" "$PY" "$PEER" "${args[@]}"
  done
done

"$PY" - "$results" "$STEPS" "$WARMUP" "$have_bin" <<'EOF'
import json, sys
path, steps, warmup, have_bin = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
rows, order, versions = {}, [], {}
with open(path) as f:
    for line in f:
        r = json.loads(line)
        key = (str(r["config"]), int(r["threads"]))
        if key not in order:
            order.append(key)
        rows.setdefault(key, {})[r["impl"]] = r
        versions[r["impl"]] = r.get("version", "?")

def num(r, k, fmt):
    return format(r[k], fmt) if r is not None and r.get(k) is not None else "n/a"

print(f"\nsteps {steps} (median), warmup {warmup}\n")
print("| config | threads | nextquill tok/s | torch tok/s | ratio | nextquill RSS MB | torch RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for key in order:
    nq, pt = rows[key].get("nextquill"), rows[key].get("torch")
    ratio = (f"{nq['tokens_per_s'] / pt['tokens_per_s']:.2f}"
             if nq and pt and pt["tokens_per_s"] else "n/a")
    print(f"| {key[0]} | {key[1]} | {num(nq, 'tokens_per_s', '.0f')} | "
          f"{num(pt, 'tokens_per_s', '.0f')} | {ratio} | "
          f"{num(nq, 'peak_rss_mb', '.1f')} | {num(pt, 'peak_rss_mb', '.1f')} |")
print()
print(f"torch version: {versions.get('torch', 'n/a')}")
if "nextquill" in versions:
    print(f"nextquill version: {versions['nextquill']}")
if not have_bin:
    print("nextquill: bench_step binary not built; its columns are n/a")
EOF
