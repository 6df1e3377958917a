#!/usr/bin/env python3
"""PyTorch peer for the end-to-end GPT training-step benchmark (bench_step).

    python3 bench/peers/torch_gpt.py --config S|M --threads N --steps N --warmup N [--json]

Model: GPT-2 layout in plain torch (nanoGPT-like): token + learned position
embeddings, pre-norm blocks (LayerNorm with bias -> fused qkv Linear with bias
-> F.scaled_dot_product_attention(is_causal=True) -> output Linear; LayerNorm
-> Linear d->4d -> GELU(tanh) -> Linear 4d->d), final LayerNorm, head tied to
the token embedding.  fp32, no dropout, init normal(0, 0.02), zero biases.
Optimizer: torch.optim.AdamW(lr 3e-4, betas (0.9, 0.95), weight decay 0.1 on
the >= 2-D parameters, 0 on biases / LayerNorm), fused CPU kernel by default
(the fastest of default / foreach / fused on this machine; --adamw to change).

Configs  S: vocab 256,  4 layers, 4 heads, d 256, context 256, batch 8
         M: vocab 8192, 6 layers, 6 heads, d 384, context 256, batch 8
One timed step = zero_grad(set_to_none=True) + forward + cross-entropy loss +
backward + optimizer.step(), on pre-generated random token batches (seed 1234).
Reported: median step seconds over --steps timed steps after --warmup untimed
ones, tokens/s = B*T / median, peak RSS (ru_maxrss, whole process incl. the
torch import; the JSON's extra rss_after_import_mb is the import alone), the
last loss.  Thread settings are applied before torch is
imported: OMP/MKL/OPENBLAS_NUM_THREADS = N, OMP_WAIT_POLICY=PASSIVE, then
torch.set_num_threads(N).
"""
import argparse
import os

CONFIGS = {
    "S": dict(vocab=256, layers=4, heads=4, d=256, ctx=256, batch=8),
    "M": dict(vocab=8192, layers=6, heads=6, d=384, ctx=256, batch=8),
}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="S")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
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


def main():
    torch.set_num_threads(ARGS.threads)
    cfg = CONFIGS[ARGS.config]
    B, T, V = cfg["batch"], cfg["ctx"], cfg["vocab"]
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
    batches = [(torch.randint(0, V, (B, T), generator=g),
                torch.randint(0, V, (B, T), generator=g)) for _ in range(n_batches)]

    def step(i):
        x, y = batches[i % n_batches]
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, V), y.view(-1))
        loss.backward()
        opt.step()
        return loss

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
        "impl": "torch", "version": torch.__version__, "config": ARGS.config,
        "threads": ARGS.threads, "step_s": step_s, "tokens_per_s": B * T / step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loss": loss.item() if loss is not None else None,
        # extras, not in the shared key set: RSS of the torch import alone, and
        # process CPU seconds per timed step (all threads; with 1 thread it is a
        # load-robust estimate of the uncontended step time)
        "rss_after_import_mb": RSS_AFTER_IMPORT_MB,
        "cpu_s_per_step": cpu_s,
    }
    if ARGS.json:
        print(json.dumps(res))
    else:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"torch {res['version']}  config {ARGS.config} {cfg}  params {n_params}")
        print(f"threads {ARGS.threads}  adamw {ARGS.adamw}  steps {ARGS.steps} (warmup {ARGS.warmup})")
        print(f"median step {step_s * 1e3:.1f} ms  ({res['tokens_per_s']:.0f} tok/s)  "
              f"min {min(times) * 1e3:.1f} ms  max {max(times) * 1e3:.1f} ms  "
              f"cpu {cpu_s * 1e3:.1f} ms/step")
        print(f"peak RSS {res['peak_rss_mb']:.1f} MB (after import torch: "
              f"{RSS_AFTER_IMPORT_MB:.1f} MB)  last loss {res['loss']:.4f}")


if __name__ == "__main__":
    main()
