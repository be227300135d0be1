"""Worker handlers ``speed_sweep`` (tokens/s against context depth, llama-bench's ``-d``) and
``offload_sweep`` (tokens/s against GPU layers, ``-ngl``, or expert layers kept on the CPU,
``-ncmoe``).

Both measure with :func:`qtapp.core.jobs.engine.bench_speed.run_speed`, the same warm-up,
repetitions, depth fill and timing as the pinned ``tools/llama-bench``. Every point streams as
it is measured; a cancel ends the job with the points measured so far.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.engine.bench_speed import parse_depths, run_speed
from qtapp.core.jobs.engine.llama_session import (
    Aborted,
    AbortFlag,
    LlamaSession,
    gpu_offload_supported,
)
from qtapp.core.jobs.events import Cancelled, Event, Point

Emit = Callable[[Event], None]


_KEEP: list[object] = []  # the log callback: llama.cpp keeps calling it until the child exits


def quiet_llama_log() -> None:
    """Only llama.cpp's warnings and errors go to stderr, as llama-bench logs nothing without
    ``-v``. Otherwise a model load logs about 1,400 lines and every context it opens 200 more,
    which the parent's stderr reader decodes while this child's timed runs may already go (a
    tg test's warm-up is one token)."""
    import llama_cpp  # its import sets its own callback: this one must come after

    keep = {"on": False}

    def on_text(level: int, text: bytes | None, _user: ctypes.c_void_p) -> None:
        if level != 5:  # GGML_LOG_LEVEL_CONT continues the previous piece's level
            keep["on"] = level in (3, 4)  # ggml.h: WARN 3, ERROR 4 (DEBUG 1, INFO 2)
        if keep["on"] and text:
            sys.stderr.write(text.decode("utf-8", "replace"))

    callback = llama_cpp.llama_log_callback(on_text)
    _KEEP.append(callback)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def _session(params: dict[str, Any], abort: AbortFlag, **over: Any) -> LlamaSession:
    quiet_llama_log()
    n_tok = max(int(params.get("n_prompt", 512)), int(params.get("n_gen", 128)), 16)
    kwargs: dict[str, Any] = {
        "n_ctx": n_tok,
        "threads": params.get("threads"),
        "n_gpu_layers": params.get("n_gpu_layers"),
        "n_cpu_moe": int(params.get("n_cpu_moe") or 0),
        "abort": abort,
        "repack": params.get("repack"),
        "abort_in_decode": False,
    }
    kwargs.update(over)
    return LlamaSession(params["model"], **kwargs)


def _cancelled(partial: dict[str, Any]) -> None:
    partial["partial"] = True
    partial.pop("samples", None)
    raise _Stop(partial)


class _Stop(Exception):
    def __init__(self, partial: dict[str, Any]) -> None:
        super().__init__("cancelled")
        self.partial = partial


def _collecting(emit: Emit, points: list[dict[str, Any]]) -> Emit:
    """``emit`` that also keeps every depth point (what a cancel reports)."""

    def inner(ev: Event) -> None:
        if isinstance(ev, Point) and ev.series in ("pp_depth", "tg_depth"):
            points.append({"depth": int(ev.x), "test": ev.series[:2], "avg_ts": ev.y})
            points[-1]["stddev_ts"] = ev.err
        emit(ev)

    return inner


def speed_sweep(params: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """pp and tg of ``params["model"]`` at ``params["depths"]``.

    Params: model, depths (list or "0,1024"), reps (5), n_prompt (512), n_gen (128), n_batch
    (2048), n_ubatch (512), threads, n_gpu_layers, n_cpu_moe, repack.
    """
    abort = AbortFlag()
    abort.install()
    points: list[dict[str, Any]] = []
    base = {"model": str(params["model"]), "depths": parse_depths(params.get("depths"))}
    try:
        try:
            with _session(params, abort) as sess:
                result = dict(base)
                result.update(run_speed(sess, params, _collecting(emit, points)))
                return result
        except Aborted:
            _cancelled({**base, "points": points})
    except _Stop as stop:
        emit(Cancelled(partial=stop.partial))
        sys.stdout.flush()
        raise SystemExit(0) from None
    raise AssertionError("unreachable")  # pragma: no cover


def offload_sweep(params: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """pp and tg at one depth for every value of ``params["values"]``: GPU layers when
    ``params["axis"]`` is ``"ngl"``, MoE blocks whose experts stay on the CPU (all layers
    offloaded otherwise) when it is ``"n_cpu_moe"``.

    Streams ``pp_offload`` / ``tg_offload`` points (x = the value, y = mean tokens/s, err = sd).
    """
    axis = str(params.get("axis", "ngl"))
    if axis not in ("ngl", "n_cpu_moe"):
        raise QuantLensError(f"Unknown offload axis {axis!r}.", "Use ngl or n_cpu_moe.")
    if not gpu_offload_supported():
        raise QuantLensError(
            "This llama.cpp build cannot offload to a GPU, so there is no offload to sweep.",
            "Install a CUDA build of llama-cpp-python (the Hardware page shows the command).",
        )
    abort = AbortFlag()
    abort.install()
    depth = int(params.get("depth", 0))
    values = [int(v) for v in params.get("values", [])]
    measured: list[dict[str, Any]] = []
    base = {"model": str(params["model"]), "offload_axis": axis, "offload_depth": depth}
    try:
        for value in values:
            over = {"n_gpu_layers": value} if axis == "ngl" else {"n_gpu_layers": -1}
            if axis == "n_cpu_moe":
                over["n_cpu_moe"] = value

            def relay(ev: Event, value: int = value) -> None:
                if isinstance(ev, Point) and ev.series in ("pp_depth", "tg_depth"):
                    name = f"{ev.series[:2]}_offload"
                    extra = {**ev.extra, "depth": depth}
                    emit(Point(name, x=value, y=ev.y, err=ev.err, extra=extra))
                    measured.append(
                        {axis: value, "test": ev.series[:2], "avg_ts": ev.y, "stddev_ts": ev.err}
                    )
                elif not isinstance(ev, Point):
                    emit(ev)

            try:
                with _session(params, abort, **over) as sess:
                    run_speed(sess, {**params, "depths": [depth]}, relay)
            except Aborted:
                _cancelled({**base, "points": measured})
        return {**base, "points": measured, "values": values}
    except _Stop as stop:
        emit(Cancelled(partial=stop.partial))
        sys.stdout.flush()
        raise SystemExit(0) from None
