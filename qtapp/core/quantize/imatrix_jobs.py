"""The parent side of importance-matrix jobs, shared by the CLI and the window (no Qt).

A job (``imatrix`` in the worker, :mod:`qtapp.core.jobs.engine.imatrix`) computes what
``llama-imatrix`` computes and writes ``<out>.part``, renamed only on success. Results made in
the app are kept per model under ``<data>/imatrix/<fingerprint>/``, so the Quantize page offers
them again for the same model file wherever it moves (:func:`stored_for`). The file describes
itself (``imatrix.datasets``, ``imatrix.chunk_count``, ``imatrix.chunk_size``): no index.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtapp.core.app.paths import app_paths, resources_dir
from qtapp.core.jobs.events import Event, Finished
from qtapp.core.jobs.job import Job, JobHooks, JobSpec, run_to_end

log = logging.getLogger(__name__)

#: Leviticus and Numbers (KJV): not the evaluation text (Genesis and Exodus)
DEFAULT_CALIBRATION_TEXT = "texts/kjv-leviticus-numbers.txt"
DEFAULT_CHUNKS = 32
#: a calibration text sharing more than this share of its lines with the evaluation text warns
OVERLAP_WARN = 0.01
#: types whose quality an importance matrix improves, beyond those llama.cpp refuses without one
BENEFIT_FAMILIES = ("k-quant", "i-quant")
BENEFIT_MAX_BPW = 5.0


def default_calibration_text() -> Path:
    return resources_dir() / DEFAULT_CALIBRATION_TEXT


def store_root() -> Path:
    return app_paths().data / "imatrix"


def _fingerprint(model: str | Path) -> str:
    from qtapp.core.gguf.fingerprint import fingerprint

    return fingerprint(model)


def stored_path(model: str | Path, text: str | Path, chunks: int | None, ctx: int = 512) -> Path:
    """Where the app keeps ``model``'s matrix made from ``text`` (by the model's fingerprint)."""
    from qtapp.core.quantize.outputs import model_stem

    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(text).stem)[:40]
    n = f"c{chunks}" if chunks and chunks > 0 else "all"
    name = f"{model_stem(model)}-{safe}-{n}-ctx{ctx}.imatrix.gguf"
    return store_root() / _fingerprint(model)[:32] / name


def stored_for(model: str | Path) -> list[Path]:
    """The matrices made in the app for this model file, newest first ([] when none)."""
    try:
        folder = store_root() / _fingerprint(model)[:32]
    except (OSError, ValueError) as exc:
        log.debug("no fingerprint for %s: %s", model, exc)
        return []
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.gguf") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


# -- which types want one ---------------------------------------------------------------------
def imatrix_need(type_name: str) -> str:
    """``"required"`` (llama.cpp refuses without one), ``"benefits"`` or ``""``."""
    from qtapp.core.fit.quants import QUANT_TYPES

    qtype = QUANT_TYPES.get(type_name)
    if qtype is None:
        return ""
    if qtype.needs_imatrix:
        return "required"
    if qtype.family in BENEFIT_FAMILIES and qtype.bpw < BENEFIT_MAX_BPW:
        return "benefits"
    return ""


REQUIRED_WHY = (
    "llama.cpp refuses to quantize to {t} without an importance matrix: at about {bpw:g} bits "
    "per weight the rounding must know which weights matter most, or the model breaks."
)


def required_why(type_name: str) -> str:
    from qtapp.core.fit.quants import QUANT_TYPES

    qtype = QUANT_TYPES[type_name]
    return REQUIRED_WHY.format(t=type_name, bpw=qtype.bpw)


# -- the calibration text and the evaluation text ---------------------------------------------
def _lines(path: Path) -> set[str]:
    out: set[str] = set()
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            norm = " ".join(line.lower().split())
            if len(norm) >= 24:  # headings and short lines say nothing about overlap
                out.add(norm)
    return out


def text_overlap(calibration: str | Path, evaluation: str | Path) -> float:
    """The share of the calibration text's lines that also appear in the evaluation text."""
    a, b = Path(calibration), Path(evaluation)
    try:
        if a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b)):
            return 1.0
        cal = _lines(a)
        if not cal:
            return 0.0
        return len(cal & _lines(b)) / len(cal)
    except OSError:
        return 0.0


def overlap_warning(calibration: str | Path, evaluation: str | Path) -> str:
    """A sentence for the user when the two texts overlap, else ``""``."""
    share = text_overlap(calibration, evaluation)
    if share <= OVERLAP_WARN:
        return ""
    return (
        f"{share:.0%} of the calibration text {Path(calibration).name} is also in the evaluation "
        f"text {Path(evaluation).name}: a quant tuned on the text it is measured on looks better "
        "than it is. Pick another calibration or evaluation text."
    )


def evaluation_text() -> Path:
    """The text the Evaluate page measures on (Settings), or the bundled one."""
    try:
        from qtapp.core.app.settings import Settings

        chosen = Settings.load().eval_text
    except Exception:  # noqa: BLE001 - settings are optional here
        chosen = None
    return Path(chosen) if chosen else resources_dir() / "texts" / "kjv-genesis-exodus.txt"


# -- jobs --------------------------------------------------------------------------------------
@dataclass
class ImatrixOptions:
    text: str | None = None  # None: the bundled calibration text
    ctx: int = 512
    chunks: int | None = DEFAULT_CHUNKS  # None or <= 0: all
    threads: int = 0
    n_gpu_layers: int | None = None


def imatrix_spec(
    model: str | Path, out: str | Path | None = None, options: ImatrixOptions | None = None
) -> JobSpec:
    """The job spec; ``out`` defaults to the app's store for this model (:func:`stored_path`)."""
    opts = options or ImatrixOptions()
    text = Path(opts.text) if opts.text else default_calibration_text()
    chunks = opts.chunks if opts.chunks and opts.chunks > 0 else None
    if out is None:
        out = stored_path(model, text, chunks, opts.ctx)
        out.parent.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {
        "model": str(model),
        "text": str(text),
        "out": str(out),
        "ctx": int(opts.ctx),
        "chunks": chunks,
        "threads": opts.threads or None,
        "n_gpu_layers": opts.n_gpu_layers,
    }
    return JobSpec("imatrix", params)


def part_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".part")


def cleanup(spec: JobSpec, terminal: Event | None) -> bool:
    """After a job that did not finish, remove its partial file (the child may be dead)."""
    if isinstance(terminal, Finished) or spec.kind != "imatrix":
        return False
    part = part_path(spec.params["out"])
    try:
        part.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("Could not remove the partial file %s: %s", part, exc)
        return False


class ImatrixHooks(JobHooks):
    """The window's hooks: a job that did not finish leaves no partial file (child killed)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def end(self, terminal: Event) -> None:
        cleanup(self.spec, terminal)


def run_imatrix(
    spec: JobSpec,
    on_event: Callable[[Event], Any] | None = None,
    on_start: Callable[[Job], Any] | None = None,
) -> Event:
    """Run one imatrix job to its end in this thread (CLI, tests); always cleans up."""
    return run_to_end(spec, on_event, on_start, end=lambda terminal: cleanup(spec, terminal))
