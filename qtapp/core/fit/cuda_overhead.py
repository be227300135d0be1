"""The CUDA overhead of the user's own GPUs, measured by their evaluations.

A plan counts llama.cpp's buffers on a GPU (weights, KV cache, compute) plus what CUDA itself
takes there (its context, cuBLAS and the kernels' images): built-in figures measured on an H200
(:data:`~qtapp.core.fit.devices.CUDA_OVERHEAD_QUANT` / ``_F16``). Every evaluation on a GPU
stores what the plan put on each GPU, the overhead it assumed, and the most memory NVML saw the
worker use there; the difference, GPU by GPU, is the overhead on that GPU model and driver.
Its median over the user's runs then replaces the built-in figure for that GPU, with its source.

Keys an evaluation stores (see :mod:`qtapp.core.evaluate.memory`): ``mem_pred_cuda<i>_bytes``,
``mem_pred_overhead_cuda<i>_bytes``, ``mem_peak_cuda<i>_bytes``, ``mem_float_matrices`` and
in its hardware record the GPU names (CUDA order) and ``gpu_driver``.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["MeasuredOverhead", "measured_overheads", "overheads_from_runs"]


@dataclass
class MeasuredOverhead:
    """One GPU model and driver: the overheads its evaluations measured, by weight kind."""

    gpu: str
    driver: str
    quant: list[int] = field(default_factory=list)  # models with quantized matrices
    floats: list[int] = field(default_factory=list)  # models with F16/BF16/F32 matrices

    def value(self, float_matrices: bool) -> int | None:
        samples = self.floats if float_matrices else self.quant
        return int(statistics.median(samples)) if samples else None

    @property
    def runs(self) -> int:
        return len(self.quant) + len(self.floats)

    def source(self) -> str:
        n = self.runs
        return (
            f"measured on your {self.gpu} (driver {self.driver}) by {n} "
            f"evaluation{'s' if n != 1 else ''}"
        )


def _int(value: Any) -> int | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return int(value) if ok else None


def overheads_from_runs(runs: Iterable[Any]) -> dict[tuple[str, str], MeasuredOverhead]:
    """(GPU name, driver) -> what the evaluations on that GPU model under that driver measured."""
    out: dict[tuple[str, str], MeasuredOverhead] = {}
    for run in runs:
        if getattr(run, "kind", "") != "eval" or getattr(run, "state", "") not in (
            "finished",
            "partial",
        ):
            continue
        hw = run.hardware if isinstance(getattr(run, "hardware", None), dict) else {}
        metrics = run.metrics if isinstance(getattr(run, "metrics", None), dict) else {}
        driver = hw.get("gpu_driver")
        if not driver:
            continue
        floats = bool(metrics.get("mem_float_matrices"))
        for i, name in enumerate(hw.get("gpus") or ()):
            planned = _int(metrics.get(f"mem_pred_cuda{i}_bytes"))
            assumed = _int(metrics.get(f"mem_pred_overhead_cuda{i}_bytes"))
            peak = _int(metrics.get(f"mem_peak_cuda{i}_bytes"))
            if not (planned and assumed and peak):
                continue  # the GPU was not used, or NVML did not see it
            overhead = peak - (planned - assumed)  # what the GPU held beyond the planned buffers
            if overhead <= 0:
                continue
            key = (str(name), str(driver))
            entry = out.setdefault(key, MeasuredOverhead(*key))
            (entry.floats if floats else entry.quant).append(overhead)
    return out


_cache: tuple[tuple[str, int, int], dict[tuple[str, str], MeasuredOverhead]] | None = None


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def measured_overheads() -> dict[tuple[str, str], MeasuredOverhead]:
    """:func:`overheads_from_runs` of the results store, read again only when it changed (the
    Fit page asks at every replan); nothing when it is missing or unreadable."""
    global _cache
    from qtapp.core.app.paths import app_paths
    from qtapp.core.fit.quality_order import stored_eval_runs

    db = app_paths().results_db
    stamp = (str(db), _mtime(db), _mtime(db.with_name(db.name + "-wal")))
    if _cache is not None and _cache[0] == stamp:
        return _cache[1]
    runs = stored_eval_runs("measured CUDA overheads") if stamp[1] else None
    found = {} if runs is None else overheads_from_runs(runs)
    _cache = (stamp, found)
    return found
