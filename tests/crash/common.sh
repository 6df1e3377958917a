# Shared by kill_resume.sh and nan_guard.sh (sourced, not run): fail, and the
# tiny dataset and base model both scripts train from.

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# make_tiny_base NQ HERE ROOT CKPT_EVERY: copies tests/fixtures/cli to ROOT/data,
# writes ROOT/tiny.json (pretraining config, a checkpoint every CKPT_EVERY steps)
# and pretrains ROOT/base for 2 steps. Sets DATA.
make_tiny_base() {
  local nq=$1 here=$2 root=$3 ckpt_every=$4
  DATA="$root/data"
  cp -r "$here/../fixtures/cli" "$DATA"
  printf '%s\n' '{"d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "d_ff": 64, "seq_len": 128,' \
    ' "num_merges": 150, "batch_size": 4, "eval_batches": 1, "valid_fraction": 0.1, "warmup": 2,' \
    " \"ckpt_every\": $ckpt_every, \"eval_every\": 5}" >"$root/tiny.json"
  "$nq" pretrain --data "$DATA" --out "$root/base" --config "$root/tiny.json" --steps 2 --threads 1 \
    >"$root/base.log" 2>&1 || fail "pretraining the base: $(tail -n 5 "$root/base.log")"
}
