#!/usr/bin/env python3
"""Reference token ids for real tokenizers, made with Hugging Face `tokenizers`
and `transformers` on SmolLM2-135M-Instruct's vocabulary.

    bash scripts/get_smollm2.sh && python3 tools/make_real_tokenizer_fixtures.py

Writes tests/fixtures/tokenizer/smollm2/ (deterministic; about 40 s):

  tokenizer.gguf   the model file's tokenizer.* metadata and nothing else
                   (no tensors), so the offline tests have the real vocabulary
                   (49,152 tokens, 48,900 merges, 17 control tokens, 21 bytes
                   without a symbol).
  cases.json       {"pre_tokenizers": {KIND: a tokenizer.json pre_tokenizer
                   object}, "ignore_merges": {KIND: bool},
                   "cases": [{"text": str, "ids": {VARIANT: [int]}}]}
                   VARIANT "gguf:PRE" (PRE: smollm, gpt2, llama-bpe, qwen2):
                   transformers' tokenizer of this GGUF with tokenizer.ggml.pre
                   set to PRE ("gguf:smollm" is the model file's own);
                   "json:KIND" (KIND: smollm = Digits + ByteLevel as in
                   SmolLM2's hub tokenizer.json, gpt2, llama-bpe, qwen2):
                   `tokenizers` with that pre_tokenizer on the same vocabulary.
                   Ids are `tokenizer(text, add_special_tokens=False)`:
                   special-token strings in the text become their ids.
  datasets.json    every history item, query and target of the bundled
                   datasets (data/{gitcommits,shakespeare}/
                   {train,valid,test}.jsonl; per record: history items in
                   order, then query, then target), tokenized by the oracle:
                   {"files": [{"name": "gitcommits/train.jsonl", "texts": N,
                   "ids": total, "chunk": 256, "hashes": ["%016x", ...]}]}
                   where each hash is FNV-1a 64 over a chunk of 256
                   consecutive texts: for each text, each id as 4
                   little-endian bytes (int32), then the 4 bytes of -1.
"""
import hashlib
import json
import os
import random
import struct
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "smollm2-135m-instruct")
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "smollm2")
DATA = os.path.join(ROOT, "data")
CHUNK = 256

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")


def split_then_bytelevel(regex):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


PRE = {
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "gpt2": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "llama-bpe": split_then_bytelevel(LLAMA3),
    "qwen2": split_then_bytelevel(QWEN2),
}
# Llama 3's tokenizer.json sets ignore_merges; test it on that variant.
IGNORE_MERGES = {"smollm": False, "gpt2": False, "llama-bpe": True, "qwen2": False}


def write_tokenizer_gguf(path, pre=None):
    import gguf
    r = gguf.GGUFReader(os.path.join(MODEL_DIR, MODEL))
    w = gguf.GGUFWriter(path, arch="llama")
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            et = f.types[1]
            if et == gguf.GGUFValueType.STRING:
                vals = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                vals = [f.parts[i].tolist()[0] for i in f.data]
            w.add_key_value(name, vals, vt, sub_type=et)
        elif vt == gguf.GGUFValueType.STRING:
            v = bytes(f.parts[f.data[0]]).decode("utf-8")
            w.add_key_value(name, pre if (pre and name == "tokenizer.ggml.pre") else v, vt)
        else:
            w.add_key_value(name, f.parts[f.data[0]].tolist()[0], vt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def sample_texts(rng):
    texts = [
        "Hello world", "Hello, world! How are you?", " leading space", "trailing space ", "  two  spaces",
        "tabs\tand\nnewlines\r\nCRLF\r\n\r\n", "\n\n\n", "   \n  \n", " \t \n x", "a\u00a0b\u2003c\u3000d",
        "I'M DON'T we'Ll they'RE you'VE she'S he'D", "don't can't won't it's", "'s's'S", "x'ſ y'ſt",
        "12345 3.14159 1,000,000 2026-12-05", "a1b22c333d4444", "x²+y³=z¹ ½ ¼ ٣٤٥ १२३", "0x1F 0b1010 1e-9",
        "def f(x):\n    return x**2  # square\n", "if (a && b) { c = d[0]; }", "git commit -m \"fix: typo\"",
        "naïve café résumé Ünïcödé", "日本語のテキスト、句読点。", "中文文本，标点符号！", "한국어 텍스트",
        "Привет, мир! Ёё", "مرحبا بالعالم", "שלום עולם", "γειά σου κόσμε", "emoji 😀👍🏽👨‍👩‍👧 🇫🇷",
        "combining: e\u0301 a\u0308 n\u0303", "zero\u200bwidth\u200djoiner", "\ufeffBOM", "math ∑∫∂√∞≠≤",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>text<|endoftext|>",
        "<repo_name>x<filename>y.py<file_sep>", "<|im_start|", "text with \x04 and \x06 bytes",
        "\x13\x14\x16\x1d", "a\x04b", "th\x04e", "hel\x04lo", "\x04hello", "ÿþ", "ÀÁ",
        "...!!!???", "----====", "$$$ %%% &&&", "  ...  ", "\u2028line\u2029para", "\x00\x01\x02",
    ]
    for fname in ["gitcommits/test.jsonl", "shakespeare/test.jsonl"]:
        with open(os.path.join(DATA, fname), encoding="utf-8") as f:
            recs = [json.loads(line) for line in f]
        for rec in rng.sample(recs, 15):
            texts += [rec["query"], rec["target"]] + rec["history"][:2]
    planes = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
              (0x900, 0x97f), (0x2000, 0x206f), (0x3000, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3),
              (0xe000, 0xf8ff), (0xfe00, 0xfe0f), (0x1f300, 0x1faff), (0x10000, 0x10ffff), (0x0, 0x1f)]
    for _ in range(300):
        n = rng.randint(1, 24)
        s = []
        for _ in range(n):
            lo, hi = rng.choice(planes)
            cp = rng.randint(lo, hi)
            if 0xd800 <= cp <= 0xdfff:
                cp = 0x41
            s.append(chr(cp))
        texts.append("".join(s))
    ascii_chars = [chr(c) for c in range(0x20, 0x7f)] + ["\n", "\t", " ", " ", "'", "0", "1"]
    for _ in range(100):
        texts.append("".join(rng.choice(ascii_chars) for _ in range(rng.randint(1, 60))))
    for _ in range(50):  # "bytes": code points U+0000-U+00FF, each one or two UTF-8 bytes
        texts.append("".join(chr(rng.randint(0, 255)) for _ in range(rng.randint(1, 30))))
    return texts


