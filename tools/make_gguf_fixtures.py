#!/usr/bin/env python3
"""Small GGUF fixtures with reference values from gguf-py and transformers.

    python3 tools/make_gguf_fixtures.py      # a few seconds; deterministic

Writes tests/fixtures/gguf/:

  quants.gguf   written by gguf-py's GGUFWriter. For every type T in F32 F16
                BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K:
                  q.T    3 rows of two blocks (F32/F16/BF16: 40 values): random
                         bytes, except that every fp16 scale and min is a random
                         finite half (some tiny, some subnormal, some large) and
                         F16/BF16 values are finite;
                  ref.T  F32 (3, row length): gguf.quants.dequantize(q.T).
                And one metadata key per value type, test.<type>, with the
                values in META below.
  aligned64.gguf  general.alignment 64, tensors a (F32, 3) and b (F32, 2x5)
                holding 0, 1, 2, ...
  tiny_llama.gguf, tiny_qwen2.gguf  random models (2 layers, d 32, 4 heads,
                2 KV heads, head dim 8, d_ff 64, vocab 64) written the way
                llama.cpp's convert_hf_to_gguf.py writes them: llama's attn_q
                and attn_k rows permuted for its RoPE, qwen2's not, qwen2 with
                q/k/v biases; llama untied (output.weight), qwen2 tied. Weight
                types mixed: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, F32.
  tiny_llama_logits.json, tiny_qwen2_logits.json  {"sequences": [[id...]],
                "logits": [[[float] per position] per sequence], "greedy":
                [8 ids]}: transformers (float32) on the GGUF, and its greedy
                generate of 8 tokens after the first sequence.
"""
import json
import os
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")

META = {
    "u8": 200, "i8": -100, "u16": 60000, "i16": -30000, "u32": 4000000000, "i32": -2000000000,
    "f32": 0.25, "bool": True, "string": "h\u00e9llo", "u64": 1 << 40, "i64": -(1 << 40), "f64": 0.1,
    "ints": [1, -2, 3], "strings": ["a", "", "ccc"], "floats": [0.5, -1.5],
}

# Byte offsets of the fp16 fields (scale d, min m / dmin) in each type's block.
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
               "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def random_halves(rng, n):
    v = rng.uniform(-2, 2, n)
    kind = rng.integers(0, 10, n)
    v[kind == 0] *= 1e-6  # subnormal halves
    v[kind == 1] *= 500  # large
    v[kind == 2] = 0
    return v.astype(np.float16)


