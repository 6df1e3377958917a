#!/usr/bin/env python3
"""Reference fixtures for the byte-level BPE tokenizer tests (tests/test_tokenizer.cpp).

    python3 tools/make_tokenizer_fixture.py [--data ../shared/data] [--out tests/fixtures/tokenizer]

Needs: transformers (>= 5; GPT2Tokenizer on HF `tokenizers`), tokenizers, and
optionally `regex` for an informational cross-check with OpenAI's original
algorithm. Nothing is downloaded: the GPT-2 tokenizer is built from the local
files encoder.json + vocab.bpe (data/gpt2/ in this repository, copied from
shared/data/gpt2_tokenizer/), with "<|user|>" and "<|assistant|>" added as special
tokens (ids 50257, 50258) after GPT-2's own "<|endoftext|>" (50256).

Outputs (in --out):
  corpus.txt             the documents, each followed by one "\\n" that is NOT part
                         of it (doc_bytes gives the lengths; the extra newline only
                         keeps the file readable). All valid UTF-8.
  gpt2_ids.safetensors   doc_bytes I64 [D], doc_tokens I64 [D], ids U16 [T]: the
                         ids HF's GPT-2 tokenizer gives each document, special
                         tokens allowed, concatenated. For the synthetic documents
                         also the pre-tokenizer's pieces (the ids alone cannot show
                         every piece boundary: GPT-2 has no merge across many of
                         them): piece_docs I64 [P] (document indices),
                         piece_counts I64 [P], piece_bytes U16 [Q] (byte lengths
                         of HF's ByteLevel pre-tokenizer pieces, specials not cut).
  trained_vocab.bpe      merges learned by a slow, obviously-correct Python trainer
                         with the semantics of nq::data::BPETrainer (see
                         naive_train) on the first TRAIN_DOCS documents, in
                         vocab.bpe format; the C++ trainer must produce the same.

Documents: samples of shared/data/gitcommits (pretrain texts, history items,
queries, targets) and shared/data/shakespeare (history, query, target), plus
synthetic hard cases: many scripts, combining marks, CJK, emoji ZWJ sequences
and skin tones, whitespace runs of every White_Space kind, contractions, digits
of many scripts, punctuation runs, very long words, control characters,
characters added in Unicode 15-16, random code points, special-token strings, and
"class probes" around every boundary of the Unicode class tables.
Everything is seeded; reruns give identical files.
"""
import argparse
import json
import os
import random
import struct
import unicodedata

from tokenizers import pre_tokenizers
from transformers import GPT2Tokenizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIALS = ["<|user|>", "<|assistant|>"]
TRAIN_DOCS = 400
TRAIN_MERGES = 300
TRAIN_MIN_FREQUENCY = 2


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dataset_docs(data, rng):
    docs = []
    pre = read_jsonl(os.path.join(data, "gitcommits", "pretrain.jsonl"))
    docs += [r["text"] for r in rng.sample(pre, 2200)]
    for split, n in (("train", 500), ("valid", 120), ("test", 120)):
        recs = read_jsonl(os.path.join(data, "gitcommits", split + ".jsonl"))
        for r in rng.sample(recs, n):
            docs += [r["query"], r["target"], rng.choice(r["history"])]
    for split, n in (("train", 700), ("valid", 100), ("test", 100)):
        recs = read_jsonl(os.path.join(data, "shakespeare", split + ".jsonl"))
        for r in rng.sample(recs, n):
            docs += [r["query"], r["target"], rng.choice(r["history"])]
    return docs


