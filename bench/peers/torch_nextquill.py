#!/usr/bin/env python3
"""PyTorch peer for the NextQuill training-step benchmark (bench_nextquill).

    python3 bench/peers/torch_nextquill.py --config S|M --threads N --steps N --warmup N
                                           --method context-sft|nextquill [--json]

Model, configs, optimizer and thread setup are those of bench/peers/torch_gpt.py
(GPT-2 layout, fp32, tied head, AdamW lr 3e-4 betas (0.9, 0.95) wd 0.1 on >= 2-D
parameters, fused CPU AdamW by default; OMP/MKL/OPENBLAS_NUM_THREADS = N and
OMP_WAIT_POLICY=PASSIVE set before torch is imported, torch.set_num_threads(N)).
The model code is repeated here because torch_gpt.py parses its own command
line at import time; it differs only in that the final LayerNorm + tied head
are applied by the caller to the gathered target rows.

Synthetic batch (seed 1234, 4 pre-generated batches cycled), batch 8, no
padding, token ids uniform in [0, vocab):
  history h (128) + prompt x (64) + target y (64)
  with-history sequence  s_h = [h, x, y[:-1]]  (255 tokens)
  no-history sequence    s_0 = [x, y[:-1]]     (127 tokens, the same x and y)
The last target token is not fed (nothing predicts from it), exactly as
nextquill's collate_pairs builds its inputs; target token y_t is predicted at
the position just before it: rows 191..254 of s_h, rows 63..126 of s_0
(N = 8 * 64 = 512 rows).

Methods (one timed step = zero_grad(set_to_none) + forward(s) + loss +
backward + optimizer.step()):
  context-sft  forward(s_h); z_h = head(ln_f(hidden_h[:, 191:255])); loss =
               mean CE(z_h, y).
  nextquill    forward(s_h) and forward(s_0) (two passes of the same model,
               both with gradients); z_h, z_0 = head(ln_f(target rows));
               ce_h = CE(z_h, y)        (per row, = -log p_h(y))
               ce_p = CE(z_h - z_0, y)  (per row, = -log softmax(z_h - z_0)[y])
               p_h = exp(-ce_h), p_0 = exp(-CE(z_0, y))   (no grad)
               w = where(p_h - p_0 > 0.05, 0.9, 0.1)      (no grad)
               L_n = sum(w ce_h) / sum(w);  L_p = sum(w ce_p) / sum(w)
               loss = L_n + 0.1 L_p   (paper Eq. 6-8 form: L_p is w-weighted)
               computed as sum(w * (ce_h + 0.1 ce_p)) / sum(w).

JSON keys: impl ("torch"), version, method, config, threads, step_s (median of
--steps timed steps after --warmup), tokens_per_s = (tokens_h + tokens_0) /
step_s (tokens fed through the model per second), peak_rss_mb (ru_maxrss, whole
process), loss (last step), tokens_h = 8 * 255 (with-history tokens per step),
tokens_0 = 8 * 127 for nextquill / 0 for context-sft (no-history tokens per
step); extras rss_after_import_mb, cpu_s_per_step, target_tokens.
"""
import argparse
import os

CONFIGS = {
    "S": dict(vocab=256, layers=4, heads=4, d=256, ctx=256, batch=8),
    "M": dict(vocab=8192, layers=6, heads=6, d=384, ctx=256, batch=8),
}
HIST, PROMPT, TARGET = 128, 64, 64
ALPHA, LAMBDA_W, EPS_W, DELTA = 0.1, 0.9, 0.1, 0.05


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="S")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--method", choices=["context-sft", "nextquill"], default="nextquill")
    ap.add_argument("--adamw", choices=["fused", "foreach", "default"], default="fused",
                    help="AdamW implementation (default: fused)")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("need --steps >= 1, --warmup >= 0, --threads >= 1")
    return args


ARGS = parse_args()
# Must happen before torch (and its OpenMP / BLAS runtimes) is loaded.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

RSS_AFTER_IMPORT_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


from gpt_model import GPT  # noqa: E402


