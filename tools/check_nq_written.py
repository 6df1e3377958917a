#!/usr/bin/env python3
"""Check that a safetensors file written by nextquill loads in Python.

    python3 tools/check_nq_written.py [tests/fixtures/nq_written/tensors.safetensors]

The file is written by the C++ test "tensor_io: nextquill writes exactly the
committed file ..." (regenerate with NQ_WRITE_FIXTURES=1 ./build/tests/nextquill_tests
-tc='tensor_io*'); that test also asserts nextquill still writes these exact
bytes. This script loads it with the reference `safetensors` library (both the
numpy-free torch loader and safe_open for metadata) and compares every tensor
with values rebuilt independently in torch, including the F16/BF16 rounding.
Needs: pip install torch safetensors
"""
import math
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/nq_written/tensors.safetensors"
t = load_file(path)
with safe_open(path, "pt") as f:
    meta = f.metadata()
assert meta == {"writer": "nextquill", "purpose": "checked by tools/check_nq_written.py"}, meta

v = torch.tensor([0.0, -0.0, 1.0, -2.5, 3.14159265, 1e-3, 65504.0, 1e-8, -1e20, 0.33333334, math.inf, 6.1e-5],
                 dtype=torch.float32).reshape(3, 4)
expect = {
    "f32": v,
    "f64": v.double(),
    "f16": v.half(),  # torch rounds to nearest even, -1e20 -> -inf
    "bf16": v.bfloat16(),
    "i64": torch.tensor([[-3, 0], [7, 1 << 40]], dtype=torch.int64),
    "scalar": torch.tensor(2.5, dtype=torch.float32),
}
assert set(t) == set(expect), sorted(t)
for k, e in expect.items():
    got = t[k]
    assert got.dtype == e.dtype and got.shape == e.shape, (k, got.dtype, got.shape, e.dtype, e.shape)
    same = torch.equal(got, e) and torch.equal(torch.signbit(got.float()), torch.signbit(e.float()))
    assert same, (k, got, e)
print(f"OK: {path} loads in safetensors {__import__('safetensors').__version__} "
      f"(torch {torch.__version__}); {len(t)} tensors match bit for bit, metadata intact")
