#!/usr/bin/env bash
# One command for a GPU machine: build nextquill with CUDA, run the GPU test
# suite, run the GPU benchmarks side by side with PyTorch, print one table.
#
#   tools/gpu_check.sh [OUTDIR]          # OUTDIR default: gpu-check-out/
#
# Stages, each under its own timeout (a hang costs one stage, not the run) and
# all inside an overall budget (GPU_CHECK_BUDGET_S, default 450 s; a stage that
# no longer fits is skipped and says so). A failed stage does not stop the
# ones after it.
#   env        nvidia-smi, nvcc, torch: the card and the software (env.log)
#   configure  cmake -DNEXTQUILL_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 (this card only),
#              Release, no CPU benchmarks/examples/CLI, no BLAS (the CPU side of the GPU
#              tests uses Eigen's GEMM), bench/gpu through NEXTQUILL_BUILD_GPU_BENCHMARKS
#              (configure.log). If Eigen3/nlohmann_json/doctest are missing and
#              build-gpu-deps/deps.tar.gz exists (made by tools/gpu_deps.sh), it is
#              unpacked and used.
#   build      only nextquill_gpu_tests and gpt2_train, -j$(nproc) (build.log)
#   tests      tests/gpu (nextquill_gpu_tests), doctest console reporter (gpu_tests.log)
#   benchmarks bench/gpu/gpt2_train vs bench/peers/torch_gpt2_gpu.py, same B, T, dtype,
#              warm-up and timed steps (bench.log, results.jsonl), in priority order:
#              GPT-2 124M bf16 B=8 T=1024 (the bar: >= PyTorch eager tokens/s),
#              S and M (bench_step's configs, fp32), GPT-2 124M bf16 B=16.
# Then one markdown table (also summary.md): stage, result, nextquill, PyTorch,
# nextquill/PyTorch, with the card's name and bf16 peak in the first row.
# MFU = (6*N_params + 12*L*T*d) * tokens/s / the card's dense bf16 peak.
#
# Environment: GPU_CHECK_BUDGET_S (450), WARMUP (3), STEPS (10),
#   GPT2_BATCHES ("8 16"), GPT2_CTX (1024), SM_CONFIGS ("S M"), SM_DTYPES ("fp32"),
#   NQ_GPU_BUILD (build dir, default build-gpu), PYTHON (python3), CUDA_ARCH (90),
#   SKIP_BUILD=1 (use NQ_GPU_BUILD as it is: a rerun on the same machine),
#   SKIP_TESTS=1, BENCH_DEVICE (cuda; cpu for a smoke test of the script without a GPU).
# Exit status: 1 if configure, build or the GPU tests fail (or are skipped for
# time), else 0; benchmark failures show in the table only.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

OUT="${1:-gpu-check-out}"
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"
BUILD="${NQ_GPU_BUILD:-build-gpu}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-450}"
WARMUP="${WARMUP:-3}"
STEPS="${STEPS:-10}"
GPT2_BATCHES="${GPT2_BATCHES:-8 16}"
GPT2_CTX="${GPT2_CTX:-1024}"
SM_CONFIGS="${SM_CONFIGS:-S M}"
SM_DTYPES="${SM_DTYPES:-fp32}"
PY="${PYTHON:-python3}"
CUDA_ARCH="${CUDA_ARCH:-90}"
BENCH_DEVICE="${BENCH_DEVICE:-cuda}"
JOBS="$(nproc 2>/dev/null || echo 4)"

STAGES="$OUT/stages.tsv"    # stage <TAB> status <TAB> seconds <TAB> detail
RESULTS="$OUT/results.jsonl" # one JSON line per benchmark run, with "stage" added
BENCH_LOG="$OUT/bench.log"
: > "$STAGES"
: > "$RESULTS"
: > "$BENCH_LOG"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

