"""Quantize faults: each ends with a clear message, no partial file, an unchanged source."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

import pytest

from qtapp.core.jobs.events import Event, Failed, Finished, Progress
from qtapp.core.jobs.job import Job
from qtapp.core.quantize.imatrix import random_imatrix_for, write_imatrix_gguf
from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def run(model: Path, out_dir: Path, target: str = "Q4_K_M", **params) -> Event:
    spec = quantize_spec(model, target, QuantizeOptions(out_dir=str(out_dir)))
    spec.params.update(params)
    return run_quantize(spec)


@pytest.fixture
def source(tiny_model: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "src" / "tiny-F16.gguf"
    copy.parent.mkdir()
    shutil.copyfile(tiny_model, copy)
    return copy


@pytest.mark.parametrize("keep", [2 / 3, 0.002], ids=["data-cut", "header-cut"])
def test_truncated_source(source: Path, tmp_path: Path, keep: float) -> None:
    with source.open("r+b") as fh:
        fh.truncate(int(source.stat().st_size * keep))
    before = sha256(source)
    terminal = run(source, tmp_path / "out")
    assert isinstance(terminal, Failed)
    assert "truncated" in (terminal.message + terminal.hint).lower()
    assert leftovers(tmp_path / "out") == []
    assert sha256(source) == before


def test_not_a_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04" + os.urandom(4096))
    before = sha256(fake)
    terminal = run(fake, tmp_path / "out")
    assert isinstance(terminal, Failed)
    assert "not a GGUF" in terminal.message
    assert leftovers(tmp_path / "out") == []
    assert sha256(fake) == before


def test_unwritable_output_folder(source: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses new files
        folder = Path("/sys")
        try:
            (folder / "quantlens-probe").open("xb").close()
        except OSError:
            pass
        else:
            (folder / "quantlens-probe").unlink()
            pytest.skip("no read-only folder to try as root")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
    before = sha256(source)
    terminal = run(source, folder)
    assert isinstance(terminal, Failed)
    assert "not writable" in terminal.message
    assert not (folder / "tiny-Q4_K_M.gguf.part").exists()
    assert not (folder / "tiny-Q4_K_M.gguf").exists()
    assert sha256(source) == before


def test_disk_fills_during_the_write(source: Path, tmp_path: Path) -> None:
    before = sha256(source)
    out = tmp_path / "out"
    terminal = run(source, out, _fsize_limit=600_000)  # the Q4_K_M output is about 1.6 MB
    assert isinstance(terminal, Failed)
    assert "disk is full" in terminal.message
    assert "partial file was removed" in terminal.hint
    assert leftovers(out) == []
    assert sha256(source) == before


def test_not_enough_free_space_is_refused_before_writing(tmp_path: Path) -> None:
    from qtapp.core.errors import QuantLensError
    from qtapp.core.quantize.jobs import check_output_free

    with pytest.raises(QuantLensError, match="Not enough free disk space"):
        check_output_free(tmp_path, shutil.disk_usage(tmp_path).free + (1 << 40))


def test_child_killed_from_outside(source: Path, tmp_path: Path) -> None:
    """SIGKILL mid-write (an OOM kill): a clear message, and the parent removes the .part."""
    values = random_imatrix_for(source)
    imatrix = write_imatrix_gguf(
        tmp_path / "m.imatrix", {k: v for k, v in values.items()}, {k: [1] for k in values}
    )
    before = sha256(source)
    out = tmp_path / "out"
    spec = quantize_spec(source, "IQ2_XXS", QuantizeOptions(out_dir=str(out), imatrix=str(imatrix)))
    jobs: list[Job] = []
    seen_part: list[bool] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Progress) and event.detail.get("index", 0) >= 1 and not seen_part:
            seen_part.append((out / "tiny-IQ2_XXS.gguf.part").exists())
            os.kill(jobs[0].pid, signal.SIGKILL)

    terminal = run_quantize(spec, on_event=on_event, on_start=jobs.append)
    assert seen_part == [True]  # it was killed in the middle of writing
    assert isinstance(terminal, Failed) and not isinstance(terminal, Finished)
    assert "killed" in terminal.message
    assert leftovers(out) == []
    assert sha256(source) == before


def test_output_may_not_replace_the_source(source: Path) -> None:
    spec = quantize_spec(source, "F16", QuantizeOptions(out_dir=str(source.parent), overwrite=True))
    spec.params["out"] = str(source)
    before = sha256(source)
    terminal = run_quantize(spec)
    assert isinstance(terminal, Failed) and "overwrite the source" in terminal.message
    assert sha256(source) == before
