"""Workers import llama.cpp's bindings and gguf's type table without the heavy packages, and a
later full import of either package still works and shares the same objects."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

PROBE = """
import sys
from qtapp.core.jobs.engine.llama_lib import llama_cpp as lib
from qtapp.core.fit.quants import BLOCK_SIZES
from qtapp.core.jobs.engine import dry_load, dry_sizes  # the plan's worker handlers
light = sorted(m for m in ("numpy", "llama_cpp.llama", "jinja2", "gguf.lazy") if m in sys.modules)
print("light:", light)
assert BLOCK_SIZES["Q4_K"] == (256, 144)
import gguf
import llama_cpp
assert llama_cpp.llama_model_quantize is lib.llama_model_quantize
assert llama_cpp.Llama.__name__ == "Llama"
from gguf.constants import GGMLQuantizationType
assert gguf.GGMLQuantizationType is GGMLQuantizationType
print("full: ok")
"""


def test_worker_handlers_load_without_numpy_and_full_imports_still_work() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=100, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "light: []" in out.stdout
    assert "full: ok" in out.stdout
