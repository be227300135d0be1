"""Make quants of a model for tests by calling llama_model_quantize in a child process.

Independent of QuantLens' own quantize engine on purpose: the evaluation tests must not
depend on it. llama.cpp runs in a subprocess so a crash there cannot take pytest down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: llama_ftype values from llama.h
FTYPES = {"F16": 1, "Q4_0": 2, "Q8_0": 7, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15, "Q6_K": 18}

_SCRIPT = """
import sys, llama_cpp
src, dst, ftype, requant = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = ftype
p.allow_requantize = requant
p.nthread = 2
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
sys.exit(1 if rc else 0)
"""


def quantize_copy(src: Path, dst: Path, ftype: str, allow_requantize: bool = False) -> Path:
    """Write ``dst`` as ``src`` quantized to ``ftype`` (a key of :data:`FTYPES`); reuse if there."""
    if dst.exists() and dst.stat().st_size > 0:
        return dst
    part = dst.with_name(dst.name + ".part")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            str(src),
            str(part),
            str(FTYPES[ftype]),
            "1" if allow_requantize else "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"quantize {src.name} -> {ftype} failed:\n{proc.stderr[-2000:]}")
    part.rename(dst)
    return dst
