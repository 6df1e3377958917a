#!/usr/bin/env bash
# Crash safety of `nextquill train` and `nextquill pretrain`, by brute force.
#
# For each command: an uninterrupted reference run (--threads 1, a checkpoint
# every step), then runs of the same command into another directory that are
# SIGKILLed after a random delay, again and again: after each kill, whatever
# checkpoint is there must be valid (nq_check_checkpoint), and the run goes on
# with --resume when there is one, from scratch when there is none, until it
# completes. The completed run's model.safetensors and losses.tsv (and, for
# pretrain, the tokenizer files) must equal the reference's byte for byte, and
# no temporary file may be left. A run that completes before --kills kills
# were made starts over in a fresh directory (a new round).
#
#   kill_resume.sh --nextquill PATH --checker PATH [--kills N] [--seed S]
#                  [--commands train,pretrain] [--keep]
set -uo pipefail

NQ="" CHECKER="" KILLS=3 SEED="" COMMANDS="train,pretrain" KEEP=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --nextquill) NQ=$(realpath "$2"); shift 2 ;;
    --checker) CHECKER=$(realpath "$2"); shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --commands) COMMANDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "kill_resume.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -x $NQ && -x $CHECKER ]] || { echo "usage: kill_resume.sh --nextquill PATH --checker PATH [--kills N] [--seed S]" >&2; exit 2; }
[[ $KILLS =~ ^[0-9]+$ ]] || { echo "kill_resume.sh: --kills must be a number" >&2; exit 2; }
SEED=${SEED:-$RANDOM}
RANDOM=$SEED  # the delays are reproducible from the printed seed (timing aside)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/nq_kill_resume.XXXXXX")
[[ $KEEP -eq 1 ]] || trap 'rm -rf "$ROOT"' EXIT
echo "kill_resume: seed $SEED, $KILLS kill(s) per command, work in $ROOT"

# shellcheck source=common.sh
source "$HERE/common.sh"

make_tiny_base "$NQ" "$HERE" "$ROOT" 1

# The command lines (without --out): small, but a few dozen checkpointed steps.
train_args=(train --data "$DATA" --base "$ROOT/base" --method nextquill --epochs 4 --batch-size 4
  --threads 1 --ckpt-every 1 --seed 7)
pretrain_args=(pretrain --data "$DATA" --config "$ROOT/tiny.json" --steps 40 --threads 1 --seed 5)

# A finished run: train removes its checkpoint last; both write nextquill.json
# last among the run's files (and a fresh start removes an old one first).
finished() {  # kind dir
  [[ -f $2/nextquill.json ]] && { [[ $1 == pretrain ]] || [[ ! -e $2/checkpoint.safetensors ]]; }
}

