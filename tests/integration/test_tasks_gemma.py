"""Task accuracy on the real Gemma 3 270M: 200 HellaSwag tasks, a quant, and a different model.

The HellaSwag validation set is read from the project's shared task data (never copied into
the repository) and decompressed into a temporary folder.
"""

from __future__ import annotations

import bz2
import json
import os
from pathlib import Path

import pytest

from qtapp.core.results.store import ResultsStore
from tests.quant_helper import drop_layers, quantize_copy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

TASKS_DIR = Path(
    os.environ.get("QUANTLENS_TASKS_DIR")
    or Path(__file__).resolve().parents[3] / "shared" / "data" / "tasks"
)
HELLASWAG = TASKS_DIR / "hellaswag_val_full.txt.bz2"


@pytest.fixture(scope="module")
def hellaswag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HELLASWAG.is_file():
        pytest.skip(f"no HellaSwag data at {HELLASWAG} (set QUANTLENS_TASKS_DIR)")
    out = tmp_path_factory.mktemp("tasks") / "hellaswag_val_full.txt"
    out.write_bytes(bz2.decompress(HELLASWAG.read_bytes()))
    return out


def test_200_hellaswag_tasks_rank_quants_and_models(
    gemma_path: Path, hellaswag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtapp.__main__ import main

    f16 = quantize_copy(gemma_path, tmp_path / "gemma-F16.gguf", "F16", allow_requantize=True)
    q2k = quantize_copy(f16, tmp_path / "gemma-Q2_K.gguf", "Q2_K")
    # a really different model with the same tokenizer: 4 of Gemma's 18 blocks removed
    pruned = drop_layers(f16, tmp_path / "gemma-pruned-F16.gguf", {12, 13, 14, 15}, "pruned")
    args = ["versus", str(f16), str(q2k), str(pruned), "--tasks", str(hellaswag)]
    assert main([*args, "--limit", "200", "--gpus", "2x48GiB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    full, low, other = out["models"]
    assert [m["tasks_scored"] for m in out["models"]] == [200, 200, 200]
    assert full["acc_lo"] > 25.0  # clearly above chance (four endings)
    assert low["acc"] < full["acc"]  # Q2_K loses accuracy against F16
    assert all(m["fit"]["verdict"] == "fits" for m in out["models"])
    pair = next(p for p in out["pairs"] if (p["a"], p["b"]) == (0, 2))
    assert pair["tasks"] == 200 and pair["verdict"].endswith("200 tasks).")
    assert ("beats" in pair["verdict"]) == (pair["mcnemar_p"] < 0.05)
    with ResultsStore.open() as store:
        assert len(store.list_runs(kind="tasks")) == 3
        (verdict,) = store.list_runs(kind="versus")
    assert verdict.metrics["pairs"][1]["verdict"] == pair["verdict"]
