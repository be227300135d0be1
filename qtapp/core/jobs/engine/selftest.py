"""Tiny handlers that prove the child machinery works (used by tests and the About box)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

from qtapp.core.jobs.events import Event, Progress


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


_unused: type[Event] = Event
