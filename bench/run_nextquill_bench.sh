#!/usr/bin/env bash
# NextQuill training-step benchmark: nextquill (build/bench/bench_nextquill)
# against the PyTorch peer (bench/peers/torch_nextquill.py), methods
# context-sft (with-history pass only) and nextquill (with- and no-history
# passes, L_n + 0.1 L_p), same arguments, run one after another, then a
# markdown table.
#
#   bench/run_nextquill_bench.sh                  # STEPS=5 WARMUP=2, configs S M, threads 1 2
#   CONFIGS=S STEPS=10 WARMUP=3 bench/run_nextquill_bench.sh
#
# Environment: STEPS, WARMUP, CONFIGS ("S M"), THREADS ("1 2"),
#   BENCH_NEXTQUILL (path of the nextquill binary, default build/bench/bench_nextquill),
#   PYTHON (default python3).
# Both programs take --config --threads --steps --warmup --method --json and
# print one JSON line:
#   {"impl","method","config","threads","step_s","tokens_per_s","peak_rss_mb",
#    "loss","tokens_h","tokens_0"}
# Table columns (times are median step seconds):
#   nq ratio   = nextquill step_s / context-sft step_s (nextquill binary)
#   bar        = 1 + tokens_0/tokens_h + 0.05 (the cost of the extra no-history
#                pass relative to the with-history one, plus 5%); "ok" when
#                nq ratio <= bar
#   torch ratio = the same ratio for the peer
#   nq vs torch = torch nextquill step_s / nq nextquill step_s (> 1: nextquill faster)
#   RSS columns: peak RSS (MB) of the nextquill-method runs.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STEPS="${STEPS:-5}"
WARMUP="${WARMUP:-2}"
CONFIGS="${CONFIGS:-S M}"
THREADS="${THREADS:-1 2}"
BIN="${BENCH_NEXTQUILL:-$ROOT/build/bench/bench_nextquill}"
PY="${PYTHON:-python3}"
PEER="$ROOT/bench/peers/torch_nextquill.py"

have_bin=1
if [ ! -x "$BIN" ]; then
  have_bin=0
  echo "NOTE: nextquill benchmark binary not found at $BIN" >&2
  echo "      build it first (e.g. cmake --build build --target bench_nextquill)" >&2
  echo "      or set BENCH_NEXTQUILL=...; running the PyTorch peer only." >&2
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
    for m in context-sft nextquill; do
      if [ "$have_bin" = 1 ]; then
        echo "nextquill $m config $c threads $t ..." >&2
        run "nextquill $m $c/$t" "$BIN" "${args[@]}" --method "$m"
      fi
    done
    for m in nextquill context-sft; do
      echo "torch     $m config $c threads $t ..." >&2
      run "torch $m $c/$t" "$PY" "$PEER" "${args[@]}" --method "$m"
    done
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
        rows.setdefault(key, {})[(r["impl"], r["method"])] = r
        if r.get("version") is not None:
            versions[r["impl"]] = r["version"]

def num(r, k, fmt):
    return format(r[k], fmt) if r is not None and r.get(k) is not None else "n/a"

def div(a, b):
    return a / b if a is not None and b else None

def fmt(x, f=".2f"):
    return "n/a" if x is None else format(x, f)

def step(r):
    return r.get("step_s") if r else None

print(f"\nsteps {steps} (median), warmup {warmup}; times in seconds per step\n")
print("| config | threads | nq context-sft s | nq nextquill s | nq ratio | "
      "bar (1 + tokens_0/tokens_h + 0.05) | torch context-sft s | torch nextquill s | "
      "torch ratio | nq vs torch speed (torch_s / nq_s) | nq nextquill RSS MB | "
      "torch nextquill RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for key in order:
    g = rows[key]
    nq_c, nq_n = g.get(("nextquill", "context-sft")), g.get(("nextquill", "nextquill"))
    pt_c, pt_n = g.get(("torch", "context-sft")), g.get(("torch", "nextquill"))
    src = nq_n or pt_n  # tokens_h / tokens_0 of the nextquill-method run
    bar = (1.0 + src["tokens_0"] / src["tokens_h"] + 0.05
           if src and src.get("tokens_h") else None)
    nq_ratio = div(step(nq_n), step(nq_c))
    verdict = ""
    if nq_ratio is not None and bar is not None:
        verdict = " ok" if nq_ratio <= bar else " OVER"
    print(f"| {key[0]} | {key[1]} | {num(nq_c, 'step_s', '.4f')} | "
          f"{num(nq_n, 'step_s', '.4f')} | {fmt(nq_ratio, '.3f')}{verdict} | {fmt(bar, '.3f')} | "
          f"{num(pt_c, 'step_s', '.4f')} | {num(pt_n, 'step_s', '.4f')} | "
          f"{fmt(div(step(pt_n), step(pt_c)), '.3f')} | {fmt(div(step(pt_n), step(nq_n)))} | "
          f"{num(nq_n, 'peak_rss_mb', '.1f')} | {num(pt_n, 'peak_rss_mb', '.1f')} |")
print()
print(f"torch version: {versions.get('torch', 'n/a')}")
if "nextquill" in versions:
    print(f"nextquill version: {versions['nextquill']}")
if not have_bin:
    print("nextquill: bench_nextquill binary not built; its columns are n/a")
EOF
