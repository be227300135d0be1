"""Evaluation on the real Gemma 3 270M: F16 (requantized from the PyPI Q4_K_M), Q8_0, Q2_K."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from qtapp.core.jobs.job import run_job
from tests.quant_helper import quantize_copy

pytestmark = pytest.mark.integration

CHUNKS = 3


@pytest.fixture(scope="module")
def gemma_family(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gemma-eval")
    f16 = quantize_copy(gemma_path, out / "gemma-F16.gguf", "F16", allow_requantize=True)
    return {
        "F16": f16,
        "Q8_0": quantize_copy(f16, out / "gemma-Q8_0.gguf", "Q8_0"),
        "Q2_K": quantize_copy(f16, out / "gemma-Q2_K.gguf", "Q2_K"),
    }


def test_ppl_and_kld_are_ordered_with_uncertainty(gemma_family: dict[str, Path]) -> None:
    base = gemma_family["F16"]
    res = {
        name: run_job("evaluate", model=str(path), base=str(base), chunks=CHUNKS, threads=2)
        for name, path in gemma_family.items()
    }
    for name, r in res.items():
        assert r["tokens"] == CHUNKS * 255, name
        assert math.isfinite(r["ppl"]) and r["ppl_err"] > 0, name
        assert math.isfinite(r["kld_mean"]) and r["kld_mean_err"] >= 0, name
    f16, q8, q2 = res["F16"], res["Q8_0"], res["Q2_K"]
    assert abs(f16["kld_mean"]) < 1e-4 and f16["same_top_pct"] > 99.5
    assert f16["ppl"] <= q8["ppl"] * 1.01 < q2["ppl"]
    assert 0 < q8["kld_mean"] < q2["kld_mean"]
    assert q8["kld_mean_err"] > 0 and q2["kld_p99"] > q8["kld_p99"]
    assert q8["same_top_pct"] > q2["same_top_pct"]
    assert q2["ppl_ratio"] > q8["ppl_ratio"] > 0.99
