"""The Evaluate page's "Memory in use" box: NVML per GPU (or the worker's RSS) next to the plan.

Polls about once a second while an evaluation runs. The NVML poll, the worker's
``/proc/<pid>/status`` and the plan (it parses the model's header) run in a background thread,
one reading at a time; the GUI thread only copies the figures into labels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from qtapp.core.evaluate.memory import MemoryTracker, plan_for_run, process_rss
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.context import AppContext

log = logging.getLogger(__name__)

POLL_MS = 1000
HEADERS = ("Device", "In use", "Peak", "Planned")


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    if n < 1024**3:
        return f"{n / 1024**2:.0f} MiB"
    return f"{n / 1024**3:.2f} GiB"


class _Run:
    def __init__(self, key: str, model: Path, params: dict[str, Any], pid: Callable[[], Any]):
        self.key = key
        self.model = model
        self.params = params
        self.pid = pid
        self.tracker: MemoryTracker | None = None
        self.note = ""


class MemoryPanel(QGroupBox):
    """Per device: memory in use now, the peak of this run, and what the planner predicted."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__("Memory in use", parent)
        self.ctx = ctx
        probe = ctx.extras.get("eval_memory_probe")
        if probe is None:
            from qtapp.core.hardware.probe import HardwareProbe

            probe = HardwareProbe(own_pids=lambda: self._own_pids)
        self.probe = probe
        self._own_pids: frozenset[int] = frozenset({os.getpid()})
        self._run: _Run | None = None  # the run shown and polled
        self._open: dict[str, _Run] = {}  # started and not finished (the next can start first)
        self._call: BackgroundCall | None = None
        self._busy = False
        self._closed = False
        self._reported = False  # the probe has had its full first reading

        layout = QVBoxLayout(self)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(12)
        self.grid.setVerticalSpacing(3)
        layout.addLayout(self.grid)
        self.note = QLabel()
        self.note.setObjectName("muted")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self._cells: list[QWidget] = []
        self._show_idle()

        self.timer = QTimer(self)
        self.timer.setInterval(int(ctx.extras.get("eval_memory_poll_ms", POLL_MS)))
        self.timer.timeout.connect(self.poll)

    # -- public ----------------------------------------------------------------------------
    def start_run(
        self, key: str, model: Path, params: dict[str, Any], pid: Callable[[], Any]
    ) -> None:
        """Follow the run ``key`` (its worker's pid from ``pid()``) until :meth:`finish_run`."""
        self._run = self._open[key] = _Run(key, Path(model), dict(params), pid)
        self.setTitle(f"Memory in use: {Path(model).name}")
        self.note.setText("Reading the GPUs and planning…")
        # the first reading (it parses the model's header for the plan) waits one period: at
        # the start the worker is spawned and the previous run stored, enough for one moment
        self.timer.start()

    def finish_run(self, key: str) -> dict[str, int]:
        """Stop following ``key``; its peaks and the prediction, for the run's metrics."""
        run = self._open.pop(key, None)
        if run is None:
            return {}
        if run is self._run:
            self.timer.stop()
            self._run = None
        if run.tracker is None:
            return {}
        if self._run is not None:
            return run.tracker.metrics()
        self.setTitle(f"Memory in use: {run.model.name} (ended)")
        return run.tracker.metrics()

    def rows(self) -> dict[str, Any]:
        """The current run's rows by device (tests, screenshots)."""
        run = self._run
        return dict(run.tracker.rows) if run is not None and run.tracker is not None else {}

    def shutdown(self) -> None:
        self._closed = True
        self.timer.stop()
        if not self._busy:
            self.probe.close()

    # -- polling ---------------------------------------------------------------------------
    def poll(self) -> None:
        run = self._run
        if self._closed or self._busy or run is None:
            return
        pid = run.pid()
        self._own_pids = frozenset({os.getpid(), *([pid] if pid else [])})
        need_plan = run.tracker is None
        first = not self._reported

        def task(_call: BackgroundCall) -> tuple[Any, ...]:
            report = self.probe.report() if first else self.probe.poll()
            plan: tuple[dict[str, int], str] | None = None
            if need_plan:
                plan = _plan(run, report)
            return run, report, plan, process_rss(pid)

        if self._call is not None:
            self._call.delete_when_done()
        self._busy = True
        self._call = BackgroundCall(task, "eval-memory", self)
        self._call.finished.connect(self._on_reading)
        self._call.failed.connect(self._on_failed)
        self._call.start()

    def _on_reading(self, out: object) -> None:
        self._busy = False
        self._reported = True
        if self._closed:
            self.probe.close()
            return
        run, report, plan, rss = out  # type: ignore[misc]
        if run.tracker is None:
            predicted, note = plan if plan is not None else ({}, "no plan")
            run.tracker = MemoryTracker.for_report(report, predicted)
            run.note = note
        run.tracker.sample(report, rss)
        if run is self._run or self._run is None:
            self._show(run, report)

    def _on_failed(self, message: str) -> None:
        self._busy = False
        log.warning("memory reading failed: %s", message)
        self.note.setText(f"Could not read memory in use: {message}")

    # -- showing ---------------------------------------------------------------------------
    def _clear_cells(self) -> None:
        for w in self._cells:
            self.grid.removeWidget(w)
            w.deleteLater()
        self._cells = []

    def _cell(self, text: str, row: int, col: int, bold: bool = False) -> QLabel:
        label = QLabel(text)
        if bold:
            label.setStyleSheet("font-weight: 600;")
        if col > 0:
            label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.grid.addWidget(label, row, col)
        self._cells.append(label)
        return label

    def _show_idle(self) -> None:
        self._clear_cells()
        self.note.setText(
            "While an evaluation runs: GPU memory in use (NVML) per GPU and the worker's host "
            "RAM (RSS), next to what the planner predicted for the model and its settings."
        )

    def _show(self, run: _Run, report: Any) -> None:
        tracker = run.tracker
        if tracker is None:
            return
        if len(self._cells) != (len(tracker.rows) + 1) * len(HEADERS):
            self._clear_cells()
            for c, h in enumerate(HEADERS):
                self._cell(h, 0, c, bold=True)
            for r, row in enumerate(tracker.rows.values(), start=1):
                self._cell(row.label, r, 0).setToolTip(row.device)
                for c in range(1, len(HEADERS)):
                    self._cell("", r, c)
        for r, row in enumerate(tracker.rows.values(), start=1):
            cells = self._cells[r * len(HEADERS) : (r + 1) * len(HEADERS)]
            for label, value in zip(cells[1:], (row.now, row.peak, row.predicted), strict=True):
                label.setText(_size(value))
        host = (
            "the worker's resident memory (RSS), which also holds the logits being scored "
            "and Python; the plan counts llama.cpp's buffers only"
        )
        if getattr(report, "gpus", None):
            replay = os.environ.get("QUANTLENS_NVML_REPLAY")
            gpu = "GPU: NVML " + ("replay (recorded figures, not this machine)" if replay else "")
            text = f"{gpu.strip()}, in use by this app (whole GPU minus other processes). Host: "
        else:
            text = "No NVIDIA GPU: host RAM only, "
        self.note.setText(
            f"{run.note[:1].upper()}{run.note[1:]}. {text}{host}. Sampled every second; the peak "
            "is stored with the run."
        )


def _plan(run: _Run, report: Any) -> tuple[dict[str, int], str]:
    return plan_for_run(run.model, run.params, report)