def write_quants(gguf):
    rng = np.random.default_rng(20261205)
    w = gguf.GGUFWriter(os.path.join(OUT, "quants.gguf"), arch="test")
    G = gguf.GGUFValueType
    w.add_key_value("test.u8", META["u8"], G.UINT8)
    w.add_key_value("test.i8", META["i8"], G.INT8)
    w.add_key_value("test.u16", META["u16"], G.UINT16)
    w.add_key_value("test.i16", META["i16"], G.INT16)
    w.add_key_value("test.u32", META["u32"], G.UINT32)
    w.add_key_value("test.i32", META["i32"], G.INT32)
    w.add_key_value("test.f32", META["f32"], G.FLOAT32)
    w.add_key_value("test.bool", META["bool"], G.BOOL)
    w.add_key_value("test.string", META["string"], G.STRING)
    w.add_key_value("test.u64", META["u64"], G.UINT64)
    w.add_key_value("test.i64", META["i64"], G.INT64)
    w.add_key_value("test.f64", META["f64"], G.FLOAT64)
    w.add_key_value("test.ints", META["ints"], G.ARRAY, sub_type=G.INT32)
    w.add_key_value("test.strings", META["strings"], G.ARRAY, sub_type=G.STRING)
    w.add_key_value("test.floats", META["floats"], G.ARRAY, sub_type=G.FLOAT32)
    Q = gguf.GGMLQuantizationType
    for name in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                 "Q6_K"]:
        qt = Q[name]
        block, size = gguf.GGML_QUANT_SIZES[qt]
        row_len = 40 if block == 1 else 2 * block
        rows = 3
        if name == "F32":
            raw = rng.normal(0, 3, (rows, row_len)).astype(np.float32).view(np.uint8)
        elif name == "F16":
            raw = random_halves(rng, rows * row_len).reshape(rows, row_len).view(np.uint8)
        elif name == "BF16":
            f = rng.normal(0, 3, (rows, row_len)).astype(np.float32)
            raw = (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(rows, -1)
        else:
            nblocks = rows * row_len // block
            blocks = rng.integers(0, 256, (nblocks, size), dtype=np.uint8)
            for off in HALF_FIELDS[name]:
                blocks[:, off:off + 2] = random_halves(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
            raw = blocks.reshape(rows, -1)
        ref = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(rows, row_len)
        assert np.isfinite(ref).all(), name
        w.add_tensor("q." + name, raw, raw_shape=None, raw_dtype=qt)
        w.add_tensor("ref." + name, ref)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    a = gguf.GGUFWriter(os.path.join(OUT, "aligned64.gguf"), arch="test")
    a.add_custom_alignment(64)
    a.add_tensor("a", np.arange(3, dtype=np.float32))
    a.add_tensor("b", np.arange(10, dtype=np.float32).reshape(2, 5))
    a.write_header_to_file()
    a.write_kv_data_to_file()
    a.write_tensors_to_file()
    a.close()


V, D, L, H, KV, HD, FF = 64, 32, 2, 4, 2, 8, 64


def permute(w, n_head):  # HF rows -> llama.cpp's interleaved RoPE order (convert_hf_to_gguf's permute)
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny(gguf, arch, seed):
    import torch
    from transformers import AutoModelForCausalLM

    rng = np.random.default_rng(seed)
    Q = gguf.GGMLQuantizationType
    qwen = arch == "qwen2"

    def mat(rows, cols, std=0.15):
        return rng.normal(0, std, (rows, cols)).astype(np.float32)

    hf = {"embed": mat(V, D, 0.5)}
    for i in range(L):
        hf[f"{i}.q"] = mat(H * HD, D)
        hf[f"{i}.k"] = mat(KV * HD, D)
        hf[f"{i}.v"] = mat(KV * HD, D)
        hf[f"{i}.o"] = mat(D, H * HD)
        hf[f"{i}.gate"] = mat(FF, D)
        hf[f"{i}.up"] = mat(FF, D)
        hf[f"{i}.down"] = mat(D, FF)
        hf[f"{i}.attn_norm"] = (1 + rng.normal(0, 0.1, D)).astype(np.float32)
        hf[f"{i}.ffn_norm"] = (1 + rng.normal(0, 0.1, D)).astype(np.float32)
        if qwen:
            for p, n in (("q", H), ("k", KV), ("v", KV)):
                hf[f"{i}.{p}_bias"] = rng.normal(0, 0.1, n * HD).astype(np.float32)
    hf["norm"] = (1 + rng.normal(0, 0.1, D)).astype(np.float32)
    if not qwen:
        hf["lm_head"] = mat(V, D, 0.3)

    path = os.path.join(OUT, f"tiny_{arch}.gguf")
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(f"tiny random {arch}")
    w.add_context_length(64)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(1e6 if qwen else 10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(HD)
    w.add_vocab_size(V)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    # A byte-level vocabulary of 64 symbols (no merges), id 0 a control token.
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if qwen else "smollm")
    w.add_token_list(["<|endoftext|>"] + [chr(c) for c in range(0x41, 0x41 + V - 1)])
    w.add_token_merges([])
    w.add_token_types([3] + [1] * (V - 1))
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)

    def add(name, x, qt):
        if qt == Q.F32:
            w.add_tensor(name, x.astype(np.float32))
        elif qt == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qt), raw_dtype=qt)

    add("token_embd.weight", hf["embed"], Q.Q8_0)
    types = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.F16]
    for i in range(L):
        b = f"blk.{i}."
        q, k = hf[f"{i}.q"], hf[f"{i}.k"]
        if not qwen:
            q, k = permute(q, H), permute(k, KV)
        add(b + "attn_norm.weight", hf[f"{i}.attn_norm"], Q.F32)
        add(b + "attn_q.weight", q, types[(0 + i) % 6])
        add(b + "attn_k.weight", k, types[(1 + i) % 6])
        add(b + "attn_v.weight", hf[f"{i}.v"], types[(2 + i) % 6])
        if qwen:
            for p in ("q", "k", "v"):
                add(b + f"attn_{p}.bias", hf[f"{i}.{p}_bias"], Q.F32)
        add(b + "attn_output.weight", hf[f"{i}.o"], types[(3 + i) % 6])
        add(b + "ffn_norm.weight", hf[f"{i}.ffn_norm"], Q.F32)
        add(b + "ffn_gate.weight", hf[f"{i}.gate"], types[(4 + i) % 6])
        add(b + "ffn_up.weight", hf[f"{i}.up"], types[(5 + i) % 6])
        add(b + "ffn_down.weight", hf[f"{i}.down"], types[(0 + i) % 6])
    add("output_norm.weight", hf["norm"], Q.F32)
    if not qwen:
        add("output.weight", hf["lm_head"], Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    model = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=os.path.basename(path), dtype=torch.float32)
    model.eval()
    # transformers undid the permutation: its q_proj is the HF matrix (up to Q4_0 rounding).
    got = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    assert np.abs(got - hf["0.q"]).max() < 0.05, np.abs(got - hf["0.q"]).max()
    assert qwen == (model.model.layers[0].self_attn.q_proj.bias is not None)
    seqs = [rng.integers(0, V, 7).tolist(), rng.integers(0, V, 16).tolist(), [5]]
    logits = []
    with torch.no_grad():
        for s in seqs:
            y = model(torch.tensor([s])).logits[0]
            logits.append([[float(v) for v in row] for row in y.tolist()])
        g = model.generate(torch.tensor([seqs[0]]), attention_mask=torch.ones(1, len(seqs[0]), dtype=torch.long),
                           max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    greedy = g[0, len(seqs[0]):].tolist()
    with open(os.path.join(OUT, f"tiny_{arch}_logits.json"), "w") as f:
        json.dump({"sequences": seqs, "logits": logits, "greedy": greedy}, f)
    print(f"{path}: max |logit| {max(abs(v) for s in logits for r in s for v in r):.3f}, greedy {greedy}")


def main():
    import gguf
    os.makedirs(OUT, exist_ok=True)
    write_quants(gguf)
    write_tiny(gguf, "llama", 1)
    write_tiny(gguf, "qwen2", 2)
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))


if __name__ == "__main__":
    main()
