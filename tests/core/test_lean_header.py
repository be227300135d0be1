"""The lean header copy that llama.cpp's dry runs size from gives the same answer, faster."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.fit.plan import targets_for
from qtapp.core.gguf.lean import lean_copy
from qtapp.core.gguf.model import read_model
from qtapp.core.gguf.reader import ArrayInfo, read_gguf
from qtapp.core.jobs.job import run_job
from qtapp.testing.archs import Qwen35MoeSpec, write_qwen35moe

pytestmark = pytest.mark.timeout(300)


def _sizes(path: Path, targets: list[str], lean: bool) -> dict[str, object]:
    r = run_job("dry_quantize_many", model=str(path), targets=targets, lean=lean)
    assert r["errors"] == {}
    return r["results"]


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hybrid MoE header with a 5,000-token vocabulary (long enough to be left out)."""
    spec = Qwen35MoeSpec(n_vocab=5000)
    return write_qwen35moe(tmp_path_factory.mktemp("lean") / "hybrid.gguf", spec)


def test_lean_copy_keeps_everything_but_the_vocabulary_arrays(hybrid: Path, tmp_path: Path) -> None:
    src = read_gguf(hybrid)
    lean = read_gguf(lean_copy(hybrid, tmp_path))
    dropped = {k for k, v in src.metadata.items() if isinstance(v, ArrayInfo)}
    assert "tokenizer.ggml.tokens" in dropped
    kept = {k: v for k, v in src.metadata.items() if k not in dropped}
    assert lean.metadata == {**kept, "qwen35moe.vocab_size": 5000}
    assert lean.tensors == src.tensors  # names, shapes, types and data offsets
    assert lean.file_size - lean.data_offset == src.file_size - src.data_offset
    assert lean.data_offset < src.data_offset


def test_every_target_sizes_the_same_on_the_lean_copy(hybrid: Path) -> None:
    targets = targets_for(read_model(hybrid))
    assert len(targets) > 30
    assert _sizes(hybrid, targets, lean=True) == _sizes(hybrid, targets, lean=False)


def test_split_models_get_a_lean_copy_per_shard(tmp_path: Path, monkeypatch) -> None:
    import gguf

    import qtapp.testing.tiny as synth

    monkeypatch.setattr(
        synth, "GGUFWriter", lambda path, arch: gguf.GGUFWriter(path, arch, split_max_tensors=15)
    )
    synth.write_tiny_llama(tmp_path / "src" / "tiny-F16.gguf")
    first = tmp_path / "src" / "tiny-F16-00001-of-00003.gguf"
    copy = lean_copy(first, tmp_path / "lean")
    assert sorted(p.name for p in copy.parent.iterdir()) == [
        f"tiny-F16-0000{i}-of-00003.gguf" for i in (1, 2, 3)
    ]
    targets = ["Q4_K_M", "Q2_K", "Q8_0"]
    assert _sizes(first, targets, lean=True) == _sizes(first, targets, lean=False)