HAND = [
    "Hello world", "Hello, world! How's it going?", "I'm here; you're there; we've been; they'll go; he'd do.",
    "can't won't shouldn't ain't y'all'd've", "IT'S THE 'RE 'VE 'LL 'D 'M 'T", "'s's's 't't 'll'll",
    "''''", "'", "' s", "''s", "rock 'n' roll", "O'Neil's dog's", "’s curly’re", "x's", " 's", "\n's",
    "a  b", "a\tb", "a \t b", "a\n\nb", "a\r\nb\r\n\r\nc", "  leading", "trailing  ", "\n", " ", "   ",
    "\t\t", "a\u00a0b", "a \u00a0b", "a\u00a0 b", "\u3000テスト\u3000", "x\u2003\u2003y", "x\u200by\u200b",
    "\u180e|\u180e", "\x1c\x1d\x1e\x1f|", "a\x85b", "a\u2028b\u2029c", "\v\f", "a \n b", " \n\n \t x",
    "end with spaces   ", "end with newlines\n\n\n", "\r\n\r\n", " \r\n x", "\u1680x\u205fy\u202fz",
    "12345678901234567890", " 3.14159 2,718 1_000_000", "٠١٢٣٤٥٦٧٨٩ ۰۱۲۳", "०१२३४ ৫৬৭ ๘๙", "¹²³ ½ ⅓ Ⅻ ①② ⑴",
    "１２３ＡＢＣ", "𝟘𝟙𝟚 𝟎𝟏", "x² H₂O", "v1.2.3-rc4", "0x7fffffff 0b1010 1e-9", "2024-06-01T12:34:56Z",
    "Ἀθῆναι Ελληνικά", "Съешь же ещё этих мягких французских булок", "مرحبا بالعالم", "שלום עולם",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "হ্যালো বিশ্ব", "வணக்கம் உலகம்", "გამარჯობა", "Բարեւ աշխարհ",
    "안녕하세요 세계", "こんにちは世界、カタカナ！", "你好，世界。中文测试", "ሰላም ዓለም", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "ᠮᠣᠩᠭᠣᠯ", "བོད་ཡིག", "ꦗꦮ", "𐌰𐌱𐌲 Gothic", "𓀀𓀁 hieroglyphs", "Ꭰ Ᏸ ᏸ",
    "e\u0301 a\u0308\u0304 n\u0303", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "क्षि त्र", "각 \u1100\u1161\u11a8", " \u0301x", "\u0301\u0302",
    "👨\u200d👩\u200d👧\u200d👦 family", "👍🏽 👍🏿", "🏳️\u200d🌈", "🇺🇸🇯🇵🇩🇪", "❤️ ✔️", "1️⃣ #️⃣",
    "🧑🏿\u200d💻", "a😀b", " 😀😀", "😀 😀", "emoji at end 🎉",
    "!!!???...", "--->", "=====", "/* comment */", "{{{}}}", "a.b.c", "foo()->bar[0];",
    "#include <stdio.h>", "http://example.com/path?x=1&y=2#frag", "C:\\Windows\\System32\\", "~~~",
    "«»„“”‘’", "—–…", "§¶†‡", "¡¿", " !", " ?!", "a , b", "...and", "(a)(b)", "$100 €50 ¥3 £2",
    "\x00\x01\x02\x03", "\x7f", "\x1b[31mred\x1b[0m", "tab\tseparated\tvalues\n1\t2\t3",
    "<|endoftext|>", "Hello<|endoftext|>World", "a <|endoftext|> b", "<|endoftext|><|endoftext|>",
    "<|endoftext|", "<|endoftext|>>", "<<|endoftext|>", "<|user|>hi<|assistant|>hello<|endoftext|>",
    "<|user|", "<|assistant|> ok", " <|user|>\n", "<|user|><|assistant|>", "<|USER|>", "< |user|>",
    "\n\n<|endoftext|>\n\n", "x  <|endoftext|>  y",
]


def unicode16_new_chars():
    """Letters and digits HF's regex engine knows that Python's unicodedata does not."""
    from tokenizers import Regex  # noqa: PLC0415

    out = []
    for pat in (r"\p{L}", r"\p{N}"):
        split = pre_tokenizers.Split(Regex(pat), behavior="isolated")
        text = "".join(chr(c) for c in range(0x10000, 0x20000)) + "".join(chr(c) for c in range(0x80, 0xD800))
        for piece, _ in split.pre_tokenize_str(text):
            if len(piece) == 1 and unicodedata.category(piece) == "Cn":
                out.append(piece)
    return sorted(set(out))


