"""Give a header-only test model (:mod:`qtapp.testing.archs`) random weights, in place.

A zero-weight model routes every token to the same experts and multiplies zeros; random
weights make activations and expert routing that vary, as a real model's do (imatrix tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFReader


def fill_random(path: str | Path, seed: int = 0, scale: float = 0.05) -> Path:
    """Overwrite every F32/F16 tensor of ``path`` with N(0, scale) values (norms: 1 + noise)."""
    rng = np.random.default_rng(seed)
    reader = GGUFReader(str(path), "r+")
    for tensor in reader.tensors:
        data = tensor.data
        if data.dtype not in (np.float32, np.float16):
            continue
        if tensor.name.endswith("norm.weight"):
            values = 1.0 + scale * rng.standard_normal(data.shape)
        else:
            values = scale * rng.standard_normal(data.shape)
        data[...] = values.astype(data.dtype)
    reader.data.flush()
    return Path(path)
