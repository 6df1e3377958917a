#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for the nextquill C++ op tests.

Run from anywhere:
    python3 tools/make_fixtures.py            # writes tests/fixtures/ops/*.safetensors
    python3 tools/make_fixtures.py --out DIR  # writes somewhere else

Needs: pip install torch safetensors numpy   (CPU torch is enough)

File format
-----------
One .safetensors file per case (https://github.com/huggingface/safetensors):
8-byte little-endian header length N, N bytes of JSON header, then raw data.
  * Floating tensors are stored as F64 (all math is done in float64),
    index tensors (targets, masks) as I64.
  * Every case holds its inputs, the forward output `out`, a random upstream
    gradient `gout` (same shape as `out`) and `grad_<input>` for every
    differentiable input, i.e. d(sum(out * gout)) / d(input).
  * `__metadata__` holds strings only: `op`, op parameters (`dim`, `eps`,
    `scale`, `causal`, `ignore_index`, ...), `inputs`, `outputs`, `note`.
    Floats are written with repr() so they round-trip exactly.
Each case uses its own fixed seed, so adding a case does not change the others.
"""
import argparse
import json
import math
import os
import struct

import torch
import torch.nn.functional as F
from safetensors import safe_open

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DT = torch.float64


def randn(*shape):
    return torch.randn(tuple(shape), dtype=DT)


def uniform(lo, hi, *shape):
    return torch.rand(tuple(shape), dtype=DT) * (hi - lo) + lo


def run_case(inputs, fn, diff):
    """Forward fn(**inputs), then grads of `diff` inputs under a random gout."""
    leaves = {k: (v.clone().requires_grad_(True) if k in diff else v)
              for k, v in inputs.items()}
    out = fn(**leaves)
    gout = randn(*out.shape)
    grads = torch.autograd.grad(out, [leaves[k] for k in diff], gout)
    t = dict(inputs)
    t["out"] = out.detach()
    t["gout"] = gout
    for k, g in zip(diff, grads):
        t["grad_" + k] = g
    return t


def save_fixture(path, tensors, metadata):
    """Byte-reproducible safetensors writer (safetensors.torch.save_file
    orders __metadata__ keys randomly, which makes regenerated files churn):
    sorted keys, tensors in name order, header space-padded to 8 bytes."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        dtype = {torch.float64: ("F64", "<f8"), torch.int64: ("I64", "<i8")}[t.dtype]
        raw = t.contiguous().numpy().astype(dtype[1]).tobytes()
        header[name] = {"dtype": dtype[0], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))
    with safe_open(path, "pt") as f:  # check with the reference reader
        assert f.metadata() == metadata, path
        for name, t in tensors.items():
            assert torch.equal(f.get_tensor(name), t), (path, name)


# ---------------------------------------------------------------- cases
def softmax_case(seed, shape, dim, log, mult=1.0):
    torch.manual_seed(seed)
    x = randn(*shape) * mult
    f = F.log_softmax if log else F.softmax
    t = run_case({"x": x}, lambda x: f(x, dim=dim), ["x"])
    return t, {"op": "log_softmax" if log else "softmax", "dim": str(dim),
               "note": f"x = randn*{mult:g}"}


def layer_norm_case(seed, affine):
    torch.manual_seed(seed)
    eps = "1e-5"
    x = randn(2, 5, 16) * 2.0 + 0.5
    inputs = {"x": x}
    if affine:
        inputs["weight"] = 1.0 + 0.5 * randn(16)
        inputs["bias"] = 0.5 * randn(16)

    def fn(x, weight=None, bias=None):
        return F.layer_norm(x, (16,), weight, bias, float(eps))
    t = run_case(inputs, fn, list(inputs))
    return t, {"op": "layer_norm", "normalized_shape": "16", "eps": eps,
               "affine": "1" if affine else "0"}