def synthetic_docs(rng):
    docs = list(HAND)
    new_chars = unicode16_new_chars()
    for _ in range(40):  # Unicode 15/16 letters and digits, alone and mixed with spaces / ASCII
        k = rng.randint(1, 12)
        docs.append("".join(rng.choice(new_chars + [" ", "a", "1", "!", " "]) for _ in range(k)))
    docs.append(" ".join(new_chars[::37]))
    # Very long words (exercise the heap merge path and long pieces).
    docs += ["a" * 5000, "ab" * 3000, "supercalifragilistic" * 100, "9" * 4000, "-" * 3000, " " * 2000,
             "\n" * 1000, " x" * 1500, "é" * 1500, "中文" * 800, "😀" * 500,
             "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6000)),
             "".join(rng.choice("etaoinshrdlu") for _ in range(3000)), "'s" * 500, "!?" * 1500]
    # Random short strings over a tricky alphabet: the pre-tokenizer state machine.
    alphabet = [" ", " ", " ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2003", "\x1c", "a", "Z", "s", "t", "l",
                "r", "e", "v", "1", "٣", "!", ".", "'", "'", "é", "e\u0301", "😀", "👍🏽", "中", "\u200d", "<",
                "|", ">"]
    for _ in range(4000):
        docs.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))))
    # Random code points (any plane, any category, unassigned included).
    for _ in range(400):
        cps = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.2:
                c = rng.choice([0x20, 0x20, 0x0A, 0x09])
            elif r < 0.6:
                c = rng.randint(0x80, 0xFFFF)
            elif r < 0.8:
                c = rng.randint(0x10000, 0x10FFFF)
            else:
                c = rng.randint(0x21, 0x7E)
            if 0xD800 <= c <= 0xDFFF:
                c = 0xFFFD
            cps.append(chr(c))
        docs.append("".join(cps))
    # Word salad from the hand-written cases.
    for _ in range(600):
        docs.append("".join(rng.choice(HAND) + rng.choice(["", " ", "\n", "  ", "\t"]) for _ in range(rng.randint(2, 8))))
    return docs


def class_probe_docs(rng):
    """Documents whose GPT-2 pieces reveal the class of code points: for each X,
    "aXa 1X1 !X!" splits into (1, 3, 3) pieces if X is a letter, (3, 1, 3) a number,
    (3, 3, 1) other, (3, 3, 3) whitespace. X runs over both sides of every range
    boundary of the class tables (as HF's engine sees them) plus random code points."""
    from tokenizers import Regex  # noqa: PLC0415

    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    probe = set()
    for pat in (r"\p{L}+", r"\p{N}+", r"\s+"):
        split = pre_tokenizers.Split(Regex(pat), behavior="isolated")
        for piece, _ in split.pre_tokenize_str(text):  # matches and the gaps between them
            first, last = ord(piece[0]), ord(piece[-1])
            probe.update({first - 1, first, last, last + 1})
    probe.update(rng.randint(0, 0x10FFFF) for _ in range(4000))
    cps = sorted(c for c in probe if 0 <= c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF)
    docs = []
    for i in range(0, len(cps), 40):
        docs.append("\n".join(f"a{chr(c)}a 1{chr(c)}1 !{chr(c)}!" for c in cps[i:i + 40]))
    return docs