T0=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - T0))); }
note() { printf '[gpu_check %4ds] %s\n' $((SECONDS - T0)) "$*"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$STAGES"; }

# stage NAME CAP_S LOG CMD...: runs CMD with stdout+stderr to LOG under
# timeout min(CAP_S, time left); sets STAGE_RC (124: timed out, 125: skipped).
STAGE_RC=0
stage() {
  local name="$1" cap="$2" log="$3"
  shift 3
  local budget t start
  budget="$(left)"
  t="$cap"
  if ((budget < t)); then t="$budget"; fi
  if ((t < 20)); then
    note "$name: skipped (${budget}s left of the ${BUDGET_S}s budget)"
    echo "skipped: out of time budget" > "$log"
    STAGE_RC=125
    return 0
  fi
  note "$name (timeout ${t}s) ..."
  start=$SECONDS
  timeout -k 10 "$t" "$@" > "$log" 2>&1
  STAGE_RC=$?
  if ((STAGE_RC == 124 || STAGE_RC == 137)); then
    STAGE_RC=124
    echo "TIMED OUT after ${t}s" >> "$log"
  fi
  note "$name: rc $STAGE_RC in $((SECONDS - start))s"
  return 0
}

status_of() {  # rc -> pass | fail (rc N) | timeout | skipped
  case "$1" in
    0) echo pass ;;
    124) echo timeout ;;
    125) echo skipped ;;
    *) echo "fail (rc $1)" ;;
  esac
}

# ---- env ------------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -a)"
  echo "nproc: $JOBS"
  echo "--- nvidia-smi"
  nvidia-smi 2>&1 || echo "nvidia-smi failed"
  echo "--- nvcc"
  nvcc --version 2>&1 || /usr/local/cuda/bin/nvcc --version 2>&1 || echo "nvcc not found"
  echo "--- cmake / ninja / g++"
  cmake --version 2>&1 | head -n 1
  ninja --version 2>&1 || echo "ninja not found"
  g++ --version 2>&1 | head -n 1
  echo "--- torch"
  timeout 60 "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' 2>&1
  echo "--- git"
  git -C "$ROOT" log -1 --oneline 2>&1 || true
  git -C "$ROOT" status --short 2>&1 | head -n 50 || true
} > "$OUT/env.log" 2>&1
CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
if [[ -z "$CARD" ]]; then
  CARD="$(timeout 60 "$PY" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null | tail -n 1)"
fi
note "card: ${CARD:-unknown}"

