#!/usr/bin/env python3
"""Writes examples/data/tiny_shakespeare.txt: the first ~250 KB of speeches of the
shakespeare dataset's train split (the `target` fields, stripped, joined by blank lines).

    python3 tools/make_tiny_text.py [--data ../shared/data/shakespeare] [--bytes 250000]
"""
import argparse
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--data", default=str(root.parent / "shared/data/shakespeare"))
ap.add_argument("--bytes", type=int, default=250_000)
ap.add_argument("--out", default=str(root / "examples/data/tiny_shakespeare.txt"))
args = ap.parse_args()

out, n = [], 0
with open(pathlib.Path(args.data) / "train.jsonl", encoding="utf-8") as f:
    for line in f:
        t = json.loads(line)["target"].strip() + "\n\n"
        out.append(t)
        n += len(t.encode())
        if n > args.bytes:
            break
pathlib.Path(args.out).write_text("".join(out), encoding="utf-8")
print(f"wrote {args.out}: {n} bytes")
