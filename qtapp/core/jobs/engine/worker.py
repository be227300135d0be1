"""Child entry point: read one job spec (a JSON line) from stdin, stream JSON-line events to stdout.

llama.cpp prints to the C-level stdout and stderr; to keep the event stream clean, the real
stdout is duplicated to a private descriptor for events and fd 1 is pointed at stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.engine import lifeline
from qtapp.core.jobs.events import Event, Failed, Finished, Started

#: job kind -> "module:function". A handler is ``run(params, emit) -> dict`` (the result).
HANDLERS: dict[str, str] = {
    "echo": "qtapp.core.jobs.engine.selftest:echo",
    "crash": "qtapp.core.jobs.engine.selftest:crash",
    "sleep": "qtapp.core.jobs.engine.selftest:sleep",
    "llama_info": "qtapp.core.jobs.engine.selftest:llama_info",
    "evaluate": "qtapp.core.jobs.engine.evaluate:evaluate",
    "speed": "qtapp.core.jobs.engine.evaluate:speed",
    "speed_sweep": "qtapp.core.jobs.engine.speed_sweep:speed_sweep",
    "offload_sweep": "qtapp.core.jobs.engine.speed_sweep:offload_sweep",
    "fake_speed_sweep": "qtapp.core.jobs.engine.selftest:fake_speed_sweep",
    "tasks": "qtapp.core.jobs.engine.tasks:tasks",
    "dry_quantize": "qtapp.core.jobs.engine.dry_run:dry_quantize",
    "quantize": "qtapp.core.jobs.engine.quantize:quantize",
    "imatrix": "qtapp.core.jobs.engine.imatrix:imatrix",
    "dry_load": "qtapp.core.jobs.engine.dry_load:dry_load",
    "dry_load_many": "qtapp.core.jobs.engine.dry_load:dry_load_many",
    "real_load": "qtapp.core.jobs.engine.dry_load:real_load",
    "dry_quantize_many": "qtapp.core.jobs.engine.dry_sizes:dry_quantize_many",
    "tailor_scan": "qtapp.core.jobs.engine.tailor_scan:tailor_scan",
}

Emit = Callable[[Event], None]


def _event_stream() -> TextIO:
    """Keep fd 1 for events only; anything llama.cpp prints goes to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


def _read_spec_line() -> str:
    """Read the spec line byte by byte from fd 0, so nothing after it sits in a Python buffer
    that the lifeline thread would not see."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = os.read(sys.stdin.fileno(), 1)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


def main() -> int:
    out = _event_stream()

    def emit(event: Event) -> None:
        out.write(event.to_json() + "\n")
        out.flush()

    try:
        spec = json.loads(_read_spec_line() or "{}")
        lifeline.watch_parent(sys.stdin.fileno())
        kind = spec.get("kind", "")
        target = HANDLERS.get(kind)
        if target is None:
            emit(Failed(message=f"Unknown job kind {kind!r}.", hint="This is a bug in QuantLens."))
            return 2
        module_name, func_name = target.split(":")
        handler: Callable[[dict[str, Any], Emit], dict[str, Any]] = getattr(
            importlib.import_module(module_name), func_name
        )
        emit(Started(job=kind, info={"pid": os.getpid()}))
        result = handler(spec.get("params", {}), emit)
        emit(Finished(result=result or {}))
        return 0
    except QuantLensError as exc:
        emit(Failed(message=exc.message, hint=exc.hint))
        return 1
    except MemoryError:
        emit(Failed(message="Out of memory.", hint="Try a smaller context or a smaller model."))
        return 1
    except Exception as exc:  # noqa: BLE001 - any bug becomes a message, never a dead window
        traceback.print_exc(file=sys.stderr)
        emit(Failed(message=f"{type(exc).__name__}: {exc}", hint="See the log for the traceback."))
        return 1


if __name__ == "__main__":
    sys.exit(main())