def nextquill_loss(z_h, z_0, y):
    """Paper-form NextQuill loss on target rows: z_h, z_0 (N, V) fp32 logits, y (N,)."""
    ce_h = F.cross_entropy(z_h, y, reduction="none")            # -log p_h(y)
    ce_p = F.cross_entropy(z_h - z_0, y, reduction="none")      # -log softmax(z_h - z_0)[y]
    with torch.no_grad():
        p_h = torch.exp(-ce_h.detach())
        p_0 = torch.exp(-F.cross_entropy(z_0.detach(), y, reduction="none"))
        w = torch.where(p_h - p_0 > DELTA, LAMBDA_W, EPS_W).to(ce_h.dtype)
        w = w / w.sum()                                          # sum(w) >= 0.1 * N > 0
    # L_n + alpha * L_p with both sums normalised by sum(w)
    return (w * (ce_h + ALPHA * ce_p)).sum()


def main():
    torch.set_num_threads(ARGS.threads)
    cfg = CONFIGS[ARGS.config]
    B, V = cfg["batch"], cfg["vocab"]
    T_h, T_0 = HIST + PROMPT + TARGET - 1, PROMPT + TARGET - 1  # fed tokens: 255, 127
    assert T_h <= cfg["ctx"]
    torch.manual_seed(1234)
    model = GPT(**cfg)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    kw = {"fused": {"fused": True}, "foreach": {"foreach": True}, "default": {}}[ARGS.adamw]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), **kw)

    g = torch.Generator().manual_seed(1234)
    n_batches = 4
    batches = []
    for _ in range(n_batches):
        h = torch.randint(0, V, (B, HIST), generator=g)
        x = torch.randint(0, V, (B, PROMPT), generator=g)
        y = torch.randint(0, V, (B, TARGET), generator=g)
        s_h = torch.cat([h, x, y[:, :-1]], dim=1).contiguous()   # (B, 255)
        s_0 = torch.cat([x, y[:, :-1]], dim=1).contiguous()      # (B, 127)
        batches.append((s_h, s_0, y.reshape(-1).contiguous()))
    start_h, start_0 = T_h - TARGET, T_0 - TARGET  # 191, 63

    def step_sft(i):
        s_h, _, y = batches[i % n_batches]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model.target_logits(s_h, start_h, TARGET), y)
        loss.backward()
        opt.step()
        return loss

    def step_nq(i):
        s_h, s_0, y = batches[i % n_batches]
        opt.zero_grad(set_to_none=True)
        z_h = model.target_logits(s_h, start_h, TARGET)
        z_0 = model.target_logits(s_0, start_0, TARGET)
        loss = nextquill_loss(z_h, z_0, y)
        loss.backward()
        opt.step()
        return loss

    step = step_nq if ARGS.method == "nextquill" else step_sft
    tokens_h = B * T_h
    tokens_0 = B * T_0 if ARGS.method == "nextquill" else 0

    for i in range(ARGS.warmup):
        step(i)
    times, loss = [], None
    cpu0 = time.process_time()
    for i in range(ARGS.steps):
        t0 = time.perf_counter()
        loss = step(ARGS.warmup + i)
        times.append(time.perf_counter() - t0)
    cpu_s = (time.process_time() - cpu0) / ARGS.steps
    step_s = statistics.median(times)
    res = {
        "impl": "torch", "version": torch.__version__, "method": ARGS.method,
        "config": ARGS.config, "threads": ARGS.threads, "step_s": step_s,
        "tokens_per_s": (tokens_h + tokens_0) / step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loss": loss.item() if loss is not None else None,
        "tokens_h": tokens_h, "tokens_0": tokens_0,
        # extras, not in the shared key set
        "target_tokens": B * TARGET,
        "rss_after_import_mb": RSS_AFTER_IMPORT_MB,
        "cpu_s_per_step": cpu_s,
    }
    if ARGS.json:
        print(json.dumps(res))
    else:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"torch {res['version']}  method {ARGS.method}  config {ARGS.config} {cfg}  "
              f"params {n_params}")
        print(f"threads {ARGS.threads}  adamw {ARGS.adamw}  steps {ARGS.steps} "
              f"(warmup {ARGS.warmup})  tokens/step h {tokens_h} + 0 {tokens_0}")
        print(f"median step {step_s * 1e3:.1f} ms  ({res['tokens_per_s']:.0f} tok/s)  "
              f"min {min(times) * 1e3:.1f} ms  max {max(times) * 1e3:.1f} ms  "
              f"cpu {cpu_s * 1e3:.1f} ms/step")
        print(f"peak RSS {res['peak_rss_mb']:.1f} MB (after import torch: "
              f"{RSS_AFTER_IMPORT_MB:.1f} MB)  last loss {res['loss']:.4f}")


if __name__ == "__main__":
    main()