sleep_ms() { sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"; }

total_kills=0
for kind in ${COMMANDS//,/ }; do
  case $kind in
    train) args=("${train_args[@]}") ;;
    pretrain) args=("${pretrain_args[@]}") ;;
    *) fail "unknown command '$kind' in --commands" ;;
  esac
  ref="$ROOT/$kind-reference"
  t0=$(date +%s%N)
  "$NQ" "${args[@]}" --out "$ref" >"$ROOT/$kind-reference.log" 2>&1 ||
    fail "$kind: the reference run failed: $(tail -n 5 "$ROOT/$kind-reference.log")"
  ref_ms=$((($(date +%s%N) - t0) / 1000000 + 1))
  compare=(model.safetensors losses.tsv)
  [[ $kind == pretrain ]] && compare+=(encoder.json vocab.bpe special_tokens.json)
  echo "$kind: reference run in $ref_ms ms; kills land uniformly in [0, $ref_ms] ms after the start"

  # A torn loss-log line, as a kill in the middle of a buffered write leaves
  # it: stopped at step 2 (checkpoint), a partial line for step 13 appended;
  # the resumed run must drop it ("1" would parse as step 1 if taken as a line).
  torn="$ROOT/$kind-torn"
  "$NQ" "${args[@]}" --out "$torn" --stop-after 2 >"$torn.log" 2>&1 || fail "$kind: --stop-after 2: $(tail -n 3 "$torn.log")"
  printf '1' >>"$torn/losses.tsv"
  "$NQ" "${args[@]}" --out "$torn" --resume >>"$torn.log" 2>&1 || fail "$kind: resume after a torn log line: $(tail -n 3 "$torn.log")"
  for f in "${compare[@]}"; do
    cmp -s "$ref/$f" "$torn/$f" || fail "$kind: after a torn loss-log line, $f differs from the uninterrupted run's"
  done
  echo "  a torn last line of losses.tsv is dropped on resume: ${compare[*]} identical to the reference"

  kills=0 rounds=0 fresh=0 resumed=0 no_ckpt_kills=0
  while [[ $kills -lt $KILLS ]]; do
    rounds=$((rounds + 1))
    [[ $rounds -le $((KILLS * 20 + 5)) ]] || fail "$kind: $rounds rounds without $KILLS kills landing"
    out="$ROOT/$kind-round$rounds"
    starts=0
    while ! finished "$kind" "$out"; do
      starts=$((starts + 1))
      [[ $starts -le 500 ]] || fail "$kind: round $rounds did not complete after $starts starts"
      mode=()
      if [[ -e $out/checkpoint.safetensors ]]; then
        mode=(--resume)
        resumed=$((resumed + 1))
      else
        fresh=$((fresh + 1))
      fi
      log="$ROOT/$kind-round$rounds-start$starts.log"
      if [[ $kills -ge $KILLS ]]; then  # enough kills: let this round complete
        "$NQ" "${args[@]}" --out "$out" "${mode[@]}" >"$log" 2>&1
        rc=$?
      else
        "$NQ" "${args[@]}" --out "$out" "${mode[@]}" >"$log" 2>&1 &
        pid=$!
        delay=$((((RANDOM << 15) | RANDOM) % ref_ms))
        sleep_ms "$delay"
        kill -KILL "$pid" 2>/dev/null
        { wait "$pid"; } 2>/dev/null
        rc=$?
      fi
      if [[ $rc -eq 137 ]]; then
        kills=$((kills + 1))
        state="no checkpoint"
        if [[ -e $out/checkpoint.safetensors ]]; then
          state=$("$CHECKER" "$out/checkpoint.safetensors" 2>&1) ||
            fail "$kind: after kill $kills (at $delay ms) the checkpoint is not valid: $state"
          state=${state##*: }
        else
          no_ckpt_kills=$((no_ckpt_kills + 1))
        fi
        printf '  kill %2d: round %d, start %d (%s), after %4d ms: %s\n' "$kills" "$rounds" "$starts" \
          "${mode[*]:-fresh}" "$delay" "$state"
      elif [[ $rc -ne 0 ]]; then
        fail "$kind: start $starts of round $rounds exited with $rc: $(tail -n 5 "$log")"
      fi
    done
    for f in "${compare[@]}"; do
      cmp -s "$ref/$f" "$out/$f" || fail "$kind: round $rounds: $f differs from the uninterrupted run's"
    done
    tmps=$(find "$out" -name '*.tmp.*')
    [[ -z $tmps ]] || fail "$kind: round $rounds left temporary files: $tmps"
    if [[ $kind == train && -e $out/checkpoint.safetensors ]]; then
      fail "$kind: round $rounds: the finished run still holds its checkpoint"
    fi
    echo "  round $rounds complete after $starts start(s): ${compare[*]} identical to the reference"
  done
  echo "$kind: $kills kills ($no_ckpt_kills before any checkpoint) in $rounds round(s), $fresh fresh" \
    "start(s), $resumed resume(s): every checkpoint valid, every completed run identical"
  total_kills=$((total_kills + kills))
done
echo "kill_resume: PASS ($total_kills kills, seed $SEED)"