def rms_norm_case(seed):
    torch.manual_seed(seed)
    eps = "1e-6"
    x = randn(2, 5, 16) * 2.0 + 0.5
    w = 1.0 + 0.5 * randn(16)

    def fn(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + float(eps)) * weight
    t = run_case({"x": x, "weight": w}, fn, ["x", "weight"])
    return t, {"op": "rms_norm", "eps": eps, "dim": "-1",
               "note": "manual: x * rsqrt(mean(x^2, -1) + eps) * weight"}


def attention(q, k, v, scale, causal, valid):
    """Masked attention; rows with no allowed key give output 0 (no NaN)."""
    T, S = q.shape[-2], k.shape[-2]
    scores = (q @ k.transpose(-1, -2)) * scale                  # (B,H,T,S)
    i = torch.arange(T).view(T, 1)
    j = torch.arange(S).view(1, S)
    allowed = torch.ones(T, S, dtype=torch.bool)
    if causal:
        allowed = j <= i + (S - T)                              # end-aligned
    allowed = allowed.view(1, 1, T, S)
    if valid is not None:
        allowed = allowed & (valid != 0).view(valid.shape[0], 1, 1, S)
    # Max over allowed keys only, detached (it cancels mathematically);
    # empty rows get 0 so nothing becomes inf/NaN.
    neg_inf = torch.full_like(scores, -math.inf)
    m = torch.where(allowed, scores, neg_inf).amax(-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(torch.where(allowed, scores - m, torch.zeros_like(scores)))
    e = e * allowed
    denom = e.sum(-1, keepdim=True)
    p = e / torch.where(denom > 0, denom, torch.ones_like(denom))
    return p @ v


def attention_case(seed, causal, pad=None, T=6, S=6):
    torch.manual_seed(seed)
    B, H, D = 2, 3, 8
    inputs = {"q": randn(B, H, T, D), "k": randn(B, H, S, D), "v": randn(B, H, S, D)}
    valid = None
    if pad is not None:
        valid = torch.ones(B, S, dtype=torch.int64)
        if pad == "left":
            valid[0, :2] = 0
        else:
            valid[0, -3:] = 0
        inputs["valid"] = valid
    scale = 1.0 / math.sqrt(D)

    def fn(q, k, v, valid=None):
        return attention(q, k, v, scale, causal, valid)
    t = run_case(inputs, fn, ["q", "k", "v"])
    md = {"op": "attention", "layout": "q (B,H,T,D), k/v (B,H,S,D)",
          "scale": repr(scale), "causal": "1" if causal else "0",
          "note": ("causal: key j allowed iff j <= i + (S - T); padded keys "
                   "disallowed; query rows with no allowed key output 0 and "
                   "get zero grads; padded query rows are NOT zeroed")}
    if pad is not None:
        md["key_padding_mask"] = "valid (B,S) int64, 1 = real token, 0 = pad"
        md["padding"] = pad
    return t, md


def cross_entropy_mean_case(seed):
    torch.manual_seed(seed)
    logits = randn(10, 13) * 2.0
    targets = torch.randint(0, 13, (10,), dtype=torch.int64)
    targets[3] = -100
    targets[7] = -100

    def fn(logits, targets):
        return F.cross_entropy(logits, targets, ignore_index=-100, reduction="mean")
    t = run_case({"logits": logits, "targets": targets}, fn, ["logits"])
    return t, {"op": "cross_entropy", "ignore_index": "-100", "reduction": "mean",
               "class_dim": "-1",
               "note": "mean over non-ignored targets; out and gout are 0-d"}


def cross_entropy_weighted_case(seed):
    torch.manual_seed(seed)
    logits = randn(3, 4, 11) * 2.0
    targets = torch.randint(0, 11, (3, 4), dtype=torch.int64)
    targets[1, 2] = -100
    weights = torch.rand(3, 4, dtype=DT)
    valid = (targets != -100).to(DT)
    gout_none = randn(3, 4)

    def per_token(lg):
        ce = F.cross_entropy(lg.reshape(-1, 11), targets.reshape(-1),
                             ignore_index=-100, reduction="none").reshape(3, 4)
        return weights * ce                                     # 0 at ignored

    reductions = {
        "sum": lambda l: l.sum(),
        "mean": lambda l: l.sum() / valid.sum(),
        "weighted_mean": lambda l: l.sum() / (weights * valid).sum(),
    }
    t = {"logits": logits, "targets": targets, "weights": weights}
    for name, red in reductions.items():
        lg = logits.clone().requires_grad_(True)
        loss = red(per_token(lg))
        (g,) = torch.autograd.grad(loss, [lg])
        t["loss_" + name] = loss.detach()
        t["grad_logits_" + name] = g
    lg = logits.clone().requires_grad_(True)
    loss_none = per_token(lg)
    (g,) = torch.autograd.grad(loss_none, [lg], gout_none)
    t["loss_none"] = loss_none.detach()
    t["gout_none"] = gout_none
    t["grad_logits_none"] = g
    return t, {"op": "cross_entropy", "ignore_index": "-100", "class_dim": "-1",
               "note": ("ce_i = -log_softmax(logits_i)[target_i], w = weights "
                        "(constant, no grad). loss_none = w*ce (0 at ignored); "
                        "loss_sum = sum w*ce; loss_mean = sum w*ce / count(valid); "
                        "loss_weighted_mean = sum w*ce / sum(w over valid). "
                        "Scalar grads use gout = 1; none uses gout_none.")}


def activation_case(seed, name):
    torch.manual_seed(seed)
    x = uniform(-4.0, 4.0, 4, 9)
    fns = {"gelu_exact": lambda x: F.gelu(x, approximate="none"),
           "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
           "silu": lambda x: F.silu(x)}
    t = run_case({"x": x}, fns[name], ["x"])
    md = {"op": name.split("_")[0]}
    if name.startswith("gelu"):
        md["approximate"] = "none" if name == "gelu_exact" else "tanh"
    return t, md


CASES = {
    "softmax_lastdim": lambda: softmax_case(101, (3, 4, 7), -1, False),
    "softmax_dim1": lambda: softmax_case(102, (3, 5, 4), 1, False),
    "softmax_large": lambda: softmax_case(103, (3, 4, 7), -1, False, 50.0),
    "log_softmax_lastdim": lambda: softmax_case(104, (3, 4, 7), -1, True),
    "log_softmax_dim1": lambda: softmax_case(105, (3, 5, 4), 1, True),
    "log_softmax_large": lambda: softmax_case(106, (3, 4, 7), -1, True, 50.0),
    "layer_norm": lambda: layer_norm_case(201, True),
    "layer_norm_noaffine": lambda: layer_norm_case(202, False),
    "rms_norm": lambda: rms_norm_case(203),
    "attention_causal": lambda: attention_case(301, True),
    "attention_causal_leftpad": lambda: attention_case(302, True, "left"),
    "attention_rightpad": lambda: attention_case(303, False, "right"),
    "attention_causal_rightpad": lambda: attention_case(304, True, "right"),
    "attention_cross": lambda: attention_case(305, True, None, T=4, S=6),
    "cross_entropy_mean": lambda: cross_entropy_mean_case(401),
    "cross_entropy_weighted": lambda: cross_entropy_weighted_case(402),
    "gelu_exact": lambda: activation_case(501, "gelu_exact"),
    "gelu_tanh": lambda: activation_case(502, "gelu_tanh"),
    "silu": lambda: activation_case(503, "silu"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "ops"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)  # keeps reductions bit-for-bit reproducible
    total = 0
    for name, make in CASES.items():
        tensors, md = make()
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        for k, v in tensors.items():
            assert v.dtype in (torch.float64, torch.int64), (name, k, v.dtype)
            assert torch.isfinite(v.to(DT)).all(), (name, k)
        md = dict(md, case=name, inputs=",".join(
            k for k in tensors if not k.startswith(("out", "gout", "grad_", "loss_"))))
        path = os.path.join(args.out, name + ".safetensors")
        save_fixture(path, tensors, md)
        size = os.path.getsize(path)
        assert size < 50_000, (name, size)
        total += size
        print(f"{name:28s} {size:7d} bytes")
    assert total < 1_000_000, total
    print(f"total {total} bytes in {args.out}")


if __name__ == "__main__":
    main()
