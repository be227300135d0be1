"""Progress and failure messages of a real quantize run, from llama.cpp's log lines."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.engine.qparams import TENSOR_LINE
from qtapp.core.jobs.events import Progress

#: seconds between progress events (the last tensor always reports)
_PROGRESS_EVERY = 0.1


class ProgressTracker:
    """Turns the per-tensor log lines into :class:`Progress` events by bytes written."""

    def __init__(self, emit: Any, sizes: dict[str, int], total: int, count: int) -> None:
        self.emit = emit
        self.sizes = sizes
        self.total = max(total, 1)
        self.count = count
        self.done = 0
        self.index = 0
        self.t0 = time.monotonic()
        self.last_emit = 0.0
        self.errors: list[str] = []

    def on_line(self, level: int, line: str) -> None:
        match = TENSOR_LINE.match(line.strip())
        if match is None:
            lowered = line.lower()
            if line.strip() and (level >= 3 or "error" in lowered or "failed" in lowered):
                self.errors.append(line.strip())
            return
        name = match.group(3)
        self.index = int(match.group(1))
        self.done += self.sizes.get(name, 0)
        now = time.monotonic()
        if now - self.last_emit >= _PROGRESS_EVERY or self.index >= self.count:
            self.last_emit = now
            self.report(name)

    def report(self, tensor: str) -> None:
        elapsed = time.monotonic() - self.t0
        fraction = min(self.done / self.total, 1.0)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        # the first tensors are tiny norms: an ETA from them would say hours; wait for real data
        settled = fraction >= 0.02 and elapsed >= 1.0
        eta = (self.total - self.done) / rate if rate > 0 and settled else None
        self.emit(
            Progress(
                fraction=fraction,
                message=f"{tensor} ({self.index}/{self.count})",
                detail={
                    "done_bytes": self.done,
                    "total_bytes": self.total,
                    "tensor": tensor,
                    "index": self.index,
                    "count": self.count,
                    "elapsed": elapsed,
                    "eta": eta,
                    "mb_per_s": rate / 1e6,
                },
            )
        )


def failure_message(errors: list[str], out: Path, need: int) -> QuantLensError:
    detail = next(
        (
            e.split("failed to quantize:", 1)[-1].strip()
            for e in reversed(errors)
            if "failed to quantize" in e
        ),
        "",
    ) or (errors[-1] if errors else "")
    try:
        free = shutil.disk_usage(out.parent).free
    except OSError:
        free = need
    if "iostream" in detail or "write" in detail.lower() or free < need // 8:
        return QuantLensError(
            f"Writing {out.name} failed: the disk is full or the file grew too large"
            f" ({free / 2**20:.0f} MiB free in {out.parent}).",
            "Free some space or choose another output folder; the partial file was removed.",
        )
    if "imatrix" in detail.lower() or "importance matrix" in detail.lower():
        return QuantLensError(
            f"llama.cpp refused the importance matrix: {detail}",
            "Use an imatrix computed for this very model.",
        )
    return QuantLensError(
        f"llama.cpp could not quantize the model: {detail or 'unknown error'}",
        "The source may be damaged or of an unsupported architecture; "
        "the partial file was removed.",
    )
