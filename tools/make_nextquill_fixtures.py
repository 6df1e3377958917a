#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for the NextQuill loss tests.

Run from anywhere:
    python3 tools/make_nextquill_fixtures.py            # writes tests/fixtures/nextquill/*.safetensors
    python3 tools/make_nextquill_fixtures.py --out DIR  # writes somewhere else

Needs: torch (CPU), safetensors, numpy.

What is tested
--------------
The NextQuill losses on *target-row* logits.  A batch of B examples yields N
target rows (rows where a gold token is predicted; rows with y = -100 are
ignored).  For every row t:
  z_h[t]  (V)  logits with the user history in the prompt
  z_0[t]  (V)  logits without the history
  y[t]         gold token id, or -100
  example[t]   which example (0..B-1) the row belongs to
Optional ze_h, ze_0 (N,V): logits of a frozen "fixed" estimator.  With the
default dynamic estimator ze_h = z_h, ze_0 = z_0 (detached).

  dce_t   = softmax(ze_h_t)[y_t] - softmax(ze_0_t)[y_t]        (0 if ignored)
  w_t     = threshold: lambda if dce_t > delta (strict) else epsilon
            js:        KL(p||m) + KL(q||m), p = softmax(ze_h_t),
                       q = softmax(ze_0_t), m = (p+q)/2 (full vocabulary)
            uniform:   1
            w_t = 0 at ignored rows; w never carries gradient.
  CE_n,t  = logsumexp(z_h_t) - z_h_t[y_t]
  d_t     = z_h_t - z_0_t      (z_0 detached when stop_grad_z0)
  CE_p,t  = logsumexp(d_t) - d_t[y_t]
  L_n     = R(w_n, CE_n),  w_n = w if weighted_ln else 1(valid)
  L_p     = R(w_p, CE_p),  w_p = w if weighted_lp else 1(valid)
  R(w,c)  = weighted_mean: sum(w c) / sum(w)   (0 if sum(w) == 0)
            per_example:   sum(w c) / B        (paper's 1/|D| form)
            token_mean:    sum(w c) / n_valid  (0 if n_valid == 0)
  loss    = L_n + alpha * L_p;  alpha == 0 means L_p is not computed at all
            and the stored l_p is 0.
Preset `sft` is different: loss = l_n = mean CE(z_0, y) over valid rows
(gradient only to z_0), l_p = 0.  dce and w (= 1(valid)) are still stored.

Presets (defaults delta 0.05, lambda 0.9, epsilon 0.1, dynamic estimator,
stop_grad_z0 off, norm weighted_mean):
  sft             mean CE of z_0
  context-sft     uniform, alpha 0                   (mean CE of z_h)
  mce-only        uniform for L_n and L_p, alpha 0.1
  dce-only        threshold w on L_n, alpha 0
  mce-dce         L_n uniform, L_p threshold-weighted, alpha 0.1
  nextquill       threshold, weighted L_n and L_p, alpha 0.1   (paper)
  nextquill-code  threshold, weighted L_n, unweighted L_p, alpha 0.1
                  (official CustomTrainer3).  Its file also holds
                  `code_loss`: the same loss recomputed by literally following
                  CustomTrainer3 (full softmax, gather, (p1-p2) > 0.05,
                  where(0.9, 0.1), 0 at -100, w / w.sum(),
                  sum(w * CE_none) + 0.1 * CrossEntropyLoss()(z_h - z_0, y));
                  both agree to 1e-12.

File format
-----------
One .safetensors file per case, written by tools/fixture_io.save_fixture
(sorted metadata keys, tensors in name order, byte-reproducible).
  inputs   z_h, z_0 (N,V) F64; y, example (N) I64; B () I64;
           ze_h, ze_0 (N,V) F64 only in the fixed-estimator case
  outputs  dce (N), w (N) (raw weights, before normalisation),
           l_n, l_p, loss () F64,
           grad_z_h, grad_z_0 (N,V) F64 = d loss / d z (zeros where no
           gradient flows), code_loss () F64 (nextquill_code only)
  metadata (strings) case, seed, preset, alpha, delta, lambda, epsilon, rule,
           weighted_ln, weighted_lp, norm, stop_grad_z0 ("1"/"0"),
           estimator (dynamic|fixed), B, N, V, n_valid, inputs, outputs,
           definition, note, torch_version.  Floats are written with repr().
All math is float64.  Each case has its own seed.  Except where a case pins a
row exactly on the threshold (delta_hit, empty_history), every valid row has
|dce - delta| > 0.01 and |dce| > 0.01, so a float32 recomputation gives the
same threshold weights; the script checks that a float32 rerun matches to 1e-5.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import REPO_ROOT, dir_report, save_fixture  # noqa: E402

DT = torch.float64
IGNORE = -100
MARGIN = 0.01

DEFINITION = (
    "dce=softmax(ze_h)[y]-softmax(ze_0)[y] (0 if y=-100; ze=z detached if estimator=dynamic); "
    "w: threshold=lambda if dce>delta (strict) else epsilon | js=KL(p||m)+KL(q||m), "
    "p=softmax(ze_h), q=softmax(ze_0), m=(p+q)/2 | uniform=1; w=0 at ignored rows, no gradient; "
    "CE_n=lse(z_h)-z_h[y]; d=z_h-z_0 (z_0 detached if stop_grad_z0); CE_p=lse(d)-d[y]; "
    "L_n=R(w if weighted_ln else valid, CE_n); L_p=R(w if weighted_lp else valid, CE_p); "
    "R: weighted_mean=sum(w*CE)/sum(w) (0 if sum(w)=0) | per_example=sum(w*CE)/B | "
    "token_mean=sum(w*CE)/n_valid (0 if n_valid=0); loss=L_n+alpha*L_p; "
    "alpha=0: L_p not computed, l_p stored as 0; preset sft: loss=l_n=mean CE(z_0,y) over valid rows, l_p=0; "
    "grad_z_* = d loss/d z (0 where no gradient flows)")

# Option values per preset.  Under rule "uniform" the weighted_* flags make no
# difference (w = 1 on valid rows either way).
PRESETS = {
    "sft":            dict(rule="uniform", weighted_ln=True, weighted_lp=True, alpha=0.0),
    "context-sft":    dict(rule="uniform", weighted_ln=True, weighted_lp=True, alpha=0.0),
    "mce-only":       dict(rule="uniform", weighted_ln=True, weighted_lp=True, alpha=0.1),
    "dce-only":       dict(rule="threshold", weighted_ln=True, weighted_lp=True, alpha=0.0),
    "mce-dce":        dict(rule="threshold", weighted_ln=False, weighted_lp=True, alpha=0.1),
    "nextquill":      dict(rule="threshold", weighted_ln=True, weighted_lp=True, alpha=0.1),
    "nextquill-code": dict(rule="threshold", weighted_ln=True, weighted_lp=False, alpha=0.1),
}
DEFAULTS = dict(delta=0.05, lam=0.9, eps=0.1, norm="weighted_mean",
                stop_grad_z0=False, estimator="dynamic")


def options(preset, **over):
    opt = dict(DEFAULTS, preset=preset, **PRESETS[preset])
    for k, v in over.items():
        assert k in opt, k
        opt[k] = v
    return opt


# ---------------------------------------------------------------- the loss
def gold(z, ys):
    return z.gather(1, ys[:, None])[:, 0]


def weights(ze_h, ze_0, y, opt):
    """dce and the raw weights w (no gradient)."""
    with torch.no_grad():
        valid = y != IGNORE
        ys = torch.where(valid, y, 0)
        p = torch.softmax(ze_h, dim=-1)
        q = torch.softmax(ze_0, dim=-1)
        zero = torch.zeros((), dtype=ze_h.dtype)
        dce = torch.where(valid, gold(p, ys) - gold(q, ys), zero)
        if opt["rule"] == "threshold":
            w = torch.where(dce > opt["delta"], torch.full_like(dce, opt["lam"]),
                            torch.full_like(dce, opt["eps"]))
        elif opt["rule"] == "js":
            m = 0.5 * (p + q)
            w = (p * (p.log() - m.log())).sum(-1) + (q * (q.log() - m.log())).sum(-1)
        elif opt["rule"] == "uniform":
            w = torch.ones_like(dce)
        else:
            raise ValueError(opt["rule"])
        w = torch.where(valid, w, zero)
    return dce, w


def reduce(w, ce, norm, B, n_valid):
    num = (w * ce).sum()
    if norm == "weighted_mean":
        den = w.sum()
        return num / den if den.item() != 0 else num * 0.0
    if norm == "per_example":
        return num / B
    if norm == "token_mean":
        return num / n_valid if n_valid > 0 else num * 0.0
    raise ValueError(norm)


def nq_loss(z_h, z_0, y, B, opt, ze_h=None, ze_0=None):
    """Returns dce, w, l_n, l_p, loss (the last three carry gradient)."""
    valid = y != IGNORE
    vf = valid.to(z_h.dtype)
    n_valid = int(valid.sum())
    ys = torch.where(valid, y, 0)  # ignored rows: any index, weight is 0
    if opt["estimator"] == "dynamic":
        ze_h, ze_0 = z_h, z_0
    dce, w = weights(ze_h.detach(), ze_0.detach(), y, opt)
    zero = torch.zeros((), dtype=z_h.dtype)  # l_p when it is not computed
    if opt["preset"] == "sft":
        ce0 = torch.logsumexp(z_0, -1) - gold(z_0, ys)
        l_n = reduce(vf, ce0, "weighted_mean", B, n_valid)
        return dce, w, l_n, zero, l_n
    ce_n = torch.logsumexp(z_h, -1) - gold(z_h, ys)
    l_n = reduce(w if opt["weighted_ln"] else vf, ce_n, opt["norm"], B, n_valid)
    if opt["alpha"] == 0:
        return dce, w, l_n, zero, l_n
    d = z_h - (z_0.detach() if opt["stop_grad_z0"] else z_0)
    ce_p = torch.logsumexp(d, -1) - gold(d, ys)
    l_p = reduce(w if opt["weighted_lp"] else vf, ce_p, opt["norm"], B, n_valid)
    return dce, w, l_n, l_p, l_n + opt["alpha"] * l_p


def code_loss(z_h, z_0, labels):
    """CustomTrainer3 arithmetic, step by step, on already shifted+flattened rows.
    The official code indexes the softmax with the raw label (-100 wraps to
    column V-100 for V = 151936).  Here V < 100, so ignored rows index column 0
    instead; they are zeroed right after, exactly as in the original."""
    inp = torch.softmax(z_h, dim=-1)
    target = torch.softmax(z_0, dim=-1)
    idx = torch.where(labels == IGNORE, 0, labels)
    rows = torch.arange(labels.shape[0])
    p1 = inp[rows, idx]
    p2 = target[rows, idx]
    compare = (p1 - p2) > 0.05
    # (scalar where() would build float32 0.9/0.1; keep the constants in the
    # logits' dtype so the float64 comparison is exact)
    w = torch.where(compare, torch.tensor(0.9, dtype=z_h.dtype), torch.tensor(0.1, dtype=z_h.dtype))
    w = torch.where(labels == IGNORE, 0.0, w)
    w = w / w.sum()
    ce_none = torch.nn.CrossEntropyLoss(reduction="none")(z_h, labels)
    loss_diff = torch.nn.CrossEntropyLoss()(z_h - z_0, labels)
    loss = (w * ce_none).sum()
    loss = loss + 0.1 * loss_diff
    return loss


def evaluate(inputs, opt):
    """Forward + gradients in the dtype of the inputs."""
    z_h = inputs["z_h"].clone().requires_grad_(True)
    z_0 = inputs["z_0"].clone().requires_grad_(True)
    extra = {}
    if opt["estimator"] == "fixed":
        extra = dict(ze_h=inputs["ze_h"], ze_0=inputs["ze_0"])
    dce, w, l_n, l_p, loss = nq_loss(z_h, z_0, inputs["y"], int(inputs["B"]), opt, **extra)
    g_h, g_0 = torch.autograd.grad(loss, [z_h, z_0], allow_unused=True)
    g_h = torch.zeros_like(z_h) if g_h is None else g_h
    g_0 = torch.zeros_like(z_0) if g_0 is None else g_0
    out = {"dce": dce, "w": w, "l_n": l_n, "l_p": l_p, "loss": loss,
           "grad_z_h": g_h, "grad_z_0": g_0}
    return {k: v.detach() + 0.0 for k, v in out.items()}  # + 0.0: no -0.0 in the files


# ---------------------------------------------------------------- inputs
def layout(g, B, n_lo=10, n_hi=20, n_ignored=2):
    """Uneven per-example target lengths; a few ignored rows, each example
    keeping at least one valid row."""
    while True:
        lengths = torch.randint(2, 9, (B,), generator=g).tolist()
        if n_lo <= sum(lengths) <= n_hi and len(set(lengths)) > 1:
            break
    example = torch.cat([torch.full((n,), b, dtype=torch.int64) for b, n in enumerate(lengths)])
    while True:
        ign = torch.randperm(len(example), generator=g)[:n_ignored]
        left = torch.ones(len(example), dtype=torch.bool)
        left[ign] = False
        if all(bool(left[example == b].any()) for b in range(B)):
            return example, ign


def dce_of(zh, z0, yy):
    return (torch.softmax(zh, -1)[yy] - torch.softmax(z0, -1)[yy]).item()


def draw_row(g, V, fixed):
    """One target row: z_0 with a moderately likely gold token, z_h = z_0 plus
    noise plus a gold-column shift spread so that dce lands on both sides of
    delta (and of 0).  Fixed estimator: ze = z + independent noise."""
    def rn(*s):
        return torch.randn(s, generator=g, dtype=DT)

    def ru(lo, hi):
        return lo + (hi - lo) * torch.rand((), generator=g, dtype=DT).item()
    yy = int(torch.randint(0, V, (), generator=g))
    z0 = 1.5 * rn(V)
    z0[yy] += ru(0.0, 2.5)
    zh = z0 + 0.5 * rn(V)
    zh[yy] += ru(-1.5, 2.5)
    ze = (zh + 0.3 * rn(V), z0 + 0.3 * rn(V)) if fixed else None
    return yy, zh, z0, ze


def make_inputs(seed, B=3, fixed=False, n_ignored=2, n_lo=10, n_hi=20):
    g = torch.Generator().manual_seed(seed)
    V = int(torch.randint(11, 18, (), generator=g))
    example, ign = layout(g, B, n_lo, n_hi, n_ignored)
    N = len(example)
    for _attempt in range(100):  # whole-case redraw if the spread is poor
        y = torch.empty(N, dtype=torch.int64)
        zh, z0 = torch.empty(N, V, dtype=DT), torch.empty(N, V, dtype=DT)
        eh, e0 = torch.empty(N, V, dtype=DT), torch.empty(N, V, dtype=DT)
        dces = []
        for t in range(N):
            for _ in range(1000):
                yy, a, b, ze = draw_row(g, V, fixed)
                dc = dce_of(*(ze if fixed else (a, b)), yy)
                if t in ign.tolist() or (abs(dc - 0.05) > MARGIN and abs(dc) > MARGIN):
                    break
            else:
                raise RuntimeError("no row with a clear dce")
            y[t], zh[t], z0[t] = yy, a, b
            if fixed:
                eh[t], e0[t] = ze
            if t not in ign.tolist():
                dces.append(dc)
        dv = torch.tensor(dces)
        if (dv > 0.05).sum() >= 3 and (dv < 0.05).sum() >= 3 and (dv < 0).sum() >= 2:
            break
    else:
        raise RuntimeError("poor dce spread")
    y[ign] = IGNORE
    t = {"z_h": zh, "z_0": z0, "y": y, "example": example,
         "B": torch.tensor(B, dtype=torch.int64)}
    if fixed:
        t.update(ze_h=eh, ze_0=e0)
    return t


# ---------------------------------------------------------------- cases
def standard(seed, preset, note="", fixed=False, **over):
    def make():
        opt = options(preset, **over)
        return make_inputs(seed, fixed=fixed), opt, note, seed
    return make


def all_masked():
    opt = options("nextquill")
    t = make_inputs(1101)
    t["y"] = torch.full_like(t["y"], IGNORE)
    return t, opt, "every y = -100: every loss is exactly 0, all gradients 0, no NaN", 1101


def delta_hit():
    opt = options("nextquill", delta=0.0)
    t = make_inputs(1102)
    valid = (t["y"] != IGNORE).nonzero()[:, 0]
    hit = valid[[0, 3, 6]]
    t["z_h"][hit] = t["z_0"][hit]
    return t, opt, (f"rows {hit.tolist()} have z_h == z_0 exactly, so dce == 0.0 exactly; "
                    "delta = 0 and the test is strict (>), so they get epsilon"), 1102


def single_token():
    opt = options("nextquill")
    g = torch.Generator().manual_seed(1103)
    V = 13
    for _ in range(1000):
        yy, zh, z0, _ze = draw_row(g, V, False)
        if dce_of(zh, z0, yy) > 0.05 + MARGIN:
            break
    t = {"z_h": zh[None].clone(), "z_0": z0[None].clone(),
         "y": torch.tensor([yy], dtype=torch.int64),
         "example": torch.zeros(1, dtype=torch.int64),
         "B": torch.tensor(1, dtype=torch.int64)}
    return t, opt, "N = 1, B = 1, dce > delta (w = lambda, normalised away)", 1103


def empty_history():
    opt = options("nextquill")
    t = make_inputs(1104)
    t["z_h"] = t["z_0"].clone()
    return t, opt, ("z_h == z_0 everywhere (empty history): dce = 0 -> every valid row "
                    "gets epsilon; d = 0 so CE_p = log V per row and l_p = log V"), 1104


CASES = {
    "sft":                   standard(1001, "sft", "loss = mean CE(z_0, y); grad_z_h = 0"),
    "context_sft":           standard(1002, "context-sft", "loss = mean CE(z_h, y); grad_z_0 = 0"),
    "mce_only":              standard(1003, "mce-only"),
    "dce_only":              standard(1004, "dce-only"),
    "mce_dce":               standard(1005, "mce-dce"),
    "nextquill":             standard(1006, "nextquill", "paper form"),
    "nextquill_code":        standard(1007, "nextquill-code",
                                      "official CustomTrainer3 form; code_loss = literal recomputation"),
    "nextquill_stopgrad":    standard(1008, "nextquill", "z_0 detached in d: grad_z_0 = 0",
                                      stop_grad_z0=True),
    "nextquill_per_example": standard(1009, "nextquill", "R = sum(w CE) / B", norm="per_example"),
    "nextquill_token_mean":  standard(1010, "nextquill", "R = sum(w CE) / n_valid",
                                      norm="token_mean"),
    "nextquill_fixed":       standard(1011, "nextquill",
                                      "frozen estimator logits ze_h, ze_0 give dce and w; "
                                      "no gradient reaches them", fixed=True, estimator="fixed"),
    "nextquill_js":          standard(1012, "nextquill", "w = KL(p||m) + KL(q||m) = 2 JSD",
                                      rule="js"),
    "nextquill_lambda_eps":  standard(1013, "nextquill",
                                      "lambda = epsilon = 0.5: equals the uniform rule",
                                      lam=0.5, eps=0.5),
    "nextquill_alpha1":      standard(1014, "nextquill", alpha=1.0),
    "dce_only_delta0":       standard(1015, "dce-only", "delta = 0: w = lambda iff dce > 0",
                                      delta=0.0),
    "all_masked":            all_masked,
    "delta_hit":             delta_hit,
    "single_token":          single_token,
    "empty_history":         empty_history,
}


# ---------------------------------------------------------------- checks
def check_case(name, inputs, opt, out):
    y = inputs["y"]
    valid = y != IGNORE
    V = inputs["z_h"].shape[1]
    for k, v in out.items():
        assert torch.isfinite(v).all(), (name, k)
        assert not torch.signbit(v[v == 0]).any(), (name, k, "negative zero")
    assert (out["w"][~valid] == 0).all() and (out["dce"][~valid] == 0).all(), name
    if opt["alpha"] == 0:
        assert out["l_p"].item() == 0.0, name
    # float32 rerun: same weights, values within 1e-5
    f32 = {k: (v.float() if v.dtype == DT else v) for k, v in inputs.items()}
    o32 = evaluate(f32, opt)
    if opt["rule"] != "js":
        assert torch.equal(o32["w"], out["w"].float()), name
    for k in out:
        err = (o32[k].double() - out[k]).abs().max().item()
        assert err < 1e-5, (name, k, err)
    if name == "all_masked":
        for k in ("l_n", "l_p", "loss", "w", "dce", "grad_z_h", "grad_z_0"):
            assert (out[k] == 0).all(), (name, k)
    if name == "delta_hit":
        hit = (inputs["z_h"] == inputs["z_0"]).all(1)
        assert hit.sum() == 3 and (out["dce"][hit] == 0.0).all(), name
        assert (out["w"][hit] == opt["eps"]).all(), name
    if name == "empty_history":
        assert (out["w"][valid] == opt["eps"]).all(), name
        assert abs(out["l_p"].item() - torch.log(torch.tensor(float(V), dtype=DT)).item()) < 1e-12
    if name == "nextquill_lambda_eps":
        ref = evaluate(inputs, dict(opt, rule="uniform"))
        assert abs(ref["loss"] - out["loss"]).item() < 1e-12, name
    if name == "context_sft":
        ce = F.cross_entropy(inputs["z_h"], y)
        assert abs(ce - out["loss"]).item() < 1e-12 and (out["grad_z_0"] == 0).all()
    if name == "sft":
        ce = F.cross_entropy(inputs["z_0"], y)
        assert abs(ce - out["loss"]).item() < 1e-12 and (out["grad_z_h"] == 0).all()
    if name == "nextquill_stopgrad":
        assert (out["grad_z_0"] == 0).all(), name
    if opt["rule"] == "threshold" and name not in ("delta_hit", "empty_history", "all_masked",
                                                   "single_token"):
        dv = out["dce"][valid]
        assert ((dv - opt["delta"]).abs() > MARGIN).all(), name
        assert (dv > opt["delta"]).sum() >= 1 and (dv <= opt["delta"]).sum() >= 1, name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "nextquill"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)  # keeps reductions bit-for-bit reproducible
    for name, make in CASES.items():
        inputs, opt, note, seed = make()
        out = evaluate(inputs, opt)
        check_case(name, inputs, opt, out)
        tensors = dict(inputs)
        tensors.update({k: v.detach() for k, v in out.items()})
        if opt["preset"] == "nextquill-code":
            z_h = inputs["z_h"].clone().requires_grad_(True)
            z_0 = inputs["z_0"].clone().requires_grad_(True)
            cl = code_loss(z_h, z_0, inputs["y"])
            cg_h, cg_0 = torch.autograd.grad(cl, [z_h, z_0])
            assert abs(cl.item() - out["loss"].item()) < 1e-12, name
            assert (cg_h - out["grad_z_h"]).abs().max() < 1e-12, name
            assert (cg_0 - out["grad_z_0"]).abs().max() < 1e-12, name
            tensors["code_loss"] = cl.detach()
        N, V = inputs["z_h"].shape
        md = {
            "case": name,
            "seed": str(seed),
            "preset": opt["preset"],
            "alpha": repr(opt["alpha"]),
            "delta": repr(opt["delta"]),
            "lambda": repr(opt["lam"]),
            "epsilon": repr(opt["eps"]),
            "rule": opt["rule"],
            "weighted_ln": "1" if opt["weighted_ln"] else "0",
            "weighted_lp": "1" if opt["weighted_lp"] else "0",
            "norm": opt["norm"],
            "stop_grad_z0": "1" if opt["stop_grad_z0"] else "0",
            "estimator": opt["estimator"],
            "B": str(int(inputs["B"])),
            "N": str(N),
            "V": str(V),
            "n_valid": str(int((inputs["y"] != IGNORE).sum())),
            "inputs": ",".join(sorted(inputs)),
            "outputs": ",".join(sorted(k for k in tensors if k not in inputs)),
            "definition": DEFINITION,
            "note": note,
            "torch_version": torch.__version__,
        }
        for k, v in tensors.items():
            assert v.dtype in (torch.float64, torch.int64), (name, k, v.dtype)
        save_fixture(os.path.join(args.out, name + ".safetensors"), tensors, md)
    total = dir_report(args.out)
    assert total < 200_000, total
    print(f"total {total} bytes in {args.out}")


if __name__ == "__main__":
    main()
