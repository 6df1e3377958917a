#!/usr/bin/env python3
"""PyTorch eager peer of bench/gpu/gpt2_train.cpp (GPU training-step benchmark).

    python3 bench/peers/torch_gpt2_gpu.py [--config 124M|S|M] [--batch B] [--ctx T]
        [--steps N] [--warmup N] [--dtype bf16|fp32] [--tf32] [--device cuda|cpu]
        [--adamw default|foreach|fused] [--json]

Model: bench/peers/gpt_model.py (GPT-2 layout in plain torch: token + learned
position embeddings, pre-norm blocks with a fused qkv Linear,
F.scaled_dot_product_attention(is_causal=True), GELU-tanh MLP, final LayerNorm,
head tied to the token embedding).

Configs  124M: vocab 50257, 12 layers, 12 heads, d 768, context 1024, batch 8
         S:    vocab 256,    4 layers,  4 heads, d 256, context 256,  batch 8
         M:    vocab 8192,   6 layers,  6 heads, d 384, context 256,  batch 8
One step = zero_grad(set_to_none=True) + forward + cross-entropy + backward +
optimizer.step() on one of four pre-generated random batches (on the device).
bf16: forward and loss under torch.autocast(device, torch.bfloat16) with fp32
parameters (master weights); backward and step outside it. fp32: no autocast;
TF32 matmuls only with --tf32 (PyTorch's default is off).
Optimizer: torch.optim.AdamW(lr 3e-4, betas (0.9, 0.95), weight decay 0.1 on
>= 2-D parameters, 0 on the rest), the default implementation (foreach on
CUDA) unless --adamw says otherwise. No torch.compile.
Timing: torch.cuda.synchronize(), the timed steps back to back,
torch.cuda.synchronize(); step_ms = elapsed / steps. Losses are read after the
timed loop. Prints one JSON line with the same keys as gpt2_train --json.
Needs only torch.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_model import GPT  # noqa: E402

CONFIGS = {
    "124M": dict(vocab=50257, layers=12, heads=12, d=768, ctx=1024, batch=8),
    "S": dict(vocab=256, layers=4, heads=4, d=256, ctx=256, batch=8),
    "M": dict(vocab=8192, layers=6, heads=6, d=384, ctx=256, batch=8),
}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="124M")
    ap.add_argument("--batch", type=int, default=0, help="default: the config's")
    ap.add_argument("--ctx", type=int, default=0, help="default: the config's")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 for fp32 matmuls")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0 or a.batch < 0 or a.ctx < 0:
        ap.error("need --steps >= 1, --warmup >= 0, --batch/--ctx >= 0")
    return a


def main():
    a = parse_args()
    cfg = dict(CONFIGS[a.config])
    B = a.batch or cfg["batch"]
    T = a.ctx or cfg["ctx"]
    if T > cfg["ctx"]:
        sys.exit(f"torch_gpt2_gpu: --ctx {T} exceeds the config's context {cfg['ctx']}")
    V, L, D = cfg["vocab"], cfg["layers"], cfg["d"]
    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_gpt2_gpu: no CUDA device visible to torch", file=sys.stderr)
        sys.exit(3)
    dev = torch.device(a.device)
    bf16 = a.dtype == "bf16"
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32

    torch.manual_seed(1234)
    model = GPT(**cfg).to(dev)  # fp32 parameters: the master weights
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    kw = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[a.adamw]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), **kw)

    g = torch.Generator().manual_seed(42)
    n_batches = 4
    batches = []
    for _ in range(n_batches):
        data = torch.randint(0, V, (B, T + 1), generator=g)
        batches.append((data[:, :T].contiguous().to(dev), data[:, 1:].contiguous().to(dev)))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step(i):
        x, y = batches[i % n_batches]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, V), y.view(-1))  # fp32 under autocast
        loss.backward()
        opt.step()
        return loss.detach()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses = [step(i) for i in range(a.warmup)]
    sync()
    t0 = time.perf_counter()
    for i in range(a.steps):
        losses.append(step(a.warmup + i))
    sync()
    elapsed = time.perf_counter() - t0

    # Where a step's time goes: the same steps again, synchronising after each
    # phase (as gpt2_train.cpp does).
    ph = [0.0, 0.0, 0.0]
    for i in range(a.steps):
        x, y = batches[i % n_batches]
        p0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
        sync()
        p1 = time.perf_counter()
        loss.backward()
        sync()
        p2 = time.perf_counter()
        opt.step()
        sync()
        p3 = time.perf_counter()
        ph = [ph[0] + p1 - p0, ph[1] + p2 - p1, ph[2] + p3 - p2]

    lv = [float(x.item()) for x in losses]
    finite = all(math.isfinite(x) for x in lv)
    step_s = elapsed / a.steps
    n_params = sum(p.numel() for p in model.parameters())
    res = {
        "impl": "torch", "version": torch.__version__, "bench": "gpt2_train", "config": a.config,
        "device": a.device,
        "device_name": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "dtype": a.dtype, "tf32": a.tf32, "loss_kind": "full", "adamw": a.adamw,
        "batch": B, "ctx": T, "layers": L, "d_model": D, "heads": cfg["heads"], "vocab": V,
        "params": n_params, "warmup": a.warmup, "steps": a.steps,
        "step_ms": step_s * 1e3, "tokens_per_s": B * T / step_s,
        # 6N + 12*L*T*d, as gpt2_train.cpp computes it
        "flops_per_token": 6.0 * n_params + 12.0 * L * T * D,
        "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0.0,
        "fwd_ms": ph[0] * 1e3 / a.steps, "bwd_ms": ph[1] * 1e3 / a.steps, "opt_ms": ph[2] * 1e3 / a.steps,
        "loss_first": lv[0], "loss_last": lv[-1], "finite": finite,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"torch {res['version']}, {a.config} on {res['device_name']}, {a.dtype}"
              f"{' (tf32)' if a.tf32 else ''}, B={B} T={T}, {n_params} params, adamw {a.adamw}")
        print(f"{a.steps} timed steps after {a.warmup} warm-up: {res['step_ms']:.2f} ms/step, "
              f"{res['tokens_per_s']:.0f} tokens/s, peak device memory {res['peak_mem_mb']:.0f} MiB")
        print(f"loss first {lv[0]:.4f}, last {lv[-1]:.4f}{'' if finite else '  NOT FINITE'}")
    sys.exit(0 if finite else 1)


if __name__ == "__main__":
    main()
