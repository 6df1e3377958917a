#!/usr/bin/env python3
"""Generate llm.c-style end-to-end training references for small causal LMs.

Run from anywhere:
    python3 tools/make_gpt_fixture.py            # writes tests/fixtures/gpt/<case>/
    python3 tools/make_gpt_fixture.py --out DIR  # writes DIR/<case>/

Needs: torch, transformers (5.x), safetensors, numpy.  No downloads: every
model is built from a config and randomly initialised with a fixed seed.

Cases
-----
  gpt2        GPT2LMHeadModel, vocab 96, 2 layers, 4 heads, d 48, n_positions 32,
              gelu_new, tied head (lm_head.weight is transformer.wte.weight).
  qwen2       Qwen2ForCausalLM, vocab 96, hidden 48, intermediate 128, 2 layers,
              4 heads / 2 kv heads (GQA), q/k/v bias, rope_theta 1e4,
              rms_norm_eps 1e-6, untied head.
  qwen2_lora  the qwen2 model (same seed, same weights: its model.safetensors is
              identical to qwen2's) with hand-written LoRA adapters on every
              layer's q_proj and v_proj; base weights frozen.

Files per case directory
------------------------
  config.json, model.safetensors  written by model.save_pretrained(dir,
      safe_serialization=True): Hugging Face names, F32.  GPT-2 uses Conv1D,
      so its c_attn / c_proj / c_fc weights are stored (in, out), i.e. y = x @ W + b.
      Tied models store no lm_head.weight.  (save_pretrained may also write
      generation_config.json; it is not used.)
  adapter.safetensors (qwen2_lora only)  initial adapters, F32:
      `<module path>.lora_A.weight` (r, in) and `<module path>.lora_B.weight`
      (out, r), e.g. model.layers.0.self_attn.q_proj.lora_A.weight.
      y = base(x) + (alpha / r) * (x @ A^T) @ B^T; metadata r, alpha, scaling,
      dropout, target_modules.
  reference.safetensors  (F32 unless noted)
      input_ids  (B,T) I64    the fixed training batch (random tokens)
      targets    (B,T) I64    next-token targets; a few positions are -100
      logits     (B,T,V)      forward pass with the initial weights
      loss       ()           F.cross_entropy(logits.view(-1,V), targets.view(-1),
                              ignore_index=-100): mean over non-ignored targets
      grad.<name>             d loss / d param with the initial weights, for every
                              trainable parameter (HF names as in model.safetensors,
                              or adapter names).  For tied embeddings the grad of
                              the embedding includes the head's contribution.
      losses     (11,)        loss before each of the 10 steps, then after the last
      lrs        (10,)        lr used by step t
      grad_norms (10,)        total L2 norm of all trainable grads before clipping
      final.<name>            trainable parameters after the 10 steps

Training loop (torch semantics), for t = 0..9, always on the same batch:
    zero grads; loss = CE(model(input_ids)); backward;
    total = clip_grad_norm_(params, 1.0)      # scale grads by min(1, 1/(total+1e-6))
    lr_t = schedule(t); AdamW step (torch.optim.AdamW, single-tensor path)
All of it (hyperparameters, decay rule, schedule formula) is repeated as strings
in reference.safetensors' `__metadata__`.  Computed in float32 with one thread.

Caveat (gpt2 case, metadata `noise_slices`): the key part of each c_attn.bias,
elements [n_embd, 2*n_embd), has an exactly zero true gradient (adding q.b_k to
every score of a softmax row changes nothing; no RoPE to break that).  Its
stored grad is float32 rounding noise (~1e-8) and AdamW normalises that noise
into O(lr) updates, so grad.* and final.* of those slices cannot be reproduced
by another implementation: compare them with that slice excluded (or only
check |grad| < 1e-6 there).  Everything else reproduces to ~1e-6.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import REPO_ROOT, dir_report, save_fixture, versions  # noqa: E402

from safetensors.torch import save_file  # noqa: E402
from transformers import (GPT2Config, GPT2LMHeadModel,  # noqa: E402
                          Qwen2Config, Qwen2ForCausalLM)

B, T = 3, 16
STEPS = 10
BASE_LR = 3e-3
BETAS = (0.9, 0.95)
EPS = 1e-8
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
WARMUP, TOTAL, MIN_RATIO = 3, 10, 0.1
IGNORE_INDEX = -100
# (batch, position) pairs whose target is replaced by IGNORE_INDEX
IGNORED = [(0, 3), (1, 0), (1, 9), (2, 15)]
EMBEDDING_KEYS = ("wte", "wpe", "embed_tokens")
LORA_R, LORA_ALPHA = 4, 8
LORA_TARGETS = ("q_proj", "v_proj")

SCHEDULE_FORMULA = ("lr_t = base_lr*(t+1)/warmup for t < warmup, else "
                    "base_lr*(min_ratio + (1-min_ratio)*0.5*(1+cos(pi*(t-warmup)/(total-warmup))))")
DECAY_RULE = ("weight_decay 0.1 for params with dim >= 2 except embeddings "
              "(names containing wte, wpe or embed_tokens); weight_decay 0 for all "
              "else (biases, norm weights, embeddings). LoRA case: all adapters decay.")
ADAMW_FORMULA = ("torch.optim.AdamW(foreach=False, fused=False): p *= 1 - lr*wd; "
                 "m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; "
                 "p -= lr/(1-b1^k) * m / (sqrt(v)/sqrt(1-b2^k) + eps), k = t+1")


def lr_at(t):
    if t < WARMUP:
        return BASE_LR * (t + 1) / WARMUP
    frac = (t - WARMUP) / (TOTAL - WARMUP)
    return BASE_LR * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * frac)))


def randomize_(model):
    """Non-trivial init of every parameter, in named_parameters order:
    matrices normal(0, 0.2), 1-D weights (norms) 1 + 0.1*randn, biases 0.1*randn."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn_like(p) * 0.2)
            elif name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))


