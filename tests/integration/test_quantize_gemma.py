"""Real Gemma 3 270M: Q4_K_M -> F16 (requantize) -> Q8_0; file sizes equal the dry run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from qtapp.core.gguf.tensor_names import read_tensor_infos
from qtapp.core.jobs.events import Finished
from qtapp.core.jobs.job import run_job
from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize

pytestmark = pytest.mark.integration


def _data_bytes(path: Path) -> int:
    return sum(t.n_bytes for t in read_tensor_infos(path).tensors)


def test_gemma_requantize_to_f16_then_q8_0(gemma_path: Path, tmp_path: Path) -> None:
    source_hash = hashlib.sha256(gemma_path.read_bytes()).hexdigest()
    steps = [(gemma_path, "F16", True), (None, "Q8_0", False)]
    made: dict[str, Path] = {}
    for source, target, requant in steps:
        src = source or made["F16"]
        predicted = run_job(
            "dry_quantize", model=str(src), target=target, allow_requantize=requant
        )["bytes"]
        spec = quantize_spec(
            src, target, QuantizeOptions(out_dir=str(tmp_path), allow_requantize=requant)
        )
        terminal = run_quantize(spec)
        assert isinstance(terminal, Finished), terminal
        out = Path(terminal.result["path"])
        made[target] = out
        assert _data_bytes(out) == predicted == terminal.result["tensor_bytes"]
        # metadata (the 262k-token vocabulary) is the only difference (FACTS.md: ~6.2 MiB)
        assert 0 < out.stat().st_size - predicted < 8 * 2**20
    assert made["F16"].name == "gemma-3-270m-F16.gguf"
    assert {t.type_name for t in read_tensor_infos(made["Q8_0"]).tensors} == {"Q8_0", "F32"}
    assert hashlib.sha256(gemma_path.read_bytes()).hexdigest() == source_hash
