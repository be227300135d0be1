"""The Evaluate page's speed charts: tokens/s against context depth (pp and tg), one line per
model with its ± sd band, the planner's predicted curve dashed beside it, and a line per model
saying how far the prediction was off.

Predictions need the model's header and a plan (tens of milliseconds for a large vocabulary):
they are made off the GUI thread and drawn when they arrive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from qtapp.core.evaluate.speed_sweep import SweepPlan, curve_errors, error_text, plan_sweep
from qtapp.core.jobs.events import Point
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.live_plot import LivePlot

DEPTH_AXIS = "tokens already in the context (depth)"


#: lines the note under the speed charts has room for from the start
NOTE_LINES = 4


class SpeedCurves(QWidget):
    """Two live charts (pp, tg) against depth, and a note on the predictions' error."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pp_plot = LivePlot(
            "Prompt processing (pp512) vs depth", DEPTH_AXIS, "tokens/s", band=True, symbols=True,
            legend=False,
        )  # fmt: skip
        self.tg_plot = LivePlot(
            "Generation (tg128) vs depth", DEPTH_AXIS, "tokens/s", band=True, symbols=True,
            legend=False,
        )  # fmt: skip
        self.note = QLabel("Band: ± sd of the repetitions; dashed: the planner's prediction.")
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        self.note.setStyleSheet("color:#444")
        self._reserve_note_lines(NOTE_LINES)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.pp_plot)
        self.splitter.addWidget(self.tg_plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter, 1)
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        layout.addLayout(row)
        self._labels: dict[str, str] = {}
        self._colors: dict[str, str] = {}
        self._measured: dict[str, dict[str, list[tuple[int, float]]]] = {}
        self._plans: dict[str, SweepPlan] = {}
        self._calls: list[BackgroundCall] = []

    def plots(self) -> list[LivePlot]:
        return [self.pp_plot, self.tg_plot]

    def add_run(self, key: str, label: str, color: str) -> None:
        self._labels[key] = label
        self._colors[key] = color
        self._measured[key] = {"pp": [], "tg": []}
        self.pp_plot.add_run(key, label, color)
        self.tg_plot.add_run(key, label, color)
        # room for its line of errors (two lines wrapped at the usual width) now, as it is
        # queued, not when its first speed comes in
        self._reserve_note_lines(2 * len(self._labels) + 1)

    def predict(self, key: str, model: Path, params: dict[str, Any], hardware: Any) -> None:
        """Plan the run's depths in the background; draw the predicted curves when ready."""
        depths = [int(d) for d in params.get("depths") or [0]]

        def task(_call: BackgroundCall) -> SweepPlan:
            offload = None
            try:
                from qtapp.core.hardware.llama_build import cached_build

                build = cached_build()
                offload = build.supports_gpu_offload if build is not None else None
            except Exception:  # noqa: BLE001 - unknown build: llama.cpp's default assumed
                offload = None
            return plan_sweep(model, depths, hardware, offload, params.get("n_gpu_layers"))

        call = BackgroundCall(task, "speed-prediction", self)
        call.finished.connect(lambda sp, key=key: self._on_plan(key, sp))
        self._calls = [c for c in self._calls if c.is_running()] + [call]
        call.start()

    def _on_plan(self, key: str, sp: object) -> None:
        if not isinstance(sp, SweepPlan) or key not in self._labels:
            return
        self._plans[key] = sp
        label, color = self._labels[key], self._colors[key]
        for which, plot in (("pp", self.pp_plot), ("tg", self.tg_plot)):
            pred_key = f"{key}#predicted"
            plot.add_run(pred_key, f"{label} predicted", color, dashed=True)
            for d, v in sp.predicted_curve(which):
                if v > 0:
                    plot.append(pred_key, d, v)
        self._update_note()

    def on_point(self, key: str, ev: Point) -> None:
        which = ev.series[:2]
        plot = self.pp_plot if which == "pp" else self.tg_plot
        plot.append(key, ev.x, ev.y, ev.err)
        self._measured.setdefault(key, {"pp": [], "tg": []})[which].append((int(ev.x), ev.y))
        self._update_note()

    def _update_note(self) -> None:
        lines = []
        for key, label in self._labels.items():
            sp = self._plans.get(key)
            measured = self._measured.get(key, {})
            if sp is None or not any(measured.values()):
                continue
            parts = []
            for which in ("tg", "pp"):
                text = error_text(curve_errors(measured.get(which, []), sp.predicted, which))
                if text:
                    parts.append(f"{which} {text}")
            if parts:
                dot = f"<span style='color:{self._colors[key]}'>●</span>"
                lines.append(f"{dot} {label}: {'; '.join(parts)}")
        legend = "Band: ± sd of the repetitions; dashed: the planner's prediction."
        self.note.setText("<br>".join([*lines, f"<span style='color:#777'>{legend}</span>"]))

    def reserve_runs(self, count: int) -> None:
        """Room for the error lines of ``count`` more runs at once, as a queue of them starts:
        made as each run was added (one per turn), the charts shrank and were laid out and
        drawn again in two or three turns in a row (39 ms of one on a quiet core)."""
        self._reserve_note_lines(2 * (len(self._labels) + count) + 1)

    def _reserve_note_lines(self, lines: int) -> None:
        """Room for the note's lines before they come: a line more for each run that got its
        first speed shrank both charts, and each was laid out and drawn again in that turn."""
        height = lines * self.note.fontMetrics().lineSpacing() + 4
        if height > self.note.minimumHeight():
            self.note.setMinimumHeight(height)

    def clear(self) -> None:
        for p in self.plots():
            p.clear()
        self._labels.clear()
        self._colors.clear()
        self._measured.clear()
        self._plans.clear()
        self.note.setText("Band: ± sd of the repetitions; dashed: the planner's prediction.")

    def errors(self, key: str, which: str) -> list[tuple[int, float, float, float]]:
        """(depth, measured, predicted, relative error) of one run (tests and exports)."""
        sp = self._plans.get(key)
        if sp is None:
            return []
        return curve_errors(self._measured.get(key, {}).get(which, []), sp.predicted, which)
