"""The Evaluate page: perplexity, KL divergence and speed with live, overlaid curves.

Public hook for the demo tour and other pages: :meth:`Page.queue`. Each model is one
``evaluate`` job through ``ctx.jobs``; its points go to the charts as they arrive and the run
is stored in the results database when it ends (a cancelled run keeps its points, "partial").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.app.glossary import explain
from qtapp.core.evaluate.runs import EvalRecorder, eval_params
from qtapp.core.fit.quants import split_quant_name
from qtapp.core.jobs.events import Cancelled, Event, Failed, Finished, Point, Progress
from qtapp.core.jobs.job import JobSpec
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.live_plot import PALETTE, LivePlot
from qtapp.ui.common.turns import TurnQueue
from qtapp.ui.common.workers import JobRunner
from qtapp.ui.evaluate.controls import EvalControls
from qtapp.ui.evaluate.memory_panel import MemoryPanel
from qtapp.ui.evaluate.offload_panel import OffloadPanel
from qtapp.ui.evaluate.speed_charts import SpeedCurves

log = logging.getLogger(__name__)

TASK_SERIES = ("hellaswag", "winogrande", "mc")  # the tasks job names its points by the kind

COLUMNS = [
    "Model", "State", "PPL", "Bits/byte", "KLD mean", "KLD 99%", "Same top", "pp512 t/s",
    "tg128 t/s",
]  # fmt: skip


def _pm(r: dict[str, Any], key: str, digits: int, scale: float = 1.0) -> str:
    v = r.get(key)
    if not isinstance(v, (int, float)):
        return "–"
    err = r.get(f"{key}_err") if key != "pp_tps" and key != "tg_tps" else r.get(f"{key}_sd")
    text = f"{v * scale:.{digits}f}"
    if isinstance(err, (int, float)) and err:
        text += f" ± {err * scale:.{digits}f}"
    return text


class _RunView:
    """One evaluation job as the page sees it: its key, colour, recorder and table row."""

    def __init__(self, key: str, model: Path, color: str, recorder: EvalRecorder, row: int) -> None:
        self.key = key
        self.model = model
        self.color = color
        self.recorder = recorder
        self.row = row
        self.runner: JobRunner | None = None


class Page(QWidget):
    key = "evaluate"
    title = "Evaluate"

    #: every queued evaluation has ended
    all_done = Signal()

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._runs: list[_RunView] = []
        self._turns = TurnQueue(self)  # the submits of a queue of models, one per turn
        self._counter = 0
        self._check: BackgroundCall | None = None  # the depth check before a speed sweep

        self.controls = EvalControls()
        self.controls.start.connect(self.start)
        self.controls.cancel.connect(self.cancel)
        self.memory = MemoryPanel(ctx)
        self.controls.add_section(self.memory)
        self.offload = OffloadPanel(ctx, self.controls.model_paths)
        self.controls.add_section(self.offload)
        left = QScrollArea()
        left.setWidgetResizable(True)
        left.setWidget(self.controls)
        left.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        left.setMinimumWidth(400)

        self.ppl_plot = LivePlot(
            "Running perplexity (band: ± uncertainty)", "tokens scored", "PPL", band=True
        )
        self.kld_plot = LivePlot(
            "KL divergence to the base, per chunk",
            "chunk",
            "mean KLD",
            symbols=True,
            integer_x=True,
            legend=False,
        )
        self.speed = SpeedCurves()
        self.pp_plot, self.tg_plot = self.speed.pp_plot, self.speed.tg_plot
        self.acc_plot = LivePlot(
            "Task accuracy (95% band)",
            "tasks scored",
            "% right",
            band=True,
            legend=False,
        )
        self._task_runners: list[JobRunner] = []
        self.plots = [self.ppl_plot, self.kld_plot, self.pp_plot, self.tg_plot, self.acc_plot]

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        terms = [None, None, "ppl", "bpb", "kld", "kld", "same_top", "pp", "tg"]
        for col, term in enumerate(terms):
            if term:
                self.table.horizontalHeaderItem(col).setToolTip(explain(term))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.setMinimumHeight(110)

        export_row = QHBoxLayout()
        export_row.addStretch(1)
        for label, fmt in (("Export PNG…", "png"), ("Export SVG…", "svg")):
            btn = QPushButton(label)
            btn.clicked.connect(lambda _=False, f=fmt: self._export_dialog(f))
            export_row.addWidget(btn)
        clear = QPushButton("Clear charts")
        clear.clicked.connect(self.clear_charts)
        export_row.addWidget(clear)

        speed_row = QSplitter(Qt.Horizontal)
        speed_row.addWidget(self.speed)
        speed_row.addWidget(self.acc_plot)
        speed_row.setStretchFactor(0, 2)
        speed_row.setStretchFactor(1, 1)
        charts = QSplitter(Qt.Vertical)
        charts.addWidget(self.ppl_plot)
        charts.addWidget(self.kld_plot)
        charts.addWidget(speed_row)
        charts.addWidget(self.table)
        charts.setSizes([260, 170, 300, 140])
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(charts, 1)
        rv.addLayout(export_row)

        split = QSplitter(Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([410, 1000])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        ctx.model_changed.connect(self._on_model_changed)
        if ctx.model_path is not None:
            self.controls.set_models([Path(ctx.model_path)])

    # -- public ----------------------------------------------------------------------------
    def queue(
        self,
        models: list[Path],
        base: Path | None,
        chunks: int,
        speed: bool = True,
        repetitions: int | None = None,
    ) -> None:
        """Evaluate ``models`` (KLD against ``base`` when given) on ``chunks`` chunks."""
        self.controls.set_models([Path(m) for m in models])
        if repetitions is not None:
            self.controls.reps.setValue(max(1, int(repetitions)))
        self.controls.base.set_text(str(base) if base else "")
        self.controls.chunks.setValue(max(0, int(chunks)))
        self.controls.speed.setChecked(bool(speed))
        self.start()

    def start(self) -> None:
        models = self.controls.model_paths()
        if not models:
            self.controls.status.setText("Add at least one model (.gguf) to evaluate.")
            return
        depths = self.controls.speed_depths() if self.controls.speed.isChecked() else [0]
        if depths is None:
            return  # the controls said what is wrong with the depths
        if max(depths) > 0:
            self._check_then_start(models, depths)
            return
        self._start(models, depths)

    def _check_then_start(self, models: list[Path], depths: list[int]) -> None:
        """A depth beyond a model's trained context, or one the plan says does not fit, is
        refused before anything starts (the check reads headers: off the GUI thread)."""
        from qtapp.core.evaluate.speed_sweep import check_sweep

        reps, threads = self.controls.reps.value(), self.controls.threads.value()
        hardware = self.ctx.hardware

        def task(_call: BackgroundCall) -> None:
            for model in models:
                check_sweep(model, depths, reps, threads or None, None, 0, hardware)

        self.controls.start_btn.setEnabled(False)
        self.controls.status.setText("Checking the depths against each model's context…")
        call = BackgroundCall(task, "speed-check", self)
        call.finished.connect(lambda _r: self._start(models, depths))
        call.failed.connect(self._refused)
        self._check = call
        call.start()

    def _refused(self, message: str) -> None:
        self.controls.start_btn.setEnabled(True)
        self.controls.status.setText(f"Not started: {message}")

    def _start(self, models: list[Path], depths: list[int]) -> None:
        """Each model's job in an event-loop turn of its own (ui/common/turns), the first in the
        turn after this one: here the speed note makes room for them all, which lays the speed
        charts out and paints them again (with the first run, one 27 ms turn on a quiet core)."""
        base = self.controls.base.text() or None
        if self.controls.speed.isChecked():
            self.speed.reserve_runs(len(models))
        for model in models:
            self._turns.add(lambda model=model: self._submit(model, base, depths))
        if self.controls.task_file.text():
            for model in models:
                self._turns.add(lambda model=model: self._submit_tasks(model))
        self.controls.set_running(True)
        self.controls.status.setText(f"Queued {len(models)} evaluation(s).")

    def cancel(self) -> None:
        """Stop the running evaluation and drop queued ones; measured points stay (partial)."""
        self._turns.flush()  # every model asked for has its row, to show it cancelled
        for rv in self._runs:
            if rv.runner is None or rv.runner.terminal is not None:
                continue
            if rv.runner in self.ctx.jobs.pending():
                self.ctx.jobs.remove(rv.runner)
                self._finish(rv, Cancelled())
            else:
                rv.runner.cancel()
        self._cancel_tasks()
        self.controls.status.setText("Cancelling…")

    def _cancel_tasks(self) -> None:
        """Drop queued task scorings, stop the running one (its scored tasks are kept)."""
        for runner in self._task_runners:
            if runner.terminal is not None:
                continue
            if runner in self.ctx.jobs.pending():
                self.ctx.jobs.remove(runner)
            else:
                runner.cancel()

    def running(self) -> bool:
        # the recorder, not the runner: a queued run dropped by Cancel never gets a terminal event
        return self._turns.pending() > 0 or any(
            rv.runner is not None and rv.recorder.state == "running" for rv in self._runs
        )

    def shutdown(self) -> None:
        """Window closing: drop queued runs (else each would start as the previous one ends),
        stop the running one and record them all as cancelled before the store threads end."""
        self._turns.clear()  # models whose jobs were not submitted yet: nothing to stop
        for rv in self._runs:
            if rv.runner is None or rv.runner.terminal is not None:
                continue
            if rv.runner in self.ctx.jobs.pending():
                self.ctx.jobs.remove(rv.runner)
            else:
                rv.runner.cancel()
            self._finish(rv, Cancelled())  # its late "done" is then ignored
        self._cancel_tasks()
        self.offload.cancel()
        self.memory.shutdown()
        self.wait_stored()

    def wait_stored(self) -> None:
        """Block until every finished run is written to the results store."""
        for rv in self._runs:
            rv.recorder.wait()

    def clear_charts(self) -> None:
        if self.running():
            self.controls.status.setText("Charts are cleared only when no evaluation runs.")
            return
        for p in self.plots:
            p.clear()
        self.speed.clear()
        self.table.setRowCount(0)
        self._runs.clear()

    def export(self, folder: str | Path, fmt: str = "png") -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for name, plot in (
            ("ppl", self.ppl_plot),
            ("kld", self.kld_plot),
            ("pp", self.pp_plot),
            ("tg", self.tg_plot),
            ("hellaswag", self.acc_plot),
        ):
            target = folder / f"quantlens-{name}.{fmt}"
            out.append(plot.export_svg(target) if fmt == "svg" else plot.export_png(target))
        return out

    # -- jobs ------------------------------------------------------------------------------
    def _submit(self, model: Path, base: str | None, depths: list[int] | None = None) -> None:
        c = self.controls
        params = eval_params(
            model,
            base,
            c.text.text() or None,
            c.ctx.value(),
            c.chunks.value() or None,
            c.speed.isChecked(),
            c.threads.value() or None,
            None,
            c.reps.value(),
            depths,
        )
        self._counter += 1
        key = f"{model.name}#{self._counter}"
        color = PALETTE[(self._counter - 1) % len(PALETTE)]
        label = model.stem
        self.ppl_plot.add_run(key, label, color)
        if base:
            self.kld_plot.add_run(key, label, color)
        if c.speed.isChecked():
            self.speed.add_run(key, label, color)
            self.speed.predict(key, model, params, self.ctx.hardware)
        row = self.table.rowCount()
        self.table.insertRow(row)
        rv = _RunView(key, model, color, EvalRecorder(model, params, background=True), row)
        self._runs.append(rv)
        self._set_row(rv, "queued", {})

        def on_start(runner: JobRunner, rv: _RunView = rv) -> None:
            rv.recorder.begin()
            self._set_row(rv, "running", {})
            self.memory.start_run(rv.key, rv.model, params, lambda: runner.job.pid)

        rv.runner = self.ctx.jobs.submit(JobSpec("evaluate", params), on_start=on_start)
        rv.runner.event.connect(lambda ev, rv=rv: self._on_event(rv, ev))
        rv.runner.done.connect(lambda ev, rv=rv: self._finish(rv, ev))

    def _submit_tasks(self, model: Path) -> None:
        """Score ``model`` on the task file: a ``tasks`` job after the evaluations, its running
        accuracy with its 95% interval on the accuracy chart, stored as a ``tasks`` run."""
        c = self.controls
        params = {
            "model": str(model),
            "tasks": c.task_file.text(),
            "limit": c.task_limit.value(),
            "ctx": c.ctx.value(),
            "kind": c.task_kind or "auto",  # as detected; the worker detects it otherwise
        }
        if c.threads.value():
            params["threads"] = c.threads.value()
        self._counter += 1
        key = f"{model.name}#tasks{self._counter}"
        color = PALETTE[(self._counter - 1) % len(PALETTE)]
        self.acc_plot.add_run(key, model.stem, color)
        recorder = EvalRecorder(model, params, background=True, kind="tasks")

        def on_event(ev: Event) -> None:
            recorder.add(ev)
            if isinstance(ev, Point) and ev.series in TASK_SERIES:
                extra = ev.extra or {}
                band = (float(extra.get("lo", ev.y)), float(extra.get("hi", ev.y)))
                self.acc_plot.append(key, ev.x, ev.y, band=band)

        def on_done(ev: Event) -> None:
            recorder.add(ev)
            recorder.finish(on_stored=self.ctx.results_changed.emit)
            if isinstance(ev, Failed):
                self.controls.status.setText(f"Task scoring failed: {ev.message} {ev.hint}")

        runner = self.ctx.jobs.submit(
            JobSpec("tasks", params), on_start=lambda _r: recorder.begin()
        )
        runner.event.connect(on_event)
        runner.done.connect(on_done)
        self._task_runners.append(runner)

    def _on_event(self, rv: _RunView, ev: Event) -> None:
        rv.recorder.add(ev)
        if isinstance(ev, Point):
            if ev.series == "ppl":
                self.ppl_plot.append(rv.key, ev.x, ev.y, ev.err)
            elif ev.series == "kld":
                self.kld_plot.append(rv.key, ev.x, ev.y, ev.err)
            elif ev.series in ("pp_depth", "tg_depth"):
                self.speed.on_point(rv.key, ev)
            if ev.series == "ppl":
                self._set_row(rv, "running", rv.recorder.partial_result())
        elif isinstance(ev, Progress):
            self.controls.progress.setValue(int(1000 * max(0.0, min(1.0, ev.fraction))))
            self.controls.status.setText(f"{rv.model.name}: {ev.message}")

    def _finish(self, rv: _RunView, ev: Event) -> None:
        if rv.recorder.state != "running":
            return
        rv.recorder.add(ev)
        # the measured peaks (and the plan they compare with) go into the stored metrics:
        # EvalRecorder.finish() writes ``result`` as it is when its store thread gets there
        rv.recorder.result.update(self.memory.finish_run(rv.key))
        rv.recorder.finish(on_stored=self.ctx.results_changed.emit)
        state = rv.recorder.state
        self._set_row(rv, state, rv.recorder.result)
        if isinstance(ev, Failed):
            self.controls.status.setText(f"{rv.model.name} failed: {ev.message} {ev.hint}".strip())
        elif isinstance(ev, Finished):
            self.controls.status.setText(f"{rv.model.name} finished.")
            self.controls.progress.setValue(1000)
        else:
            self.controls.status.setText(f"{rv.model.name}: stopped; measured points kept.")
        if not self.running():
            self.controls.refresh_cache_size()  # walks the cache folder: once, at the end
            self.controls.set_running(False)
            for plot in self.plots:
                plot.settle()  # one chart per redraw tick, like the points
            self.all_done.emit()

    def _set_row(self, rv: _RunView, state: str, r: dict[str, Any]) -> None:
        # "partial" only for a run that ended with points; a queued run cancelled is "cancelled"
        ended = state not in ("failed", "cancelled", "running", "queued")
        shown = "partial" if r.get("partial") and ended else state
        cells = [
            split_quant_name(rv.model)[1] or rv.model.name,  # the full path is the tooltip
            shown,
            _pm(r, "ppl", 4),
            _pm(r, "bpb", 4),
            _pm(r, "kld_mean", 5),
            f"{r['kld_p99']:.4f}" if isinstance(r.get("kld_p99"), float) else "–",
            f"{r['same_top_pct']:.2f} %" if isinstance(r.get("same_top_pct"), float) else "–",
            _pm(r, "pp_tps", 1),
            _pm(r, "tg_tps", 1),
        ]
        for col, text in enumerate(cells):
            item = self.table.item(rv.row, col)
            if item is not None:
                if item.text() != text:  # an unchanged cell costs no resize-to-contents pass
                    item.setText(text)
                continue
            item = QTableWidgetItem(text)
            if col == 0:
                item.setToolTip(str(rv.model))
                item.setData(Qt.DecorationRole, _swatch(rv.color))
            self.table.setItem(rv.row, col, item)

    def _export_dialog(self, fmt: str) -> None:
        import os

        if os.environ.get("QUANTLENS_NO_DIALOGS"):
            return
        folder = QFileDialog.getExistingDirectory(self, "Export charts to folder")
        if folder:
            try:
                paths = self.export(folder, fmt)
            except OSError as exc:
                self.controls.status.setText(
                    f"Could not export the charts to {folder}: {exc}. Choose a folder you can"
                    " write to."
                )
                return
            self.controls.status.setText(f"Exported {len(paths)} charts to {folder}.")

    def _on_model_changed(self, path: object) -> None:
        if not self.running() and path is not None:
            self.controls.add_model(Path(str(path)))


def _swatch(color: str) -> Any:
    from PySide6.QtGui import QColor, QPixmap

    pm = QPixmap(12, 12)
    pm.fill(QColor(color))
    return pm
