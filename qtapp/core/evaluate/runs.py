"""Turn an evaluation job's events into curves and a stored run (shared by the CLI and the UI).

The results store is optional: when ``qtapp.core.results.store`` is missing or fails, the run is
still shown; the failure is logged, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtapp.core.jobs.events import Cancelled, Event, Failed, Finished, Point

log = logging.getLogger(__name__)


def eval_params(
    model: str | Path,
    base: str | Path | None = None,
    text: str | Path | None = None,
    ctx: int = 512,
    chunks: int | None = None,
    speed: bool = False,
    threads: int | None = None,
    n_gpu_layers: int | None = None,
    reps: int = 5,
    depths: list[int] | None = None,
) -> dict[str, Any]:
    """The ``evaluate`` job's params, JSON-ready (``depths``: speed at these context depths,
    as ``llama-bench -d``; None: depth 0 only)."""
    params: dict[str, Any] = {"model": str(model), "ctx": int(ctx), "speed": bool(speed)}
    if base:
        params["base"] = str(base)
    if text:
        params["text"] = str(text)
    if chunks:
        params["chunks"] = int(chunks)
    if threads:
        params["threads"] = int(threads)
    if n_gpu_layers is not None:
        params["n_gpu_layers"] = int(n_gpu_layers)
    params["reps"] = int(reps)
    if speed and depths:
        params["depths"] = [int(d) for d in depths]
    return params


@dataclass
class Series:
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    errs: list[float | None] = field(default_factory=list)


def quant_label(model: Path) -> str:
    """What the Compare view calls an evaluated file: its quant type (or recipe) when the name
    says it (``gemma-3-270m-Q8_0.gguf`` -> ``Q8_0``), else the header's file type, else the name."""
    from qtapp.core.fit.quants import split_quant_name

    qtype = split_quant_name(model)[1]
    if qtype:
        return qtype
    if "-tailored-" in Path(model).name:  # a tailored recipe's file: the recipe's own name
        from qtapp.core.fit.recipes_store import load_user_recipes

        qtype = split_quant_name(model, load_user_recipes())[1]
        if qtype:
            return qtype
    try:
        from qtapp.core.gguf.reader import peek_gguf

        return peek_gguf(model).file_type or Path(model).name
    except Exception:  # noqa: BLE001 - an unreadable header: the name will do
        return Path(model).name


def _hardware() -> dict[str, Any] | None:
    """CPU model, usable cores and GPU names, so the fit planner can tell whether a measured
    speed was taken on the hardware it plans for."""
    try:
        from qtapp.core.fit.measured_speed import hardware_record

        return hardware_record()
    except Exception as exc:  # noqa: BLE001 - an unknown machine must not stop the evaluation
        log.warning("could not read the hardware: %s", exc)
        return None


#: the store thread's name: it stays for the life of the process, as the window's pool does
STORE_THREAD = "ql-store"
_store_thread: ThreadPoolExecutor | None = None
_store_lock = threading.Lock()


def store_thread() -> ThreadPoolExecutor:
    """The one thread that writes background recorders' runs, in the order they were queued.

    Shared and started once (the window starts it before it shows): starting a thread blocks
    the caller until the new thread is scheduled, and a recorder's first write comes from the
    GUI thread as its job starts: with busy cores that was a 30-50 ms stall per evaluation."""
    global _store_thread
    with _store_lock:
        if _store_thread is None:
            _store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=STORE_THREAD)
        return _store_thread


def start_store_thread() -> None:
    """Start the store thread now and wait until it runs."""
    store_thread().submit(lambda: None).result(10)


