#!/usr/bin/env python3
"""Generate small random-initialised Hugging Face checkpoints plus reference
logits / greedy generations, for the nextquill HF loader and generation tests.

Run from anywhere:
    python3 tools/make_hf_fixtures.py            # writes tests/fixtures/hf/<family>/
    python3 tools/make_hf_fixtures.py --out DIR  # writes DIR/<family>/

Needs: torch, transformers (5.x), safetensors, numpy.  No downloads.

Families (vocab 128, hidden 64, 2 layers, 4 heads; float32, eager attention)
--------
  gpt2   GPT2LMHeadModel, n_positions 64, gelu_new, tied head (no lm_head.weight
         in the file).  Conv1D weights are stored (in, out): y = x @ W + b.
  llama  LlamaForCausalLM, 4 heads / 2 kv heads (GQA), intermediate 160, no
         biases, untied head, rope_theta 1e4, rms_norm_eps 1e-6.
  qwen2  Qwen2ForCausalLM, 4 heads / 2 kv heads, intermediate 160, q/k/v bias,
         tied head, rope_theta 1e4, rms_norm_eps 1e-6.
Init: the model's own init with initializer_range 0.2 (so logits have a real
spread), then norm weights 1 + 0.1*randn and all biases 0.1*randn.

Files per family directory
--------------------------
  config.json, model.safetensors   model.save_pretrained(dir, safe_serialization=True)
      (plus generation_config.json, not needed)
  reference.safetensors (F32 / I64)
    ids                  (2,12) I64  unpadded batch
    logits               (2,12,V)    model(input_ids=ids).logits
    padded_ids           (3,10) I64  left-padded batch, pad id 0; rows have 0, 3
                                     and 5 pads; real tokens are never 0
    padded_mask          (3,10) I64  1 = real token, 0 = pad
    padded_position_ids  (3,10) I64  (mask.cumsum(-1) - 1).clamp(min=0)
    padded_logits        (3,10,V)    model(padded_ids, attention_mask=padded_mask,
                                     position_ids=padded_position_ids).logits;
                                     only positions with mask 1 are meaningful
    generated            (3,8) I64   new tokens of model.generate on the padded
                                     batch: greedy, max_new_tokens 8,
                                     repetition_penalty 1.3, pad 0, eos never hit
Generation semantics (checked here against a cache-free re-implementation):
each step feeds all tokens so far with the mask extended by ones and
position_ids = cumsum(mask) - 1 on real tokens; the repetition penalty
(score < 0 ? score*1.3 : score/1.3, once per distinct id) acts on every id of
the row's real prompt tokens and the tokens generated so far, but NOT on the
left-pad positions (transformers 5.x generate passes prompt_ignore_length =
number of leading pads; a bare RepetitionPenaltyLogitsProcessor(1.3) would
penalise id 0 for padded rows); then argmax.  The model seed is chosen so that the top1-top2 gap of the
processed scores is > 0.02 at every decode step (metadata min_greedy_margin),
so float32 rounding differences cannot flip a token.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import REPO_ROOT, dir_report, save_fixture, versions  # noqa: E402

from transformers import (GenerationConfig, GPT2Config, GPT2LMHeadModel,  # noqa: E402
                          LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, INTER = 128, 64, 2, 4, 2, 160
INIT_RANGE = 0.2
PAD_ID = 0
PAD_COUNTS = (0, 3, 5)
MAX_NEW, REP_PENALTY = 8, 1.3
SEEDS = {"gpt2": 2001, "llama": 2002, "qwen2": 2003}
MIN_MARGIN = 0.02


def build(family, eos):
    common = dict(vocab_size=VOCAB, initializer_range=INIT_RANGE, pad_token_id=PAD_ID,
                  bos_token_id=eos, eos_token_id=eos, attn_implementation="eager")
    if family == "gpt2":
        cfg = GPT2Config(n_positions=64, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                         activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                         attn_pdrop=0.0, summary_first_dropout=0.0,
                         layer_norm_epsilon=1e-5, tie_word_embeddings=True, **common)
        return GPT2LMHeadModel(cfg)
    kw = dict(hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
              num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
              max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-6,
              attention_dropout=0.0, **common)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(attention_bias=False, mlp_bias=False,
                                            tie_word_embeddings=False, **kw))
    return Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **kw))


def perturb_(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))


def positions(mask):
    return (mask.cumsum(-1) - 1).clamp(min=0)


def manual_greedy(model, ids, mask):
    """Cache-free greedy decode, written out by hand; returns (new tokens,
    smallest top1-top2 gap of the penalised scores over all rows and steps)."""
    new, gap = [], float("inf")
    for _ in range(MAX_NEW):
        logits = model(input_ids=ids, attention_mask=mask,
                       position_ids=positions(mask)).logits[:, -1, :]
        scores = logits.clone()
        for r in range(ids.shape[0]):
            seen = torch.unique(ids[r][mask[r] != 0])  # pads are not penalised
            s = scores[r, seen]
            scores[r, seen] = torch.where(s < 0, s * REP_PENALTY, s / REP_PENALTY)
        top2 = scores.topk(2, dim=-1).values
        gap = min(gap, (top2[:, 0] - top2[:, 1]).min().item())
        nxt = scores.argmax(-1, keepdim=True)
        new.append(nxt)
        ids = torch.cat([ids, nxt], 1)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    return torch.cat(new, 1), gap


def run_family(family, out_root):
    seed = SEEDS[family]
    g = torch.Generator().manual_seed(seed + 17)
    ids = torch.randint(0, VOCAB, (2, 12), generator=g)
    L = 10
    padded = torch.randint(1, VOCAB, (len(PAD_COUNTS), L), generator=g)
    mask = torch.ones_like(padded)
    for r, n in enumerate(PAD_COUNTS):
        padded[r, :n] = PAD_ID
        mask[r, :n] = 0
    pos = positions(mask)

    # Model seed: the first of seed, seed+1000, ... whose greedy decode has a
    # top1-top2 margin > MIN_MARGIN at every step (robust to float32 rounding).
    # eos: the largest id that greedy decoding never produces, so it never fires.
    for model_seed in range(seed, seed + 100_000, 1000):
        torch.manual_seed(model_seed)
        model = build(family, VOCAB - 1)
        perturb_(model)
        model.eval()
        with torch.no_grad():
            manual, gap = manual_greedy(model, padded, mask)
        if gap > MIN_MARGIN:
            break
    else:
        raise RuntimeError("no seed with a safe greedy margin")
    eos = max(set(range(1, VOCAB)) - set(manual.flatten().tolist()))
    model.config.eos_token_id = model.config.bos_token_id = eos
    model.generation_config.eos_token_id = model.generation_config.bos_token_id = eos

    with torch.no_grad():
        gen_cfg = GenerationConfig(max_new_tokens=MAX_NEW, do_sample=False,
                                   repetition_penalty=REP_PENALTY, pad_token_id=PAD_ID,
                                   eos_token_id=eos, bos_token_id=eos)
        seq = model.generate(input_ids=padded, attention_mask=mask,
                             generation_config=gen_cfg)
        generated = seq[:, L:]
        logits = model(input_ids=ids).logits
        padded_logits = model(input_ids=padded, attention_mask=mask, position_ids=pos).logits
        # real positions of each padded row must match that row run alone
        for r, n in enumerate(PAD_COUNTS):
            alone = model(input_ids=padded[r:r + 1, n:]).logits[0]
            err = (alone - padded_logits[r, n:]).abs().max().item()
            assert err < 1e-4, (family, r, err)
    assert torch.equal(manual, generated), (family, manual, generated)

    out = os.path.join(out_root, family)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    md = versions()
    md.update({
        "family": family, "model_class": type(model).__name__, "seed": model_seed, "data_seed": seed + 17,
        "dtype": "float32 everywhere (weights, activations, logits)",
        "attn_implementation": "eager",
        "init": f"model init with initializer_range {INIT_RANGE}; then 1-D norm weights "
                "1+0.1*randn, biases 0.1*randn",
        "tie_word_embeddings": str(bool(model.config.tie_word_embeddings)).lower(),
        "logits": "model(input_ids=ids).logits (no mask, positions 0..11)",
        "pad_token_id": PAD_ID, "pad_counts": ",".join(map(str, PAD_COUNTS)),
        "padding_side": "left",
        "position_ids": "(mask.cumsum(-1)-1).clamp(min=0), passed explicitly",
        "padded_logits": "only positions with padded_mask == 1 are meaningful; "
                         "pad positions hold whatever the model computes there",
        "generate": f"model.generate(padded_ids, attention_mask=padded_mask, "
                    f"max_new_tokens={MAX_NEW}, do_sample=False, "
                    f"repetition_penalty={REP_PENALTY}, pad_token_id={PAD_ID}, "
                    f"eos_token_id={eos}); generated = new tokens only",
        "max_new_tokens": MAX_NEW, "do_sample": "false",
        "repetition_penalty": repr(REP_PENALTY), "eos_token_id": eos,
        "eos_triggered": "false",
        "generated_contains_pad_id": str(bool((generated == PAD_ID).any())).lower() +
        " (a generated id 0 is a real token: mask 1, attended to, penalised afterwards)",
        "repetition_penalty_semantics": "applied once to each distinct id among the row's real "
                                        "prompt tokens and generated tokens; left-pad positions "
                                        "are NOT counted (generate passes prompt_ignore_length = "
                                        "leading pads); score<0 ? score*p : score/p",
        "generate_positions": "position of a real token = number of real tokens before it",
        "min_greedy_margin": repr(gap),
    })
    tensors = {"ids": ids, "logits": logits, "padded_ids": padded, "padded_mask": mask,
               "padded_position_ids": pos, "padded_logits": padded_logits,
               "generated": generated}
    save_fixture(os.path.join(out, "reference.safetensors"), tensors, md)
    print(f"{family}: eos {eos}, generated {generated.tolist()}, min margin {gap:.4f}")
    print(f"  total {dir_report(out)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "hf"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for family in ("gpt2", "llama", "qwen2"):
        run_family(family, args.out)


if __name__ == "__main__":
    main()
