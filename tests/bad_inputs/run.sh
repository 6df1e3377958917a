#!/usr/bin/env bash
# The bad-input catalogue: runs every case of cases.txt against the nextquill
# executable and checks that it fails cleanly. For each case:
#   - the exit code is the expected one (1: bad input files, 2: bad flags);
#     0 marks the few inputs that deserve a warning only (then the checks of
#     partial output below do not apply);
#   - no crash: no exit code >= 128 (a signal) and no crash or sanitizer report;
#   - nothing partial is left behind: the case's directory (where --out points)
#     is byte for byte and mtime for mtime as before, and holds no *.tmp.* files;
#   - stderr contains the expected text (naming the file, line, field or flag).
# The shared inputs (a tiny base run, a dataset, checkpoints) are checked to
# be unchanged at the end.
#
#   tests/bad_inputs/run.sh path/to/nextquill [name-filter]
set -uo pipefail

NQ=$(realpath "${1:?usage: run.sh path/to/nextquill [name-filter]}")
FILTER=${2:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FIXTURES=$(cd "$HERE/../fixtures/cli" && pwd)
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/nq_bad_inputs.XXXXXX")

unmount_all() {  # tmpfs mounts of the disk-full case
  local d
  for d in "$ROOT"/cases/*/*/; do
    if mountpoint -q "$d" 2>/dev/null; then umount "$d" 2>/dev/null || true; fi
  done
}
cleanup() {
  unmount_all
  rm -rf "$ROOT"
}
trap cleanup EXIT

die() {
  echo "bad_inputs: $*" >&2
  exit 1
}

# --- Shared inputs, made once -----------------------------------------------
export NQ
export DATA="$ROOT/data" BASE="$ROOT/base" BASE16="$ROOT/base16" TRAIN_CKPT="$ROOT/stopped/checkpoint.safetensors"
cp -r "$FIXTURES" "$DATA"
printf '%s\n' '{"d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "d_ff": 64, "seq_len": 128,' \
  ' "num_merges": 150, "batch_size": 4, "eval_batches": 1, "valid_fraction": 0.1, "warmup": 1}' >"$ROOT/tiny.json"
sed 's/"d_model": 32/"d_model": 16/' "$ROOT/tiny.json" >"$ROOT/tiny16.json"
export TINY="$ROOT/tiny.json"
"$NQ" pretrain --data "$DATA" --out "$BASE" --config "$TINY" --steps 2 --threads 1 >"$ROOT/setup.log" 2>&1 ||
  die "pretraining the tiny base failed: $(tail -n 5 "$ROOT/setup.log")"
"$NQ" pretrain --data "$DATA" --out "$BASE16" --config "$ROOT/tiny16.json" --steps 2 --threads 1 \
  >>"$ROOT/setup.log" 2>&1 || die "pretraining the second base failed: $(tail -n 5 "$ROOT/setup.log")"
"$NQ" train --data "$DATA" --base "$BASE" --out "$ROOT/stopped" --epochs 1 --batch-size 8 --threads 1 \
  --stop-after 1 >>"$ROOT/setup.log" 2>&1 || die "the stopped train run failed: $(tail -n 5 "$ROOT/setup.log")"
[[ -f $TRAIN_CKPT ]] || die "no checkpoint in $ROOT/stopped"

# --- Helpers for the cases' setup commands (run in the case's directory) ----
skip() {  # skip this case, with the reason
  echo "$*"
  exit 77
}
copy_base() { cp -r "$BASE" "${1:-b}"; }
copy_data() { cp -r "$DATA" "${1:-d}"; }
# Replaces the first occurrence of FROM by TO (same length: a safetensors
# header keeps its size) in a binary file.
binsub() {
  [[ ${#2} -eq ${#3} ]] || die "binsub: '$2' and '$3' differ in length"
  FROM="$2" TO="$3" perl -0777 -pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$1"
}
# Sets "KEY": VALUE in a pretty-printed JSON file (one key per line).
json_set() { sed -i -E "s/^( *\"$2\": ).*[^,](,?)\$/\1$3\2/" "$1"; }
# A train.jsonl of N examples by 3 users, none with any history.
no_history_jsonl() {
  local i
  for ((i = 0; i < 12; ++i)); do
    printf '{"user": "u%d", "history": [], "query": "file%d.c +1 -1", "target": "fix bug %d"}\n' $((i % 3)) "$i" "$i"
  done
}
export -f skip copy_base copy_data binsub json_set no_history_jsonl die

# What the case directory holds: every entry, every file's size, mtime and
# checksum (directories without their mtime: removing a file we made changes it).
snapshot() {
  (cd "$1" && find . -type d -printf 'd %p\n' -o -printf '%y %p %s %T@\n' | LC_ALL=C sort &&
    find . -type f -exec md5sum {} + | LC_ALL=C sort)
}

CRASH_RE='Segmentation fault|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|terminate called|Aborted|core dumped|stack smashing'

pass=0 fail=0 skipped=0 known=0 fixed=0 n=0
shared_before=$(snapshot "$ROOT" | grep -v ' \./cases' || true)
mkdir -p "$ROOT/cases"
while IFS= read -r line || [[ -n $line ]]; do
  [[ -z ${line//[[:space:]]/} || $line =~ ^[[:space:]]*# ]] && continue
  IFS='|' read -r name code expect setup args <<<"$line"
  trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }
  name=$(trim "$name") code=$(trim "$code") expect=$(trim "$expect") setup=$(trim "$setup") args=$(trim "$args")
  [[ -n $FILTER && $name != *"$FILTER"* ]] && continue
  [[ -n $name && -n $code && -n $expect && -n $args ]] || die "malformed line: $line"
  n=$((n + 1))
  is_known=0
  if [[ $name == known:* ]]; then is_known=1; fi
  T="$ROOT/cases/$n"
  mkdir -p "$T"

  reason=$(cd "$T" && eval "$setup" 2>&1)
  src=$?
  if [[ $src -eq 77 ]]; then
    printf 'SKIP  %-40s %s\n' "$name" "$(tail -n 1 <<<"$reason")"
    skipped=$((skipped + 1))
    unmount_all
    continue
  elif [[ $src -ne 0 ]]; then
    printf 'FAIL  %-40s the setup failed (%d): %s\n' "$name" "$src" "$reason"
    fail=$((fail + 1))
    continue
  fi

  before=$(snapshot "$T")
  # Leading NAME=VALUE words are environment variables; "ulimit-f=N" caps
  # the size of any file the command writes at N KiB (a full disk, for writes).
  (
    cd "$T" || exit 99
    eval "set -- $args"
    envs=()
    fsize=""
    while [[ $# -gt 0 && $1 =~ ^[A-Za-z_][A-Za-z0-9_-]*= ]]; do
      if [[ $1 == ulimit-f=* ]]; then fsize=${1#ulimit-f=}; else envs+=("$1"); fi
      shift
    done
    if [[ -n $fsize ]]; then
      trap '' XFSZ # the write fails with EFBIG instead of killing the process
      ulimit -f "$fsize"
    fi
    exec env ${envs[@]+"${envs[@]}"} "$NQ" "$@"
  ) >"$ROOT/cases/stdout" 2>"$ROOT/cases/stderr"
  rc=$?
  after=$(snapshot "$T")
  problems=()
  [[ $rc -eq 0 && $code -ne 0 ]] && problems+=("exit code 0")
  [[ $rc -ge 128 ]] && problems+=("exit code $rc (killed by signal $((rc - 128)))")
  [[ $rc -lt 128 && $rc -ne $code ]] && problems+=("exit code $rc, expected $code")
  grep -Eq "$CRASH_RE" "$ROOT/cases/stderr" "$ROOT/cases/stdout" && problems+=("a crash report")
  [[ $code -ne 0 && $before != "$after" ]] &&
    problems+=("the case directory changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -n 3 | tr '\n' ' ')")
  tmps=$(find "$T" -name '*.tmp.*' | head -n 3)
  [[ -n $tmps ]] && problems+=("temporary files left: $tmps")
  grep -Fq -- "$expect" "$ROOT/cases/stderr" || problems+=("stderr lacks '$expect'")
  unmount_all

  msg=$(grep -m1 '^error' "$ROOT/cases/stderr" || tail -n 1 "$ROOT/cases/stderr")
  if [[ ${#problems[@]} -eq 0 && $is_known -eq 1 ]]; then
    printf 'FIXED %-40s passes now: drop its known: prefix\n' "$name"
    fixed=$((fixed + 1))
  elif [[ ${#problems[@]} -eq 0 ]]; then
    printf 'ok    %-40s %s\n' "$name" "${msg:0:150}"
    pass=$((pass + 1))
  elif [[ $is_known -eq 1 ]]; then
    printf 'KNOWN %-40s %s\n' "$name" "$(IFS=';'; echo "${problems[*]}")"
    known=$((known + 1))
  else
    printf 'FAIL  %-40s %s\n' "$name" "$(IFS=';'; echo "${problems[*]}")"
    printf '      stderr: %s\n' "$(tail -c 600 "$ROOT/cases/stderr")"
    fail=$((fail + 1))
  fi
done <"$HERE/cases.txt"

shared_after=$(snapshot "$ROOT" | grep -v ' \./cases' || true)
if [[ $shared_before != "$shared_after" ]]; then
  echo "FAIL  a case modified the shared inputs (base runs, dataset, checkpoints):"
  diff <(echo "$shared_before") <(echo "$shared_after") | grep '^[<>]' | head -n 5
  fail=$((fail + 1))
fi

echo "bad inputs: $n cases: $pass ok, $fail failed, $skipped skipped, $known known failures, $fixed fixed"
[[ $n -gt 0 && $fail -eq 0 && $fixed -eq 0 ]]