def build_gpt2():
    cfg = GPT2Config(vocab_size=96, n_positions=32, n_embd=48, n_layer=2, n_head=4,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, summary_first_dropout=0.0, layer_norm_epsilon=1e-5,
                     tie_word_embeddings=True, bos_token_id=95, eos_token_id=95,
                     attn_implementation="eager")
    return GPT2LMHeadModel(cfg)


def build_qwen2():
    cfg = Qwen2Config(vocab_size=96, hidden_size=48, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-6,
                      attention_dropout=0.0, tie_word_embeddings=False,
                      attn_implementation="eager")
    return Qwen2ForCausalLM(cfg)


def make_batch(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, vocab, (B, T + 1), generator=g)
    input_ids = seq[:, :T].clone()
    targets = seq[:, 1:].clone()
    for b, t in IGNORED:
        targets[b, t] = IGNORE_INDEX
    return input_ids, targets


def add_lora(model, seed):
    """Attach LoRA to every target Linear via forward hooks (module tree and base
    parameter names unchanged).  Returns {adapter name: Parameter}."""
    g = torch.Generator().manual_seed(seed)
    scaling = LORA_ALPHA / LORA_R
    adapters = {}
    for path, mod in model.named_modules():
        if path.split(".")[-1] not in LORA_TARGETS:
            continue
        a = torch.nn.Parameter(torch.randn(LORA_R, mod.in_features, generator=g) * 0.1)
        b = torch.nn.Parameter(torch.randn(mod.out_features, LORA_R, generator=g) * 0.1)
        adapters[path + ".lora_A.weight"] = a
        adapters[path + ".lora_B.weight"] = b

        def hook(module, inputs, out, a=a, b=b):
            return out + scaling * F.linear(F.linear(inputs[0], a), b)
        mod.register_forward_hook(hook)
    return adapters


