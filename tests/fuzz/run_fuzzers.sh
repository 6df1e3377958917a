#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang and runs each one in turn.
#
#   tests/fuzz/run_fuzzers.sh [SECONDS] [HARNESS...]
#
# SECONDS per harness (default 60); HARNESS: names from tests/fuzz/CMakeLists.txt
# (default: all). The build goes to build-fuzz (NQ_FUZZ_BUILD overrides); each
# run starts from the committed seeds (corpus/<name>) and regressions
# (regressions/<name>), grows its own corpus in $NQ_FUZZ_WORK/corpus/<name>
# (default build-fuzz/work, out of git) and leaves its log in
# $NQ_FUZZ_WORK/logs/<name>.log and any finding in $NQ_FUZZ_WORK/findings/<name>/.
# Prints executions and coverage (cov = edges, ft = features) per harness at the
# end; exits 1 if any harness had a finding.
#
# A finding is a crash, a sanitizer report (ASan/UBSan), an escaped exception
# other than nq::Error (nqcli::UsageError for the argument parser), a broken
# invariant (the harness aborts), an input slower than 15 s, more than
# 2048 MB RSS or one allocation over 512 MB. Reproduce one with
#   build-fuzz/tests/fuzz/fuzz_<name> FILE
# and, once fixed, copy FILE to tests/fuzz/regressions/<name>/<what-it-found>.
set -euo pipefail

seconds=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${NQ_FUZZ_BUILD:-$root/build-fuzz}
work=${NQ_FUZZ_WORK:-$build/work}
all=$(sed -n 's/^set(NQ_FUZZ_HARNESSES \(.*\))$/\1/p' "$root/tests/fuzz/CMakeLists.txt")
harnesses=${*:-$all}

# Only what the harnesses need: no OpenMP/BLAS (nothing here computes), no CLI.
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNEXTQUILL_BUILD_FUZZERS=ON -DNEXTQUILL_WARNINGS_AS_ERRORS=ON -DNEXTQUILL_NATIVE=OFF \
  -DNEXTQUILL_WITH_OPENMP=OFF -DNEXTQUILL_WITH_BLAS=OFF -DNEXTQUILL_WITH_MPI=OFF -DNEXTQUILL_BUILD_CLI=OFF \
  -DNEXTQUILL_BUILD_BENCHMARKS=OFF -DNEXTQUILL_BUILD_EXAMPLES=OFF -DNEXTQUILL_BUILD_TOOLS=OFF >/dev/null
targets=()
for h in $harnesses; do targets+=("fuzz_$h" "fuzz_replay_$h"); done
cmake --build "$build" -j "${JOBS:-2}" --target "${targets[@]}"

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
summary=()
failed=0
for h in $harnesses; do
  mkdir -p "$work/corpus/$h" "$work/logs" "$work/findings/$h"
  log="$work/logs/$h.log"
  echo "== fuzz_$h: $seconds s (log: $log)"
  rc=0
  start=$(date +%s)
  "$build/tests/fuzz/fuzz_$h" "$work/corpus/$h" "$root/tests/fuzz/corpus/$h" "$root/tests/fuzz/regressions/$h" \
    -max_total_time="$seconds" -workers=1 -timeout=15 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -close_fd_mask=1 -print_final_stats=1 -artifact_prefix="$work/findings/$h/" >"$log" 2>&1 || rc=$?
  elapsed=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  status=clean
  if [ "$rc" -ne 0 ]; then
    status="FINDING (exit $rc): $(ls "$work/findings/$h" | tr '\n' ' ')"
    failed=1
  fi
  summary+=("$(printf '%-14s %6ss  execs %-10s cov %-6s ft %-6s %s' "$h" "$elapsed" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "$status")")
done
echo
echo "harness        time    executions        coverage"
printf '%s\n' "${summary[@]}"
exit "$failed"
