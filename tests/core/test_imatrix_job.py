"""Importance matrices made by QuantLens (issue #14): the job, the GGUF file, bad inputs.

What llama-imatrix itself gives on the same inputs is checked in bench/imatrix.py (the vendored
tool is not built in a test run); here: the file is llama.cpp's layout, the counts and values
follow the reference's rules, MoE experts keep their own counts, the quantizer takes the file,
and every failure ends in one message with no file left behind.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from qtapp.core.jobs.events import Cancelled, Failed, Finished, Progress
from qtapp.core.jobs.job import Job, JobSpec
from qtapp.core.quantize.imatrix import imatrix_gguf_bytes, load_imatrix, write_imatrix_dat
from qtapp.core.quantize.imatrix_jobs import (
    ImatrixOptions,
    default_calibration_text,
    imatrix_need,
    imatrix_spec,
    overlap_warning,
    run_imatrix,
    stored_for,
    text_overlap,
)
from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize

pytestmark = pytest.mark.timeout(240)
CTX = 64


def _run(model: Path, out: Path | None, chunks: int = 3, **params: object) -> tuple:
    spec = imatrix_spec(model, out, ImatrixOptions(ctx=CTX, chunks=chunks, threads=2))
    spec = JobSpec(spec.kind, {**spec.params, **params})
    events: list = []
    terminal = run_imatrix(spec, on_event=events.append)
    return terminal, events, spec


def _weights_2d(model: Path) -> dict[str, list[int]]:
    return {
        t.name: [int(x) for x in t.shape]
        for t in GGUFReader(model).tensors
        if t.name.startswith("blk.") and len(t.shape) >= 2
    }


@pytest.fixture(scope="module")
def moe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qtapp.testing.archs import write_tiny_qwen3moe
    from qtapp.testing.filled import fill_random

    return fill_random(write_tiny_qwen3moe(tmp_path_factory.mktemp("moe") / "moe.gguf"))


def test_dense_model_counts_and_values(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.imatrix.gguf"
    terminal, events, _ = _run(tiny_model, out, chunks=3, batch=CTX)
    assert isinstance(terminal, Finished), terminal
    r = terminal.result
    assert r["chunks"] == 3 and r["chunk_count"] == 3 and r["entries"] > 0
    # progress with an ETA, rising to the last chunk
    steps = [e for e in events if isinstance(e, Progress) and e.detail.get("phase") == "imatrix"]
    fractions = [e.fraction for e in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert steps[-1].detail["chunk"] == 3 and steps[-1].detail["eta"] == 0.0
    reader = GGUFReader(out)
    fields = reader.fields
    assert fields["general.type"].contents() == "imatrix"
    assert fields["imatrix.chunk_count"].contents() == 3
    assert fields["imatrix.chunk_size"].contents() == CTX
    assert fields["imatrix.datasets"].contents() == [str(default_calibration_text())]
    tensors = {t.name: t for t in reader.tensors}
    weights = _weights_2d(tiny_model)
    # every blk.* matrix multiplied by activations: all 2-D weights of this llama
    assert {n.removesuffix(".in_sum2") for n in tensors if n.endswith(".in_sum2")} == set(weights)
    for name, shape in weights.items():
        sums = np.asarray(tensors[f"{name}.in_sum2"].data)
        counts = np.asarray(tensors[f"{name}.counts"].data)
        assert sums.size == shape[0]  # one sum per input column
        assert counts.tolist() == [3 * CTX]  # one count per token
        assert (sums > 0).all() and np.isfinite(sums).all()
    # llama.cpp's own layout, byte for byte (sorted names, F32, 32-byte alignment)
    imat = load_imatrix(out)
    assert imat.chunk_count == 3 and imat.chunk_size == CTX and not imat.legacy
    assert not (tmp_path / "tiny.imatrix.gguf.part").exists()


def test_moe_experts_have_their_own_counts(moe_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "moe.imatrix.gguf"
    terminal, _, _ = _run(moe_model, out, chunks=2)
    assert isinstance(terminal, Finished), terminal
    tensors = {t.name: np.asarray(t.data) for t in GGUFReader(out).tensors}
    n_expert, n_used = 8, 2
    for layer in range(4):
        for kind in ("gate", "up", "down"):
            name = f"blk.{layer}.ffn_{kind}_exps.weight"
            counts = tensors[f"{name}.counts"].reshape(-1)
            sums = tensors[f"{name}.in_sum2"].reshape(n_expert, -1)
            assert counts.size == n_expert
            # every token goes to n_used experts: the counts add up to tokens x n_used
            assert counts.sum() == 2 * CTX * n_used
            assert len(set(counts.tolist())) > 1  # random routing: experts differ
            # an expert's sums are zero exactly where it saw no token
            assert ((sums.sum(axis=1) > 0) == (counts > 0)).all()
        # the router and attention stay dense, one count
        assert tensors[f"blk.{layer}.ffn_gate_inp.weight.counts"].tolist() == [2 * CTX]


def test_device_copy_path_gives_the_same_file(moe_model: Path, tmp_path: Path) -> None:
    """Activations copied with ggml_backend_tensor_get (the GPU path) sum to the same bytes."""
    host, _, _ = _run(moe_model, tmp_path / "host.gguf", chunks=2)
    copied, _, _ = _run(moe_model, tmp_path / "copied.gguf", chunks=2, _force_copy=True)
    assert isinstance(host, Finished) and isinstance(copied, Finished)
    assert (tmp_path / "host.gguf").read_bytes() == (tmp_path / "copied.gguf").read_bytes()


def test_writer_matches_llama_cpp_layout(tmp_path: Path) -> None:
    sums = {
        "blk.0.b.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "blk.0.a.weight": np.ones((1, 5), np.float32),
    }
    counts = {"blk.0.b.weight": np.array([4, 0]), "blk.0.a.weight": np.array([7])}
    data = imatrix_gguf_bytes(sums, counts, ["t.txt"], 2, 512)
    assert data[:4] == b"GGUF" and struct.unpack_from("<Iqq", data, 4) == (3, 4, 4)
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    reader = GGUFReader(path)
    assert [t.name for t in reader.tensors] == [
        "blk.0.a.weight.in_sum2", "blk.0.a.weight.counts",
        "blk.0.b.weight.in_sum2", "blk.0.b.weight.counts",
    ]  # fmt: skip
    assert all(t.data_offset % 32 == 0 for t in reader.tensors)
    imat = load_imatrix(path)  # values divided by their count; a zero count reads as 1
    np.testing.assert_allclose(imat.data["blk.0.b.weight"], [0, 0.25, 0.5, 1, 1, 1])
    np.testing.assert_allclose(imat.data["blk.0.a.weight"], [1 / 7] * 5)


def test_quantizer_takes_our_file_and_legacy_still_reads(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.imatrix.gguf"
    terminal, _, _ = _run(tiny_model, out, chunks=2)
    assert isinstance(terminal, Finished), terminal
    qdir = tmp_path / "q"
    spec = quantize_spec(tiny_model, "IQ2_XS", QuantizeOptions(out_dir=str(qdir), imatrix=str(out)))
    done = run_quantize(spec)
    assert isinstance(done, Finished), done
    fields = GGUFReader(done.result["path"]).fields
    assert fields["quantize.imatrix.file"].contents() == str(out)
    assert fields["quantize.imatrix.chunks_count"].contents() == 2
    # the same values as a legacy .dat: the quantizer reads them the same
    imat = load_imatrix(out)
    dat = write_imatrix_dat(
        tmp_path / "same.dat", {k: np.asarray(v) for k, v in imat.data.items()}, ncall=2
    )
    legacy = load_imatrix(dat)
    assert legacy.legacy and set(legacy.data) == set(imat.data)
    for name, values in imat.data.items():
        np.testing.assert_allclose(legacy.data[name], values, rtol=1e-6)


@pytest.mark.parametrize(
    ("text", "words"),
    [("", ["empty"]), ("Just a few words, far from two chunks.\n", ["tokens", str(2 * CTX)])],
)
def test_bad_texts_fail_with_one_message(
    tiny_model: Path, tmp_path: Path, text: str, words: list[str]
) -> None:
    path = tmp_path / "calib.txt"
    path.write_text(text)
    out = tmp_path / "m.gguf"
    spec = imatrix_spec(tiny_model, out, ImatrixOptions(text=str(path), ctx=CTX, chunks=2))
    terminal = run_imatrix(spec)
    assert isinstance(terminal, Failed)
    assert all(w in terminal.message for w in words), terminal.message
    assert "\n" not in terminal.message and terminal.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt"]


@pytest.mark.parametrize("damage", ["not_gguf", "truncated"])
def test_model_that_fails_to_load(tiny_model: Path, tmp_path: Path, damage: str) -> None:
    bad = tmp_path / "bad.gguf"
    data = tiny_model.read_bytes()
    bad.write_bytes(b"hello, not a model\n" if damage == "not_gguf" else data[: len(data) // 2])
    terminal, _, _ = _run(bad, tmp_path / "m.gguf")
    assert isinstance(terminal, Failed)
    assert "bad.gguf" in terminal.message and "\n" not in terminal.message
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "m.gguf.part").exists()


def test_full_disk_leaves_no_file(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    terminal, _, _ = _run(tiny_model, out, chunks=2, _fsize_limit=4096)
    assert isinstance(terminal, Failed)
    assert "disk is full" in terminal.message, terminal.message
    assert list(tmp_path.iterdir()) == []


def test_cancel_is_immediate_and_leaves_nothing(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    spec = imatrix_spec(tiny_model, out, ImatrixOptions(ctx=CTX, chunks=None, threads=1))
    spec = JobSpec(spec.kind, {**spec.params, "batch": CTX})
    job = Job(spec)
    seen: list = []
    for event in job.events():
        seen.append(event)
        if isinstance(event, Progress) and event.detail.get("chunk", 0) >= 1:
            job.cancel()
    assert isinstance(seen[-1], Cancelled)
    assert not job.is_running()
    from qtapp.core.quantize.imatrix_jobs import cleanup

    cleanup(spec, seen[-1])
    assert list(tmp_path.iterdir()) == []


def test_stored_with_the_model_fingerprint(tiny_model: Path, tmp_path: Path) -> None:
    terminal, _, spec = _run(tiny_model, None, chunks=2)
    assert isinstance(terminal, Finished), terminal
    made = Path(terminal.result["path"])
    assert stored_for(tiny_model) == [made]
    moved = tmp_path / "renamed-copy.gguf"  # same file elsewhere: same fingerprint
    shutil.copyfile(tiny_model, moved)
    assert stored_for(moved) == [made]
    other = tmp_path / "other.gguf"
    from qtapp.testing.tiny import TinySpec, write_tiny_llama

    write_tiny_llama(other, TinySpec(n_layer=2))
    assert stored_for(other) == []


def test_overlap_and_type_needs(tmp_path: Path) -> None:
    calib = default_calibration_text()
    genesis = calib.with_name("kjv-genesis-exodus.txt")
    assert text_overlap(genesis, genesis) == 1.0
    assert text_overlap(calib, genesis) < 0.01  # the bundled texts are different books
    assert overlap_warning(calib, genesis) == ""
    part = tmp_path / "part.txt"
    part.write_text("\n".join(genesis.read_text().splitlines()[:400]))
    assert "100% of the calibration text part.txt" in overlap_warning(part, genesis)
    assert imatrix_need("IQ2_XS") == "required" and imatrix_need("Q2_K_S") == "required"
    assert imatrix_need("Q2_K") == "benefits" and imatrix_need("Q4_K_M") == "benefits"
    assert imatrix_need("Q8_0") == "" and imatrix_need("F16") == ""


def test_cli(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.imatrix.gguf"
    cmd = [sys.executable, "-m", "qtapp", "imatrix", str(tiny_model), "--ctx", str(CTX)]
    proc = subprocess.run(
        [*cmd, "--chunks", "2", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["path"] == str(out) and result["chunks"] == 2 and out.is_file()
    assert "ETA" in proc.stderr
    again = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = subprocess.run(
        [*cmd, "--text", str(empty), "--out", str(tmp_path / "x.gguf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "empty" in proc.stderr and not (tmp_path / "x.gguf").exists()