# ---- configure ------------------------------------------------------------
NVCC="$(command -v nvcc || true)"
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc; fi
GEN=()
if command -v ninja > /dev/null 2>&1; then GEN=(-G Ninja); fi
if [[ -f "$BUILD/CMakeCache.txt" ]] && ! grep -q "CMAKE_GENERATOR:INTERNAL=Ninja" "$BUILD/CMakeCache.txt" \
  && ((${#GEN[@]})); then
  GEN=()  # keep the generator an existing build dir was made with
fi
CONF=(cmake -S . -B "$BUILD" "${GEN[@]}"
  -DCMAKE_BUILD_TYPE=Release
  -DNEXTQUILL_WITH_CUDA=ON
  "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH"
  -DNEXTQUILL_WITH_BLAS=OFF
  -DNEXTQUILL_WITH_MPI=OFF
  -DNEXTQUILL_BUILD_TESTS=ON
  -DNEXTQUILL_BUILD_BENCHMARKS=OFF
  -DNEXTQUILL_BUILD_EXAMPLES=OFF
  -DNEXTQUILL_BUILD_CLI=OFF
  -DNEXTQUILL_BUILD_TOOLS=OFF
  -DNEXTQUILL_INSTALL=OFF
  -DNEXTQUILL_BUILD_GPU_BENCHMARKS=ON)
if [[ -n "$NVCC" ]]; then CONF+=("-DCMAKE_CUDA_COMPILER=$NVCC"); fi
CONF_RC=0
BUILD_RC=0
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
  record configure skipped 0 "SKIP_BUILD=1: $BUILD used as it is"
  record build skipped 0 "SKIP_BUILD=1"
else
  t=$SECONDS
  stage configure 120 "$OUT/configure.log" "${CONF[@]}"
  DEPS_TGZ="$ROOT/build-gpu-deps/deps.tar.gz"
  if ((STAGE_RC != 0 && STAGE_RC != 124 && STAGE_RC != 125)) && [[ -f "$DEPS_TGZ" ]] \
    && grep -qiE "eigen3|nlohmann|doctest" "$OUT/configure.log"; then
    note "configure: missing header libraries; using $DEPS_TGZ"
    mkdir -p "$TMP/deps" && tar -xzf "$DEPS_TGZ" -C "$TMP/deps"
    mv "$OUT/configure.log" "$TMP/configure.first.log"
    rm -rf "$BUILD"
    stage configure 120 "$OUT/configure.log" "${CONF[@]}" "-DCMAKE_PREFIX_PATH=$TMP/deps/usr"
    { echo "--- first attempt (system packages only):"; cat "$TMP/configure.first.log"; } >> "$OUT/configure.log"
  fi
  CONF_RC=$STAGE_RC
  record configure "$(status_of "$CONF_RC")" $((SECONDS - t)) "log configure.log"

  # ---- build ----------------------------------------------------------------
  BUILD_RC=125
  if ((CONF_RC == 0)); then
    t=$SECONDS
    # Keep going past a failed file, so that a broken benchmark does not stop
    # the test binary (and the reverse).
    KEEP=(-- -k)
    if grep -q "CMAKE_GENERATOR:INTERNAL=Ninja" "$BUILD/CMakeCache.txt" 2>/dev/null; then KEEP=(-- -k 0); fi
    stage build 330 "$OUT/build.log" cmake --build "$BUILD" -j"$JOBS" --target nextquill_gpu_tests gpt2_train "${KEEP[@]}"
    BUILD_RC=$STAGE_RC
    record build "$(status_of "$BUILD_RC")" $((SECONDS - t)) "log build.log"
  else
    record build skipped 0 "configure failed"
  fi
fi
TEST_BIN="$BUILD/tests/gpu/nextquill_gpu_tests"
BENCH_BIN="$BUILD/bench/gpu/gpt2_train"

# ---- tests ----------------------------------------------------------------
TEST_RC=125
if [[ "${SKIP_TESTS:-0}" == 1 ]]; then
  TEST_RC=0
  record tests skipped 0 "SKIP_TESTS=1"
elif [[ -x "$TEST_BIN" ]] && ((CONF_RC == 0)); then
  t=$SECONDS
  stage tests 180 "$OUT/gpu_tests.log" "$TEST_BIN" --reporters=console --no-colors=true --duration=true
  TEST_RC=$STAGE_RC
  summary_line="$(grep -E '^\[doctest\] (test cases|assertions):' "$OUT/gpu_tests.log" | tr -s ' ' | tr '|' ',' | sed 's/^\[doctest\] //' | paste -sd ';' -)"
  optable="$(grep -oE 'op table on CUDA: [0-9]+ of [0-9]+ cases pass' "$OUT/gpu_tests.log" | head -n 1)"
  if [[ -n "$optable" ]]; then summary_line="$summary_line; $optable"; fi
  if ((TEST_RC == 77)); then summary_line="skipped: $(head -n 1 "$OUT/gpu_tests.log")"; fi
  record tests "$(status_of "$TEST_RC")" $((SECONDS - t)) "${summary_line:-no doctest summary (see gpu_tests.log)}"
else
  record tests skipped 0 "the test binary was not built"
fi

# ---- benchmarks -------------------------------------------------------------
# bench NAME CAP IMPL ARGS...: one benchmark program; its last JSON line goes to
# results.jsonl with "stage" and "impl_rc" added, its output to bench.log.
bench() {
  local name="$1" cap="$2" impl="$3"
  shift 3
  local cmd=()
  if [[ "$impl" == nextquill ]]; then
    cmd=("$BENCH_BIN" "$@" --device "$BENCH_DEVICE" --json)
  else
    cmd=("$PY" bench/peers/torch_gpt2_gpu.py "$@" --device "$BENCH_DEVICE" --json)
  fi
  if [[ "$impl" == nextquill && ! -x "$BENCH_BIN" ]]; then
    printf '{"stage":"%s","impl":"%s","error":"gpt2_train was not built"}\n' "$name" "$impl" >> "$RESULTS"
    return 0
  fi
  stage "$name/$impl" "$cap" "$TMP/bench.one" "${cmd[@]}"
  {
    echo "===== $name / $impl: ${cmd[*]} (rc $STAGE_RC)"
    cat "$TMP/bench.one"
  } >> "$BENCH_LOG"
  local js
  js="$(grep '^{' "$TMP/bench.one" | tail -n 1)"
  if [[ -n "$js" ]]; then
    printf '{"stage":"%s","impl_rc":%d,%s\n' "$name" "$STAGE_RC" "${js#\{}" >> "$RESULTS"
  else
    local why
    if ((STAGE_RC == 125)); then
      why="skipped (out of time budget)"
    else
      why="$(status_of "$STAGE_RC"): $(tail -n 3 "$TMP/bench.one" | tr '\n\t"\134' '    ' | cut -c1-300)"
    fi
    printf '{"stage":"%s","impl":"%s","impl_rc":%d,"error":"%s"}\n' "$name" "$impl" "$STAGE_RC" "$why" >> "$RESULTS"
  fi
}
pair() {  # pair NAME CAP ARGS...: nextquill then PyTorch with the same arguments
  local name="$1" cap="$2"
  shift 2
  bench "$name" "$cap" nextquill "$@"
  bench "$name" "$cap" torch "$@"
}
COMMON=(--steps "$STEPS" --warmup "$WARMUP")
first_b=1
for b in $GPT2_BATCHES; do
  if ((first_b)); then
    pair "GPT-2 124M bf16 B=$b T=$GPT2_CTX" 150 --config 124M --batch "$b" --ctx "$GPT2_CTX" --dtype bf16 "${COMMON[@]}"
    first_b=0
    for c in $SM_CONFIGS; do
      for dt in $SM_DTYPES; do
        pair "$c $dt B=8 T=256" 75 --config "$c" --dtype "$dt" "${COMMON[@]}"
      done
    done
  else
    pair "GPT-2 124M bf16 B=$b T=$GPT2_CTX" 150 --config 124M --batch "$b" --ctx "$GPT2_CTX" --dtype bf16 "${COMMON[@]}"
  fi
done

# ---- the table ----------------------------------------------------------------
"$PY" - "$STAGES" "$RESULTS" "${CARD:-unknown}" "$STEPS" "$WARMUP" > "$OUT/summary.md" <<'EOF'
import json, sys

stages_path, results_path, card, steps, warmup = sys.argv[1:6]

# Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by device name; the more
# specific names first. Unknown cards: MFU n/a.
PEAKS = [("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H200 NVL", 835.0), ("GH200", 989.0),
         ("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0)]
peak = next((p for k, p in PEAKS if k.lower() in card.lower()), None)

rows = []
with open(stages_path) as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 4:
            rows.append(parts)

bench, order = {}, []
with open(results_path) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        st = r.get("stage", "?")
        if st not in bench:
            order.append(st)
        bench.setdefault(st, {})[r.get("impl", "?")] = r


def ok(r):
    return r is not None and "tokens_per_s" in r and r.get("finite", False)


def cell(r):
    if r is None:
        return "not run"
    if "tokens_per_s" not in r:
        err = str(r.get("error", "no result"))
        return err if err.startswith("skipped") else "FAIL: " + err[:160]
    s = f"{r['tokens_per_s']:,.0f} tok/s, {r['step_ms']:.1f} ms/step"
    if r.get("dtype") == "bf16":
        s += (f", MFU {100.0 * r['flops_per_token'] * r['tokens_per_s'] / (peak * 1e12):.1f}%"
              if peak else ", MFU n/a")
    if r.get("peak_mem_mb"):
        s += f", {r['peak_mem_mb'] / 1024:.1f} GiB"
    s += f", loss {r['loss_first']:.3f}->{r['loss_last']:.3f}"
    if not r.get("finite", False):
        s = "FAIL (loss not finite): " + s
    return s


versions = {}
for st in order:
    for impl, r in bench[st].items():
        if "version" in r:
            versions[impl] = r["version"]

out = []
out.append(f"gpu_check: {steps} timed steps after {warmup} warm-up; "
           f"nextquill {versions.get('nextquill', '?')}, torch {versions.get('torch', '?')}")
out.append("")
out.append("| stage | result | nextquill | PyTorch | nextquill / PyTorch |")
out.append("|---|---|---|---|---:|")
out.append(f"| card | {card} | bf16 dense peak "
           f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown (MFU n/a)'} | | |")
def esc(s):
    return str(s).replace("|", "/").replace("\n", " ")


for name, status, secs, detail in rows:
    out.append(f"| {name} | {status} ({secs} s) | {esc(detail)} | | |")
for st in order:
    nq, pt = bench[st].get("nextquill"), bench[st].get("torch")
    ratio = (f"{nq['tokens_per_s'] / pt['tokens_per_s']:.2f}x" if ok(nq) and ok(pt) else "n/a")
    if st.startswith("GPT-2") and ok(nq) and ok(pt):
        ratio += " (bar >= 1.00: " + ("met" if nq["tokens_per_s"] >= pt["tokens_per_s"] else "NOT met") + ")"
    skipped = all(str((r or {}).get("error", "")).startswith("skipped") for r in (nq, pt))
    result = "pass" if ok(nq) and ok(pt) else ("skipped" if skipped else "fail")
    out.append(f"| {esc(st)} | {result} | {esc(cell(nq))} | {esc(cell(pt))} | {ratio} |")
print("\n".join(out))
EOF
echo
cat "$OUT/summary.md"
echo
note "logs in $OUT"

rc=0
((CONF_RC == 0)) || rc=1
((BUILD_RC == 0)) || rc=1
((TEST_RC == 0)) || rc=1
exit "$rc"
