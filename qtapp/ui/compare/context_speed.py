"""The Compare page's "Speed at your context" tab: generation tokens/s against context depth for
every run with a speed curve (band: ± sd), a line at the context you name, and each run's
tokens/s there."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QSplitter, QVBoxLayout, QWidget

from qtapp.core.results.context_speed import ContextSpeed, speeds_at_context
from qtapp.core.results.svgchart import PALETTE
from qtapp.ui.compare.budget import InfoPanel
from qtapp.ui.compare.charts import MAX_SEPARATE_CURVES, _Chart

DEFAULT_CONTEXT = 4096


class DepthChart(_Chart):
    """tg tokens/s against depth, one line per run, the chosen context as a vertical line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Generation speed vs context depth", parent)
        self.setLabel("bottom", "tokens already in the context (depth)")
        self.setLabel("left", "generation tokens/s (tg128)")
        self.line = pg.InfiniteLine(
            angle=90,
            movable=False,
            pen=pg.mkPen("#c62828", width=2, style=Qt.PenStyle.DashLine),
            label="",
            labelOpts={"position": 0.95, "color": "#c62828", "fill": (255, 255, 255, 200)},
        )

    def update_speeds(self, speeds: Sequence[ContextSpeed], depth: int) -> None:
        self._clear()
        self.plotItem.setTitle(
            "Generation speed vs context depth — band: ± sd", color="#222", size="11pt"
        )
        drawn = [s for s in speeds if len(s.curve.measured("tg")) > 0][:MAX_SEPARATE_CURVES]
        if not drawn:
            self._show_empty("No speed measured yet: measure speed at depths on Evaluate")
            return
        for i, s in enumerate(drawn):
            pts = s.curve.measured("tg")
            xs = np.array([p[0] for p in pts], float)
            ys = np.array([p[1] for p in pts], float)
            sd = np.array([p[2] or 0.0 for p in pts], float)
            colour = QColor(PALETTE[i % len(PALETTE)])
            self.plot(
                xs,
                ys,
                pen=pg.mkPen(colour, width=2),
                symbol="o",
                symbolSize=7,
                symbolBrush=colour,
                symbolPen=None,
                name=f"{s.model} {s.label}",
            )
            if len(xs) > 1 and sd.any():
                upper, lower = pg.PlotCurveItem(xs, ys + sd), pg.PlotCurveItem(xs, ys - sd)
                colour.setAlpha(40)
                self.addItem(pg.FillBetweenItem(upper, lower, brush=pg.mkBrush(colour)))
        self.line.setPos(depth)
        self.line.label.setFormat(f"your context: {depth:,}")
        self.addItem(self.line, ignoreBounds=False)
        self._fit_view()


class ContextSpeedTab(QWidget):
    """A context box, the chart and the figures at that context."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = QSpinBox()
        self.context.setRange(0, 1 << 24)
        self.context.setSingleStep(1024)
        self.context.setValue(DEFAULT_CONTEXT)
        self.context.setSuffix(" tokens")
        self.context.setToolTip(
            "The tokens already in the context when you generate: speeds are read off each "
            "run's measured curve there (interpolated between measured depths, never beyond)."
        )
        self.chart = DepthChart()
        self.panel = InfoPanel()
        top = QHBoxLayout()
        top.setContentsMargins(0, 4, 0, 0)
        top.addWidget(QLabel("Your context"))
        top.addWidget(self.context)
        top.addStretch(1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.chart)
        split.addWidget(self.panel)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self._runs: Sequence[Any] = ()
        self.speeds: list[ContextSpeed] = []
        self.context.valueChanged.connect(lambda _v: self._draw())

    def show_runs(self, runs: Sequence[Any]) -> None:
        self._runs = runs
        self._draw()

    def _draw(self) -> None:
        depth = int(self.context.value())
        self.speeds = speeds_at_context(self._runs, depth)
        self.chart.update_speeds(self.speeds, depth)
        self.panel.setText(self._html(depth))

    def _html(self, depth: int) -> str:
        head = f"<p style='margin:0 0 6px 0'><b>Speed at {depth:,} tokens of context</b></p>"
        if not self.speeds:
            return head + (
                "<p style='color:#555'>No run has a speed measurement yet. On Evaluate, give "
                "<b>Speed at depths</b> such as 0,1024,4096 (or run <code>quantlens speed MODEL "
                "--depth 0,1024,4096</code>).</p>"
            )
        ranked = sorted(self.speeds, key=lambda s: -(s.tg if s.tg is not None else -1.0))
        rows = []
        for s in ranked:
            colour = "#222" if s.tg is not None or s.pp is not None else "#888"
            rows.append(
                f"<p style='margin:2px 0;color:{colour}'><b>{escape(s.model)} "
                f"{escape(s.label)}</b>: {escape(s.describe(depth))}</p>"
            )
        return head + "".join(rows)
