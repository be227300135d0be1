"""Tiny handlers that prove the child machinery works (used by tests and the About box)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

from qtapp.core.jobs.events import Event, Point, Progress


def echo(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    for i in range(int(params.get("steps", 3))):
        emit(Progress(fraction=(i + 1) / int(params.get("steps", 3)), message=f"step {i + 1}"))
    return {"echo": params.get("value")}


def crash(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """Die the way llama.cpp dies: an abort or a segfault from C, no Python exception."""
    how = params.get("how", "abort")
    if how == "segv":
        ctypes.string_at(0)
    os.kill(os.getpid(), signal.SIGABRT if how == "abort" else signal.SIGKILL)
    return {}


def sleep(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """Block in a single call, as a long llama.cpp call does, so cancel must kill."""
    emit(Progress(fraction=0.0, message="sleeping"))
    time.sleep(float(params.get("seconds", 60)))
    return {}


def llama_info(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    from qtapp.core.jobs.engine.build_probe import probe_in_process

    return probe_in_process()


def fake_speed_sweep(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """A stand-in speed source for tests on machines without a GPU: the event stream of
    ``speed_sweep`` (or of ``offload_sweep`` when ``axis`` is given) with made-up figures from
    ``params`` (``tg0`` and ``pp0`` tokens/s, falling with depth or rising with GPU layers).
    ``stall_after`` points, it blocks like a long decode (for cancel tests)."""
    axis = params.get("axis")
    xs = [int(v) for v in params.get("values" if axis else "depths", [0])]
    tg0, pp0 = float(params.get("tg0", 50.0)), float(params.get("pp0", 500.0))
    stall = int(params.get("stall_after", -1))
    points = []
    for i, x in enumerate(xs):
        if i == stall:
            emit(Progress(fraction=i / len(xs), message="stalled"))
            time.sleep(60)
        scale = (1 + x / 8) if axis else 1 / (1 + x / 4096)
        for test, base in (("pp", pp0), ("tg", tg0)):
            y = base * scale
            series = f"{test}_offload" if axis else f"{test}_depth"
            emit(Point(series, x=x, y=y, err=0.02 * y, extra={"fake": True}))
            points.append({"x": x, "test": test, "avg_ts": y})
        emit(Progress(fraction=(i + 1) / len(xs), message=f"point {i + 1}/{len(xs)}"))
    out = {"model": str(params.get("model", "")), "points": points, "fake": True}
    if axis:
        out.update(offload_axis=axis, offload_depth=int(params.get("depth", 0)))
    return out


_unused: type[Event] = Event