@dataclass
class EvalRecorder:
    """Collects the curves of one evaluation and writes them to the results store at the end."""

    model: Path
    params: dict[str, Any]
    label: str = ""
    series: dict[str, Series] = field(default_factory=dict)
    last: dict[str, Point] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    state: str = "running"
    message: str = ""
    run_id: int | None = None
    background: bool = False
    #: what the run was measured on (measured speeds match it); probed at begin when None
    hardware: dict[str, Any] | None = None
    kind: str = "eval"  # the store's run kind: "eval", or "tasks" for task accuracy
    _store: Any = None
    _last_write: Future[None] | None = None

    def _run(self, fn: Callable[[], None]) -> None:
        """Store work in the store thread when ``background`` (the GUI), else right here."""
        if not self.background:
            fn()
            return
        self._last_write = store_thread().submit(fn)

    def begin(self) -> None:
        """Record the run as running (reading the model's header can take 100 ms: see _run)."""
        self._run(self._begin)

    def _begin(self) -> None:
        try:
            from qtapp.core.results.store import ResultsStore
        except ImportError:  # the results store is optional
            return
        try:
            self._store = ResultsStore.open()
            self.run_id = self._store.begin_run(
                self.kind,
                self.model,
                self.label or quant_label(self.model),
                hardware=self.hardware if self.hardware is not None else _hardware(),
                settings=self.params,
            )
        except Exception as exc:  # noqa: BLE001 - a broken store must not stop the evaluation
            log.warning("results store unavailable: %s", exc)
            self._store = None

    def wait(self) -> None:
        """Wait until the store writes queued so far are done."""
        if self._last_write is not None:
            wait_futures([self._last_write])  # a write's own failure was logged where it ran

    def add(self, event: Event) -> None:
        if isinstance(event, Point):
            s = self.series.setdefault(event.series, Series())
            s.xs.append(float(event.x))
            s.ys.append(float(event.y))
            s.errs.append(None if event.err is None else float(event.err))
            self.last[event.series] = event
        elif isinstance(event, Finished):
            self.result = dict(event.result)
            self.state = "finished"
        elif isinstance(event, Cancelled):
            self.result = dict(event.partial) or self.partial_result()
            self.result["partial"] = True
            self.state = "cancelled" if not self.series else "partial"
        elif isinstance(event, Failed):
            self.result = {**self.partial_result(), **(event.partial or {})}
            self.result.pop("stderr_tail", None)
            self.message = f"{event.message} {event.hint}".strip()
            measured = self.series.get("ppl") or self._speed_series()
            self.state = "partial" if measured else "failed"

    def _speed_series(self) -> dict[str, Series]:
        """The speed sweep's curves (tokens/s against depth or GPU layers), by series."""
        names = ("pp_depth", "tg_depth", "pp_offload", "tg_offload")
        return {n: s for n in names if (s := self.series.get(n)) is not None and s.xs}

    def speed_metrics(self) -> dict[str, Any]:
        """The measured curves as the run stores them in its metrics (a JSON string each), so
        the planner reads them with the other metrics."""
        from qtapp.core.fit.speed_curve import SpeedCurve

        out: dict[str, Any] = {}
        series = self._speed_series()
        for kind, key in (("depth", "speed_curve"), ("offload", "offload_curve")):
            mine = {n: (s.xs, s.ys, s.errs) for n, s in series.items() if n.endswith(kind)}
            curve = SpeedCurve.from_series(mine)
            if curve:
                out[key] = curve.to_json()
        if "speed_curve" in out:
            out["depth_max"] = max(int(x) for s in series.values() for x in s.xs)
        return out

    def partial_result(self) -> dict[str, Any]:
        """What the curves say when the job ended without its final summary."""
        out: dict[str, Any] = {"partial": True}
        p = self.last.get("ppl")
        if p is not None:
            out.update(ppl=p.y, ppl_err=p.err, tokens=int(p.x))
        k = self.last.get("kld_running")
        if k is not None:
            out.update(kld_mean=k.y, kld_mean_err=k.err)
        return out

    def finish(self, on_stored: Callable[[], None] | None = None) -> None:
        """Write the curves and final state; ``on_stored`` runs afterwards (in the store thread
        when ``background``)."""
        self._run(lambda: self._finish(on_stored))

    def _finish(self, on_stored: Callable[[], None] | None) -> None:
        try:
            self._write_final()
        finally:
            if on_stored is not None:
                on_stored()

    def _write_final(self) -> None:
        if self._store is None or self.run_id is None:
            return
        try:
            for name, s in self.series.items():
                self._store.add_points(self.run_id, name, s.xs, s.ys, s.errs)
            metrics = {
                k: v for k, v in self.result.items() if isinstance(v, (int, float, bool, str))
            }
            metrics.update(self.speed_metrics())
            self._store.finish_run(
                self.run_id,
                self.state if self.state != "running" else "failed",
                metrics=metrics,
                message=self.message,
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("could not store the evaluation run: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None
