#!/usr/bin/env bash
# The numerics guard of `nextquill train` and `pretrain`, driven by the testing
# aid NQ_INJECT_NAN_AT_STEP (docs/cli.md):
#   1. a NaN gradient at step 5 stops train with a message naming the step, the
#      parameter and the last good checkpoint (step 4, valid), before the
#      optimizer update; resuming without the NaN ends exactly like a run
#      that never saw it;
#   2. --nan-policy skip skips that step, reports it, and a skipping run that
#      is stopped and resumed ends like an uninterrupted skipping run;
#   3. a NaN loss in pretrain stops it naming "loss", the step and the checkpoint.
#
#   nan_guard.sh --nextquill PATH --checker PATH
set -uo pipefail

NQ="" CHECKER=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --nextquill) NQ=$(realpath "$2"); shift 2 ;;
    --checker) CHECKER=$(realpath "$2"); shift 2 ;;
    *) echo "nan_guard.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -x $NQ && -x $CHECKER ]] || { echo "usage: nan_guard.sh --nextquill PATH --checker PATH" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/nq_nan_guard.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
# shellcheck source=common.sh
source "$HERE/common.sh"
expect_in() {  # file text
  grep -Fq -- "$2" "$1" || fail "$(basename "$1") lacks '$2'; it holds: $(tail -n 3 "$1")"
}
same() {  # dir-a dir-b what
  local f
  for f in model.safetensors losses.tsv; do
    cmp -s "$1/$f" "$2/$f" || fail "$3: $f differs"
  done
}

make_tiny_base "$NQ" "$HERE" "$ROOT" 2
train=(train --data "$DATA" --base "$ROOT/base" --method nextquill --epochs 1 --batch-size 4 --threads 1
  --ckpt-every 2 --seed 3)

# 1. stop, name, resume.
"$NQ" "${train[@]}" --out "$ROOT/ref" >"$ROOT/ref.log" 2>&1 || fail "reference run: $(tail -n 3 "$ROOT/ref.log")"
NQ_INJECT_NAN_AT_STEP=5 NQ_INJECT_NAN_PARAM=layers.0.attn.q_proj.weight \
  "$NQ" "${train[@]}" --out "$ROOT/stop" >"$ROOT/stop.log" 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "train with a NaN gradient at step 5 exited with $rc, expected 1"
expect_in "$ROOT/stop.log" "nq::train: step 5: the gradient of parameter 'layers.0.attn.q_proj.weight' is not finite; the last good checkpoint is $ROOT/stop/checkpoint.safetensors (step 4)"
"$CHECKER" "$ROOT/stop/checkpoint.safetensors" >"$ROOT/check.log" 2>&1 || fail "$(cat "$ROOT/check.log")"
expect_in "$ROOT/check.log" "valid checkpoint at step 4"
[[ $(wc -l <"$ROOT/stop/losses.tsv") -eq 5 ]] || fail "losses.tsv should hold a header and steps 1-4"
"$NQ" "${train[@]}" --out "$ROOT/stop" --resume >>"$ROOT/stop.log" 2>&1 || fail "resume: $(tail -n 3 "$ROOT/stop.log")"
same "$ROOT/ref" "$ROOT/stop" "stopped at the NaN and resumed without it"
echo "ok: a NaN gradient stops train at step 5 naming the parameter and the step-4 checkpoint; the resumed run equals the reference"

# 2. skip: reported, counted, and the count survives a resume.
skip=("${train[@]}" --nan-policy skip --max-nan-skips 2)
NQ_INJECT_NAN_AT_STEP=5 "$NQ" "${skip[@]}" --out "$ROOT/skip" >"$ROOT/skip.log" 2>&1 ||
  fail "--nan-policy skip: $(tail -n 3 "$ROOT/skip.log")"
expect_in "$ROOT/skip.log" "warning: step 5: the gradient of parameter 'norm.weight' is not finite; step skipped (1 of at most 2)"
expect_in "$ROOT/skip.log" "note: 1 step(s) had a NaN/Inf loss or gradient and made no update (--nan-policy skip)"
expect_in "$ROOT/skip/nextquill.json" '"nan_skipped_steps": 1'
cmp -s "$ROOT/ref/model.safetensors" "$ROOT/skip/model.safetensors" && fail "the skipped step changed nothing?"
NQ_INJECT_NAN_AT_STEP=5 "$NQ" "${skip[@]}" --out "$ROOT/skip2" --stop-after 6 >"$ROOT/skip2.log" 2>&1 ||
  fail "--nan-policy skip --stop-after 6: $(tail -n 3 "$ROOT/skip2.log")"
"$NQ" "${skip[@]}" --out "$ROOT/skip2" --resume >>"$ROOT/skip2.log" 2>&1 || fail "resume: $(tail -n 3 "$ROOT/skip2.log")"
same "$ROOT/skip" "$ROOT/skip2" "a skipping run stopped after the skip and resumed"
expect_in "$ROOT/skip2/nextquill.json" '"nan_skipped_steps": 1'
echo "ok: --nan-policy skip skips step 5, reports it, and a stopped and resumed skipping run ends identically"

# 3. pretrain, NaN loss.
NQ_INJECT_NAN_AT_STEP=3 NQ_INJECT_NAN_PARAM=loss "$NQ" pretrain --data "$DATA" --out "$ROOT/pre" \
  --config "$ROOT/tiny.json" --steps 6 --threads 1 >"$ROOT/pre.log" 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "pretrain with a NaN loss at step 3 exited with $rc, expected 1"
expect_in "$ROOT/pre.log" "nq::pretrain: step 3: the loss is NaN; the last good checkpoint is $ROOT/pre/checkpoint.safetensors (step 2)"
"$CHECKER" "$ROOT/pre/checkpoint.safetensors" >/dev/null 2>&1 || fail "pretrain's step-2 checkpoint is not valid"
echo "ok: a NaN loss stops pretrain at step 3 naming the loss and the step-2 checkpoint"
echo "nan_guard: PASS"
