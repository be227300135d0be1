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


def _memory(path: Path, lean: bool, **settings: object) -> dict[str, object]:
    r = run_job("dry_load", model=str(path), lean=lean, **settings)
    # what the plan reads: buffers per device and kind, KV caches, flash attention, n_ctx
    return {k: r[k] for k in ("devices", "kv_caches", "flash_attn", "n_ctx", "weights_bytes")}


SETTINGS = [
    {"n_ctx": 4096},
    {"n_ctx": 8192, "type_k": "q8_0", "type_v": "q8_0", "flash_attn": "on", "n_ubatch": 256},
    {"n_ctx": 2048, "n_seq_max": 2, "swa_full": True, "flash_attn": "off"},
]


@pytest.mark.parametrize("arch", ["llama", "gemma3", "qwen3moe", "qwen35moe"])
def test_the_no_alloc_load_of_the_lean_copy_gives_the_same_buffers(
    arch: str, tmp_path: Path
) -> None:
    from qtapp.testing.archs import write_tiny_gemma3, write_tiny_qwen3moe
    from qtapp.testing.tiny import write_tiny_llama

    writers = {
        "llama": write_tiny_llama,
        "gemma3": write_tiny_gemma3,  # sliding-window layers
        "qwen3moe": write_tiny_qwen3moe,
        "qwen35moe": lambda p: write_qwen35moe(p, Qwen35MoeSpec(n_vocab=5000)),  # hybrid
    }
    path = writers[arch](tmp_path / f"{arch}.gguf")
    for settings in SETTINGS:
        lean = _memory(path, True, **settings)
        assert lean["devices"] and lean["kv_caches"] or arch == "qwen35moe"
        assert lean == _memory(path, False, **settings), settings


@pytest.mark.timeout(600)
def test_gemma_loads_the_same_from_its_lean_copy(gemma_path: Path) -> None:
    """Gemma 3 270M: 262k tokens, all llama.cpp's vocabulary-sized buffers (logits)."""
    for settings in SETTINGS[:2]:
        assert _memory(gemma_path, True, **settings) == _memory(gemma_path, False, **settings)


def test_no_vocab_names_the_tokenizer_none_and_keeps_its_size(hybrid: Path, tmp_path: Path) -> None:
    lean = read_gguf(lean_copy(hybrid, tmp_path, no_vocab=True)).metadata
    assert lean["tokenizer.ggml.model"] == "none"
    assert lean["qwen35moe.vocab_size"] == 5000
    assert not any(isinstance(v, ArrayInfo) for v in lean.values())


def test_the_first_dry_run_child_also_makes_the_no_alloc_load(hybrid: Path) -> None:
    """``quantlens plan`` needs one child per core: the first loads, then sizes fewer targets."""
    from qtapp.core.fit import exact
    from qtapp.core.fit.kv_model import ContextSettings

    m = read_model(hybrid)
    targets = targets_for(m)
    load = exact.memory_params(m, ContextSettings(n_ctx=4096))
    specs = exact.ManyWeights(m, targets, use_cache=False).specs(2, memory=load)
    first, second = (s.params for s in specs)
    assert first["memory"] == load and "memory" not in second
    assert len(first["targets"]) < len(second["targets"])
    assert sorted(first["targets"] + second["targets"]) == sorted(targets)
    r = run_job("dry_quantize_many", **first)
    assert r["errors"] == {} and set(r["results"]) == set(first["targets"])
    alone = run_job("dry_load", **load)
    keys = ("devices", "kv_caches", "flash_attn", "n_ctx", "weights_bytes")
    assert {k: r["memory"][k] for k in keys} == {k: alone[k] for k in keys}