def naive_train(docs, num_merges, min_frequency):
    """Reference for nq::data::BPETrainer: recount every pair at every step.
    Words = GPT-2 pre-tokens (raw bytes); pairs counted at every adjacent position
    (weighted by word count); best = max count, ties -> smallest (left bytes,
    right bytes); merged left to right without overlap; a merge whose bytes
    already form a token reuses it; a pair merged before is not recorded again."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from_char = {v: k for k, v in bytes_to_unicode().items()}
    counts = {}
    for d in docs:
        for piece, _ in pre.pre_tokenize_str(d):
            w = bytes(from_char[ch] for ch in piece)
            counts[w] = counts.get(w, 0) + 1
    words = [([bytes([b]) for b in w], c) for w, c in counts.items()]
    merges, seen = [], set()
    while len(merges) < num_merges:
        pairs = {}
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        (a, b), n = min(pairs.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))
        if n < min_frequency:
            break
        for syms, _ in words:
            i, out = 0, []
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms[:] = out
        if (a, b) not in seen:
            seen.add((a, b))
            merges.append((a, b))
    return merges


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def openai_reference(encoder_path, vocab_path):
    """OpenAI's encoder.py algorithm with the `regex` module (informational)."""
    try:
        import regex  # noqa: PLC0415
    except ImportError:
        return None
    with open(encoder_path, encoding="utf-8") as f:
        enc = json.load(f)
    with open(vocab_path, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:-1]
    ranks = {tuple(l.split()): i for i, l in enumerate(lines)}
    b2u = bytes_to_unicode()
    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    cache = {}

    def bpe(token):
        if token in cache:
            return cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        cache[token] = word
        return word

    def encode(text):
        ids = []
        for piece in regex.findall(pat, text):
            ids += [enc[t] for t in bpe("".join(b2u[b] for b in piece.encode("utf-8")))]
        return ids

    return encode


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(REPO_ROOT, "..", "shared", "data"))
    ap.add_argument("--gpt2", default=os.path.join(REPO_ROOT, "data", "gpt2"))
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()
    enc_path = os.path.join(args.gpt2, "encoder.json")
    voc_path = os.path.join(args.gpt2, "vocab.bpe")

    rng = random.Random(20240601)
    tagged = [(d, False) for d in dataset_docs(args.data, rng)]
    tagged += [(d, True) for d in synthetic_docs(rng) + class_probe_docs(rng)]
    rng.shuffle(tagged)
    tagged = [t for t in tagged if t[0]]
    docs = [d for d, _ in tagged]

    tok = GPT2Tokenizer(vocab=enc_path, merges=voc_path)
    assert len(tok) == 50257 and tok.eos_token_id == 50256
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    assert tok.convert_tokens_to_ids(SPECIALS) == [50257, 50258]
    backend = tok.backend_tokenizer
    ids = [e.ids for e in backend.encode_batch(docs, add_special_tokens=False)]
    for i in range(0, len(docs), 97):  # the high-level API agrees
        assert tok.encode(docs[i]) == ids[i], i
    for d, x in zip(docs, ids):
        assert backend.decode(x, skip_special_tokens=False) == d

    ref = openai_reference(enc_path, voc_path)
    if ref is not None:
        plain = [i for i, d in enumerate(docs) if "<|" not in d]
        diff = [i for i in plain if ref(docs[i]) != ids[i]]
        print(f"OpenAI algorithm + regex module: {len(diff)} of {len(plain)} documents differ "
              "(expected only for characters the two Unicode versions classify differently)")
        for i in diff[:5]:
            print("   ", repr(docs[i][:80]))

    os.makedirs(args.out, exist_ok=True)
    raw = [d.encode("utf-8") for d in docs]
    with open(os.path.join(args.out, "corpus.txt"), "wb") as f:
        f.write(b"".join(r + b"\n" for r in raw))
    flat = [t for x in ids for t in x]
    assert max(flat) < 65536
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    piece_docs, piece_counts, piece_bytes = [], [], []
    for i, (d, synthetic) in enumerate(tagged):
        if synthetic:
            lens = [len(p) for p, _ in byte_level.pre_tokenize_str(d)]  # one character per byte
            assert sum(lens) == len(raw[i]) and max(lens) < 65536
            piece_docs.append(i)
            piece_counts.append(len(lens))
            piece_bytes += lens
    write_safetensors(
        os.path.join(args.out, "gpt2_ids.safetensors"),
        {"doc_bytes": ("I64", [len(raw)], struct.pack(f"<{len(raw)}q", *map(len, raw))),
         "doc_tokens": ("I64", [len(ids)], struct.pack(f"<{len(ids)}q", *map(len, ids))),
         "ids": ("U16", [len(flat)], struct.pack(f"<{len(flat)}H", *flat)),
         "piece_docs": ("I64", [len(piece_docs)], struct.pack(f"<{len(piece_docs)}q", *piece_docs)),
         "piece_counts": ("I64", [len(piece_counts)], struct.pack(f"<{len(piece_counts)}q", *piece_counts)),
         "piece_bytes": ("U16", [len(piece_bytes)], struct.pack(f"<{len(piece_bytes)}H", *piece_bytes))},
        {"tokenizer": "GPT-2 (encoder.json + vocab.bpe) via transformers GPT2Tokenizer",
         "special_tokens": json.dumps(["<|endoftext|>"] + SPECIALS),
         "versions": f"tokenizers {__import__('tokenizers').__version__}, "
                     f"transformers {__import__('transformers').__version__}"})

    merges = naive_train(docs[:TRAIN_DOCS], TRAIN_MERGES, TRAIN_MIN_FREQUENCY)
    b2u = bytes_to_unicode()
    with open(os.path.join(args.out, "trained_vocab.bpe"), "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("".join(b2u[x] for x in a) + " " + "".join(b2u[x] for x in b) + "\n")

    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"{len(docs)} documents, {sum(map(len, raw))} bytes, {len(flat)} tokens; "
          f"{len(merges)} trained merges on the first {TRAIN_DOCS} documents; fixture {total} bytes")


if __name__ == "__main__":
    main()
