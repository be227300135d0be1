"""Every CLI command given bad input ends quickly: exit code != 0 (2 for usage errors), one
clear line on stderr, no traceback, and the source model untouched."""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of hostile inputs beside a tiny model and a model with another vocabulary."""
    from qtapp.testing import tiny as synth

    d = tmp_path_factory.mktemp("bad")
    tiny = synth.write_tiny_llama(d / "tiny.gguf")
    data = tiny.read_bytes()
    (d / "folder").mkdir()
    (d / "empty.gguf").write_bytes(b"")
    (d / "text.gguf").write_text("hello, I am not a model\n")
    for cut in (10, 100, 1000):
        (d / f"cut{cut}.gguf").write_bytes(data[:cut])
    (d / "cut_half.gguf").write_bytes(data[: len(data) // 2])
    (d / "cut_tail.gguf").write_bytes(data[: len(data) - 300])
    absurd = bytearray(data)
    absurd[16:24] = struct.pack("<Q", 2**62)  # metadata key count
    (d / "absurd.gguf").write_bytes(bytes(absurd))
    (d / "afile").write_text("x")
    (d / "empty.txt").write_text("")
    (d / "short.txt").write_text("too short to hold two contexts\n")
    (d / "binary.txt").write_bytes(bytes(range(256)) * 400)
    (d / "prose.txt").write_text("The quick brown fox jumps over the lazy dog. " * 400)
    (d / "not-imatrix.dat").write_text("not an importance matrix\n")

    base_vocab = synth.tiny_vocab

    def bigger_vocab() -> tuple[list[str], list[float], list[int]]:
        tokens, scores, types = base_vocab()
        return tokens + [f"<x{i}>" for i in range(64)], scores + [-1.0] * 64, types + [5] * 64

    with mock.patch.object(synth, "tiny_vocab", bigger_vocab):
        synth.write_tiny_llama(d / "other-vocab.gguf")
    return d


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(args: list[str], limit_fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def preexec() -> None:
        if limit_fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))

    return subprocess.run(
        [sys.executable, "-m", "qtapp", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec if limit_fsize else None,
    )


M, T = "{d}/tiny.gguf", "{d}/prose.txt"
GPU = ["--fast", "--gpus", "1x8GiB"]

# (args with {d} for the folder of bad inputs, expected exit code, phrase on stderr)
CASES: list[tuple[list[str], int, str]] = [
    # plan: unreadable models
    (["plan", "{d}/missing.gguf", *GPU], 2, "does not exist"),
    (["plan", "{d}/folder", *GPU], 2, "is a folder"),
    (["plan", "{d}/empty.gguf", *GPU], 2, "not a GGUF file"),
    (["plan", "{d}/text.gguf", *GPU], 2, "not a GGUF file"),
    (["plan", "{d}/cut10.gguf", *GPU], 2, "truncated"),
    (["plan", "{d}/cut100.gguf", *GPU], 2, "truncated"),
    (["plan", "{d}/cut1000.gguf", *GPU], 2, "truncated"),
    (["plan", "{d}/cut_half.gguf", *GPU], 2, "truncated"),
    (["plan", "{d}/cut_tail.gguf", *GPU], 2, "truncated"),
    (["plan", "{d}/absurd.gguf", *GPU], 2, "implausible"),
    # plan: bad options
    (["plan", M, "--fast", "--gpus", "2x"], 2, "Cannot read the GPU spec"),
    (["plan", M, "--fast", "--gpus", "0x48GiB"], 2, "out of range"),
    (["plan", M, "--fast", "--gpus", "48"], 2, "has no unit"),
    (["plan", M, "--fast", "--gpus=-1x8GiB"], 2, "Cannot read the GPU spec"),
    (["plan", M, *GPU, "--ctx", "0"], 2, "Context 0 is out of range"),
    (["plan", M, *GPU, "--ctx", "99999999999"], 2, "out of range"),
    (["plan", M, *GPU, "--kv", "bad"], 2, "invalid choice"),
    (["plan", M, *GPU, "--batch", "0"], 2, "n_batch"),
    (["plan", M, *GPU, "--ngl", "-7"], 2, "--ngl -7"),
    (["plan", M, *GPU, "--margin", "-5"], 2, "--margin -5"),
    (["plan", M, *GPU, "--ram", "lots"], 2, "host RAM"),
    (["plan", M, *GPU, "--types", ","], 2, "names no type"),
    (["plan", M, *GPU, "--types", "Q9_Z"], 2, "Unknown quant type"),
    # eval
    (["eval", "{d}/missing.gguf", "--text", T], 2, "does not exist"),
    (["eval", "{d}/folder", "--text", T], 2, "is a folder"),
    (["eval", "{d}/text.gguf", "--text", T], 2, "not a GGUF file"),
    (["eval", "{d}/cut_half.gguf", "--text", T], 2, "truncated"),
    (["eval", M, "--text", "{d}/empty.txt"], 2, "is empty"),
    (["eval", M, "--text", "{d}/folder"], 2, "is a folder"),
    (["eval", M, "--text", "{d}/missing.txt"], 2, "Cannot read the evaluation text"),
    (["eval", M, "--text", "{d}/binary.txt"], 2, "looks binary"),
    (["eval", M, "--text", "{d}/short.txt"], 1, "Use a longer text"),
    (["eval", M, "--text", T, "--chunks", "0"], 2, "--chunks 0"),
    (["eval", M, "--text", T, "--chunks", "-1"], 2, "--chunks -1"),
    (["eval", M, "--text", T, "--ctx", "0"], 2, "too small"),
    (["eval", M, "--text", T, "--ctx", "7"], 2, "too small"),
    (["eval", M, "--text", T, "--threads", "-2"], 2, "--threads -2"),
    (["eval", M, "--text", T, "--speed", "--reps", "0"], 2, "--reps 0"),
    (["eval", M, "--text", T, "--n-gpu-layers", "-9"], 2, "--n-gpu-layers"),
    (["eval", M, "--text", T, "--base", "{d}/other-vocab.gguf"], 2, "different vocabulary"),
    # quantize
    (["quantize", "{d}/missing.gguf", "-t", "Q8_0", "--out", "{d}/q"], 1, "does not exist"),
    (["quantize", "{d}/folder", "-t", "Q8_0", "--out", "{d}/q"], 1, "is a folder"),
    (["quantize", "{d}/text.gguf", "-t", "Q8_0", "--out", "{d}/q"], 1, "not a GGUF"),
    (["quantize", "{d}/cut_half.gguf", "-t", "Q8_0", "--out", "{d}/q"], 1, "truncated"),
    (["quantize", M, "-t", "Q8_0", "--out", "{d}/afile"], 1, "is a file, not a folder"),
    (["quantize", M, "-t", "BOGUS", "--out", "{d}/q"], 2, "unknown quant type"),
    (["quantize", M, "-t", "IQ2_XXS", "--out", "{d}/q"], 1, "needs an importance matrix"),
    (
        ["quantize", M, "-t", "IQ2_XXS", "--imatrix", "{d}/not-imatrix.dat", "--out", "{d}/q"],
        1,
        "not a usable importance matrix",
    ),
    (["quantize", M, "-t", "Q8_0", "--output-type", "ZZZ", "--out", "{d}/q"], 2, "'ZZZ'"),
    (["quantize", M, "-t", "Q8_0", "--tensor-type", "foo", "--out", "{d}/q"], 2, "REGEX=TYPE"),
    (["quantize", M, "-t", "Q8_0", "--tensor-type", "a(=Q8_0", "--out", "{d}/q"], 2, "regular"),
    (["quantize", M, "-t", "Q8_0", "--threads", "-1", "--out", "{d}/q"], 2, "negative"),
    # results
    (["results", "--format", "bad"], 2, "invalid choice"),
    (["results", "--delete", "999"], 1, "no run with id 999"),
    (["results", "--rename", "abc", "x"], 2, "a run ID is a number"),
    (["results", "--format", "csv", "--out", "{d}/afile/x.csv"], 1, "Could not write"),
]


@pytest.mark.parametrize(("args", "code", "phrase"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_fails_cleanly(bad: Path, args: list[str], code: int, phrase: str) -> None:
    before = _sha(bad / "tiny.gguf")
    proc = _run([a.replace("{d}", str(bad)) for a in args])
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert phrase.lower() in proc.stderr.lower()
    # one message line (argparse's usage lines and quantize's progress bar aside)
    lines = [
        ln
        for ln in proc.stderr.splitlines()
        if ln.strip() and not ln.startswith(("usage:", " ")) and "] " not in ln
    ]
    assert len(lines) == 1, proc.stderr
    assert _sha(bad / "tiny.gguf") == before
    assert not list(bad.glob("**/*.part"))


def test_full_disk_removes_the_partial_output(bad: Path) -> None:
    out = bad / "full"
    proc = _run(["quantize", str(bad / "tiny.gguf"), "-t", "Q8_0", "--out", str(out)], 1 << 20)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "disk is full" in proc.stderr
    assert not [p for p in out.iterdir() if p.suffix in (".gguf", ".part")]


def test_unusable_home_folder_is_one_line(bad: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLENS_HOME", str(bad / "afile"))
    proc = _run(["results"])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "QUANTLENS_HOME" in proc.stderr
