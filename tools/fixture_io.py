"""Shared helpers for the model-level fixture generators in tools/.

`save_fixture` writes a byte-reproducible .safetensors file (same layout
rules as tools/make_fixtures.py: sorted `__metadata__` keys, tensors in name
order, header space-padded to a multiple of 8 bytes) and then reads it back
with the reference reader to check it.  Unlike make_fixtures.py it keeps each
tensor's dtype (F32, F64, I64) and allows non-finite values (-inf is a real
value in the sampling fixtures).
"""
import json
import os
import struct

import torch
from safetensors import safe_open

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_DTYPES = {
    torch.float32: ("F32", "<f4"),
    torch.float64: ("F64", "<f8"),
    torch.int64: ("I64", "<i8"),
}


def save_fixture(path, tensors, metadata):
    metadata = {str(k): str(v) for k, v in metadata.items()}
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise TypeError(f"{path}: {name} has unsupported dtype {t.dtype}")
        tag, npdt = _DTYPES[t.dtype]
        raw = t.numpy().astype(npdt).tobytes()
        header[name] = {"dtype": tag, "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))
    with safe_open(path, "pt") as f:  # check with the reference reader
        assert f.metadata() == metadata, path
        for name, t in tensors.items():
            back = f.get_tensor(name)
            assert back.dtype == t.dtype and torch.equal(back, t.detach().cpu()), (path, name)


def versions():
    import transformers
    return {"torch_version": torch.__version__,
            "transformers_version": transformers.__version__}


def dir_report(path):
    """Print the files of a fixture directory with their sizes; return the total."""
    total = 0
    for name in sorted(os.listdir(path)):
        size = os.path.getsize(os.path.join(path, name))
        total += size
        print(f"  {name:28s} {size:8d} bytes")
    return total