def dataset_texts(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            for h in rec["history"]:
                yield h
            yield rec["query"]
            yield rec["target"]


def fnv1a(h, data):
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    if not os.path.exists(os.path.join(MODEL_DIR, MODEL)):
        sys.exit("model missing: run bash scripts/get_smollm2.sh")
    os.makedirs(OUT, exist_ok=True)
    write_tokenizer_gguf(os.path.join(OUT, "tokenizer.gguf"))

    oracle = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=MODEL)
    base = json.loads(oracle.backend_tokenizer.to_str())
    # "json:KIND": tokenizer.json with KIND's pre-tokenizer, through `tokenizers`.
    variants = {}
    for kind, pre in PRE.items():
        j = dict(base)
        j["pre_tokenizer"] = pre
        j["model"] = dict(base["model"], ignore_merges=IGNORE_MERGES[kind])
        variants["json:" + kind] = Tokenizer.from_str(json.dumps(j))
    # "gguf:PRE": transformers' tokenizer of a GGUF file whose tokenizer.ggml.pre is PRE.
    tmp = tempfile.mkdtemp()
    for pre in ["smollm", "gpt2", "llama-bpe", "qwen2"]:
        write_tokenizer_gguf(os.path.join(tmp, pre + ".gguf"), pre)
        t = AutoTokenizer.from_pretrained(tmp, gguf_file=pre + ".gguf")
        variants["gguf:" + pre] = t.backend_tokenizer

    rng = random.Random(20261205)
    cases = []
    for t in sample_texts(rng):
        ids = {k: v.encode(t, add_special_tokens=False).ids for k, v in variants.items()}
        assert oracle(t, add_special_tokens=False)["input_ids"] == ids["gguf:smollm"], t
        cases.append({"text": t, "ids": ids})
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"pre_tokenizers": PRE, "ignore_merges": IGNORE_MERGES, "cases": cases}, f,
                  ensure_ascii=False, separators=(",", ":"))

    files = []
    for ds in ["gitcommits", "shakespeare"]:
        for split in ["train", "valid", "test"]:
            name = f"{ds}/{split}.jsonl"
            texts = list(dataset_texts(os.path.join(DATA, name)))
            enc = oracle(texts, add_special_tokens=False)["input_ids"]
            hashes, total = [], 0
            for c in range(0, len(texts), CHUNK):
                h = 0xcbf29ce484222325
                for ids in enc[c:c + CHUNK]:
                    h = fnv1a(h, struct.pack(f"<{len(ids)}i", *ids) + struct.pack("<i", -1))
                    total += len(ids)
                hashes.append(f"{h:016x}")
            files.append({"name": name, "texts": len(texts), "ids": total, "chunk": CHUNK, "hashes": hashes})
            print(f"{name}: {len(texts)} texts, {total} ids")
    with open(os.path.join(OUT, "datasets.json"), "w", encoding="utf-8") as f:
        json.dump({"files": files}, f, indent=1)
    sha = hashlib.sha256(open(os.path.join(OUT, "tokenizer.gguf"), "rb").read()).hexdigest()
    print(f"{len(cases)} cases; tokenizer.gguf sha256 {sha}")


if __name__ == "__main__":
    main()