def train_reference(model, named, input_ids, targets, lora):
    """named: ordered {name: trainable Parameter}.  Returns the reference tensors
    and the decay / no-decay name lists."""
    V = model.config.vocab_size

    def loss_fn():
        logits = model(input_ids=input_ids).logits
        return logits, F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1),
                                       ignore_index=IGNORE_INDEX)

    def decays(name, p):
        if lora:
            return True
        return p.dim() >= 2 and not any(k in name.split(".") for k in EMBEDDING_KEYS)

    decay = [n for n, p in named.items() if decays(n, p)]
    no_decay = [n for n in named if n not in decay]
    groups = [{"params": [named[n] for n in decay], "weight_decay": WEIGHT_DECAY}]
    if no_decay:
        groups.append({"params": [named[n] for n in no_decay], "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=BASE_LR, betas=BETAS, eps=EPS,
                            foreach=False, fused=False)
    params = list(named.values())

    ref = {"input_ids": input_ids, "targets": targets}
    losses, lrs, norms = [], [], []
    for t in range(STEPS):
        opt.zero_grad(set_to_none=True)
        logits, loss = loss_fn()
        loss.backward()
        if t == 0:
            ref["logits"] = logits.detach().clone()
            ref["loss"] = loss.detach().clone()
            for n, p in named.items():
                ref["grad." + n] = p.grad.detach().clone()
        losses.append(loss.item())
        norms.append(torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP).item())
        lrs.append(lr_at(t))
        for grp in opt.param_groups:
            grp["lr"] = lrs[-1]
        opt.step()
    with torch.no_grad():
        losses.append(loss_fn()[1].item())
    ref["losses"] = torch.tensor(losses, dtype=torch.float32)
    ref["lrs"] = torch.tensor(lrs, dtype=torch.float32)
    ref["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    for n, p in named.items():
        ref["final." + n] = p.detach().clone()
    return ref, decay, no_decay


def run_case(case, out_root):
    seed = {"gpt2": 1001, "qwen2": 1002, "qwen2_lora": 1002}[case]
    torch.manual_seed(seed)
    model = build_gpt2() if case == "gpt2" else build_qwen2()
    randomize_(model)
    model.train()  # every dropout probability is 0
    out = os.path.join(out_root, case)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)

    input_ids, targets = make_batch(model.config.vocab_size, seed + 17)
    md = {}
    if case == "qwen2_lora":
        for p in model.parameters():
            p.requires_grad_(False)
        named = add_lora(model, seed + 29)
        adapter_md = {"r": LORA_R, "alpha": LORA_ALPHA, "scaling": repr(LORA_ALPHA / LORA_R),
                      "dropout": "0", "target_modules": ",".join(LORA_TARGETS),
                      "formula": "y = base(x) + (alpha/r) * (x @ A^T) @ B^T; A (r,in), B (out,r)",
                      "init": "A, B = randn*0.1 (both nonzero)"}
        save_fixture(os.path.join(out, "adapter.safetensors"),
                     {n: p.detach() for n, p in named.items()}, adapter_md)
        md.update({"lora_" + k: v for k, v in adapter_md.items()})
    else:
        named = dict(model.named_parameters())
    ref, decay, no_decay = train_reference(model, named, input_ids, targets,
                                           case == "qwen2_lora")

    noise = []
    if case == "gpt2":  # key bias: zero true gradient (see the module docstring)
        E = model.config.n_embd
        for i in range(model.config.n_layer):
            name = f"transformer.h.{i}.attn.c_attn.bias"
            assert ref["grad." + name][E:2 * E].abs().max() < 1e-6, name
            noise.append(f"{name}[{E}:{2 * E}]")
    md["noise_slices"] = ";".join(noise) if noise else "none"
    md["noise_note"] = ("listed slices have an exactly zero true gradient (softmax shift "
                        "invariance of the key bias); their grad.* is rounding noise and "
                        "their final.* is noise amplified by AdamW: exclude them from "
                        "comparisons" if noise else "none")
    md.update(versions())
    md.update({
        "case": case, "model_class": type(model).__name__, "seed": seed,
        "batch": B, "seq_len": T, "vocab_size": model.config.vocab_size,
        "dtype": "float32", "attn_implementation": "eager",
        "tie_word_embeddings": str(bool(model.config.tie_word_embeddings)).lower(),
        "ignore_index": IGNORE_INDEX,
        "ignored_positions": ";".join(f"{b},{t}" for b, t in IGNORED),
        "loss": "F.cross_entropy(logits.view(-1,V), targets.view(-1), ignore_index=-100), mean over non-ignored",
        "steps": STEPS, "optimizer": "AdamW", "adamw": ADAMW_FORMULA,
        "base_lr": repr(BASE_LR), "beta1": repr(BETAS[0]), "beta2": repr(BETAS[1]),
        "eps": repr(EPS), "weight_decay": repr(WEIGHT_DECAY),
        "grad_clip": repr(GRAD_CLIP),
        "grad_clip_rule": "torch.nn.utils.clip_grad_norm_: total = L2 norm over all grads; "
                          "grads *= min(1, max_norm/(total+1e-6)); grad_norms = total",
        "warmup": WARMUP, "total": TOTAL, "min_ratio": repr(MIN_RATIO),
        "schedule": SCHEDULE_FORMULA, "decay_rule": DECAY_RULE,
        "decay_params": ",".join(decay), "no_decay_params": ",".join(no_decay),
        "trainable_params": ",".join(named),
        "step_order": "zero_grad; loss on the same batch; backward; clip_grad_norm_(1.0); set lr_t; AdamW step",
        "losses": "11 values: loss before each of the 10 steps, then after the last",
        "init": "matrices normal(0,0.2); 1-D .weight 1+0.1*randn; biases 0.1*randn",
    })
    save_fixture(os.path.join(out, "reference.safetensors"), ref, md)
    print(f"{case}: loss {ref['loss'].item():.6f} -> {ref['losses'][-1].item():.6f}")
    total = dir_report(out)
    print(f"  total {total} bytes")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "gpt"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # keeps reductions bit-for-bit reproducible
    for case in ("gpt2", "qwen2", "qwen2_lora"):
        run_case(case, args.out)


if __name__ == "__main__":
    main()
