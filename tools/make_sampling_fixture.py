#!/usr/bin/env python3
"""Record Hugging Face logits-processor semantics for the nextquill sampler tests.

Run from anywhere:
    python3 tools/make_sampling_fixture.py            # writes tests/fixtures/sampling/processors.safetensors
    python3 tools/make_sampling_fixture.py --out FILE

Needs: torch, transformers (5.x), safetensors, numpy.

Contents (F32 unless noted; leading dim C = number of cases, 3)
--------
  scores       (C,4,50)      raw scores; case 0 randn*2, case 1 randn*5 (peaked),
                             case 2 randn*0.5 (flat)
  prev_ids     (C,4,7) I64   previous token ids (with repeats) fed as input_ids
  rep_penalty  (C,4,50)      RepetitionPenaltyLogitsProcessor(1.3)(prev_ids, scores)
                             every distinct id in prev_ids: s<0 ? s*1.3 : s/1.3
  temperature  (C,4,50)      TemperatureLogitsWarper(0.7): scores / 0.7
  top_k        (C,4,50)      TopKLogitsWarper(5): s < 5th largest -> -inf
  top_p        (C,4,50)      TopPLogitsWarper(0.8): sort ascending, softmax,
                             cumsum; drop tokens whose cumulative prob <= 1-0.8,
                             always keep the largest one -> -inf
  chain        (C,4,50)      rep_penalty -> temperature -> top_k -> top_p
Each processor is applied to `scores` itself (not chained) except `chain`.
Filtered entries are stored as -inf.  Cases are drawn so that no two scores
tie and no cumulative probability lies within 1e-4 of the top-p cut, so an
independent float32 implementation must reproduce the -inf pattern exactly.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import REPO_ROOT, save_fixture, versions  # noqa: E402

from transformers.generation.logits_process import (  # noqa: E402
    LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
    TopKLogitsWarper, TopPLogitsWarper)

PENALTY, TEMP, TOP_K, TOP_P = 1.3, 0.7, 5, 0.8
B, V, L = 4, 50, 7
SCALES = (2.0, 5.0, 0.5)
SEED = 3001


def top_p_clearance(scores):
    """Smallest |cumulative prob - (1 - top_p)| over all sorted positions."""
    finite = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -1e30))
    srt = torch.sort(finite.double(), dim=-1).values
    cum = srt.softmax(-1).cumsum(-1)
    return (cum - (1 - TOP_P)).abs().min().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "sampling",
                                                  "processors.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    procs = {
        "rep_penalty": RepetitionPenaltyLogitsProcessor(PENALTY),
        "temperature": TemperatureLogitsWarper(TEMP),
        "top_k": TopKLogitsWarper(TOP_K),
        "top_p": TopPLogitsWarper(TOP_P),
    }
    chain = LogitsProcessorList([procs["rep_penalty"], procs["temperature"],
                                 procs["top_k"], procs["top_p"]])
    g = torch.Generator().manual_seed(SEED)
    out = {k: [] for k in ["scores", "prev_ids", *procs, "chain"]}
    for scale in SCALES:
        while True:  # redraw until the case has no ties and a clear top-p cut
            scores = torch.randn(B, V, generator=g) * scale
            prev = torch.randint(0, V, (B, L), generator=g)
            prev[:, -1] = prev[:, 0]  # make sure every row has a repeat
            res = {k: p(prev, scores.clone()) for k, p in procs.items()}
            res["chain"] = chain(prev, scores.clone())
            no_ties = all(len(torch.unique(row)) == V
                          for m in (scores, res["rep_penalty"]) for row in m)
            pen_t = res["rep_penalty"] / TEMP
            topk_t = torch.topk(pen_t, TOP_K).values[:, -1:]
            clear = (top_p_clearance(scores) > 1e-4 and
                     top_p_clearance(torch.where(pen_t >= topk_t, pen_t,
                                                 torch.full_like(pen_t, -float("inf")))) > 1e-4)
            if no_ties and clear:
                break
        out["scores"].append(scores)
        out["prev_ids"].append(prev)
        for k, v in res.items():
            out[k].append(v)
    tensors = {k: torch.stack(v) for k, v in out.items()}
    for k in ("top_k", "chain"):
        kept = torch.isfinite(tensors[k]).sum(-1)
        assert (kept <= TOP_K).all() and (kept >= 1).all(), (k, kept)
    assert (torch.isfinite(tensors["top_k"]).sum(-1) == TOP_K).all()

    md = versions()
    md.update({
        "layout": "leading dim = case (C=3); then batch 4; vocab 50 / prev len 7",
        "cases": "0: randn*2, 1: randn*5 (peaked), 2: randn*0.5 (flat)", "seed": SEED,
        "repetition_penalty": repr(PENALTY), "temperature": repr(TEMP),
        "top_k": TOP_K, "top_p": repr(TOP_P), "min_tokens_to_keep": 1,
        "filter_value": "-inf",
        "chain": "rep_penalty -> temperature -> top_k -> top_p (LogitsProcessorList)",
        "rep_penalty_rule": "each distinct id in prev_ids (all positions): s<0 ? s*p : s/p",
        "temperature_rule": "scores / float32(0.7) (a division, not a multiply by 1/T)",
        "top_k_rule": "s < (k-th largest) -> -inf (ties at the k-th value kept)",
        "top_p_rule": "sort ascending, softmax, cumsum; remove where cum <= 1-top_p; "
                      "never remove the last (largest) min_tokens_to_keep",
        "dtype": "float32 scores, int64 ids",
    })
    save_fixture(args.out, tensors, md)
    for k, v in tensors.items():
        fin = torch.isfinite(v).sum().item() if v.is_floating_point() else v.numel()
        print(f"  {k:12s} {tuple(v.shape)} finite {fin}/{v.numel()}")
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
