"""A live chart of VRAM in use and utilisation per GPU (host RAM when there is no GPU).

:meth:`UsageChart.add_report` only appends to arrays; a timer redraws (pyqtgraph's
scrolling-plot pattern), so a burst of reports never costs more than one redraw per tick.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QWidget

from qtapp.core.hardware.probe import GIB, HardwareReport
from qtapp.ui.common.axes import chart_widget
from qtapp.ui.common.live_plot_parts import light_grid

PALETTE = ["#2f7de1", "#e8590c", "#2b8a3e", "#9c36b5", "#c92a2a", "#0b7285", "#e67700", "#5c940d"]
#: points kept per curve: 10 minutes at one a second
HISTORY = 600
#: the time axis moves in steps of this many seconds
TIME_STEP = 30.0


@dataclass
class _Series:
    label: str
    color: str
    xs: list[float] = field(default_factory=list)
    mem: list[float] = field(default_factory=list)
    util: list[float] = field(default_factory=list)

    def append(self, x: float, mem: float | None, util: float | None) -> None:
        self.xs.append(x)
        self.mem.append(float("nan") if mem is None else mem)
        self.util.append(float("nan") if util is None else util)
        if len(self.xs) > HISTORY:
            del self.xs[0], self.mem[0], self.util[0]


class UsageChart(QWidget):
    """Two plots side by side: memory in use (GiB) and utilisation (%), one curve per GPU."""

    def __init__(self, parent: QWidget | None = None, redraw_ms: int = 250) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        dark = self.palette().window().color().lightness() < 128
        background = self.palette().base().color()
        foreground = "#cfd2d6" if dark else "#30343a"
        self._foreground = foreground
        self.mem_plot = self._make_plot("VRAM in use", "GiB", background, foreground)
        self.util_plot = self._make_plot("GPU utilisation", "%", background, foreground)
        self.util_plot.setYRange(0, 100, padding=0.05)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addWidget(self.mem_plot, 1)
        layout.addWidget(self.util_plot, 1)
        self.setFixedHeight(210)
        self._t0 = time.monotonic()
        self._series: dict[str, _Series] = {}
        self.mem_curves: dict[str, pg.PlotDataItem] = {}
        self.util_curves: dict[str, pg.PlotDataItem] = {}
        self._mem_ceiling = 0.0
        self._dirty = False
        self._timer = QTimer(self)
        self._window: tuple[float, float] | None = None
        self._timer.setInterval(redraw_ms)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    @staticmethod
    def _make_plot(title: str, unit: str, background: object, foreground: str) -> pg.PlotWidget:
        plot = chart_widget(background)
        plot.setTitle(title, color=foreground, size="10.5pt")
        plot.setLabel("left", unit, color=foreground)
        plot.setLabel("bottom", "time", units="s", color=foreground)
        light_grid(plot.getPlotItem(), 0.18)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        for axis in ("left", "bottom"):
            plot.getAxis(axis).setTextPen(foreground)
        plot.addLegend(offset=(8, 8), labelTextColor=foreground)
        plot.setDownsampling(mode="peak")
        plot.setClipToView(True)
        return plot

    def _series_for(self, key: str, label: str, dashed: bool = False) -> _Series:
        series = self._series.get(key)
        if series is None:
            color = "#868e96" if dashed else PALETTE[len(self._series) % len(PALETTE)]
            series = _Series(label, color)
            self._series[key] = series
            style = {"width": 2, "color": color}
            pen = (
                pg.mkPen(**style, style=pg.QtCore.Qt.PenStyle.DashLine)
                if dashed
                else pg.mkPen(**style)
            )
            self.mem_curves[key] = self.mem_plot.plot([], [], pen=pen, name=label)
            if not dashed:
                self.util_curves[key] = self.util_plot.plot([], [], pen=pen, name=label)
        return series

    def add_report(self, report: HardwareReport) -> None:
        """Append one sample per GPU (or of host RAM without GPUs); drawn on the next tick."""
        x = time.monotonic() - self._t0
        for gpu in report.gpus:
            key = gpu.uuid or f"index {gpu.index}"
            series = self._series_for(key, f"GPU {gpu.index}")
            used = None if gpu.used_bytes is None else gpu.used_bytes / GIB
            series.append(x, used, gpu.utilization_gpu_pct)
            self._mem_ceiling = max(self._mem_ceiling, (gpu.total_bytes or 0) / GIB)
        host = report.host
        if (
            not report.gpus
            and host
            and host.ram_total_bytes
            and host.ram_available_bytes is not None
        ):
            series = self._series_for("host", "Host RAM", dashed=True)
            series.append(x, (host.ram_total_bytes - host.ram_available_bytes) / GIB, None)
            self._mem_ceiling = max(self._mem_ceiling, host.ram_total_bytes / GIB)
        self._dirty = True
        self._arrange()

    def _arrange(self) -> None:
        """Which plots show and what the first is called: set when a reading comes in, also
        while the page is hidden, so the page is laid out before it is shown (set at its first
        redraw, the memory plot doubled in width and was drawn twice in the turn after the
        page appeared)."""
        has_gpus = bool(self.util_curves)
        if self.util_plot.isVisibleTo(self) != has_gpus:
            self.util_plot.setVisible(has_gpus)  # no GPU: nothing to show there
            if not self.isVisible():
                # a hidden widget's layout waits for its show: the memory plot's new width and
                # its axes' new ticks came in the page switch's turn (34-57 ms of a quiet core
                # at the demo tour's start). Laid out now; not drawn off screen as well: that
                # moved a 20-40 ms paint into the turn of the reading, at the tour's start too.
                self.layout().activate()
        title = "VRAM in use" if has_gpus else "Host RAM in use"
        if self.mem_plot.getPlotItem().titleLabel.text != title:
            self.mem_plot.setTitle(title, color=self._foreground, size="10.5pt")

    def redraw(self) -> None:
        if not self._dirty or not self.isVisible():
            return  # a hidden chart keeps its samples and draws them when it is shown again
        self._dirty = False
        for key, series in self._series.items():
            self.mem_curves[key].setData(series.xs, series.mem, connect="finite")
            if key in self.util_curves:
                self.util_curves[key].setData(series.xs, series.util, connect="finite")
        if self._mem_ceiling:
            self.mem_plot.setYRange(0, self._mem_ceiling, padding=0.05)
        self._follow_time()

    def _follow_time(self) -> None:
        """Move the time axis in 30 s steps, not every second: each move regenerates the axes'
        pictures, the costliest part of a repaint."""
        last = max((s.xs[-1] for s in self._series.values() if s.xs), default=0.0)
        right = TIME_STEP * (math.floor(last / TIME_STEP) + 1)
        window = (max(0.0, right - HISTORY - TIME_STEP), right)
        if window != self._window:
            self._window = window
            for plot in (self.mem_plot, self.util_plot):
                plot.setXRange(*window, padding=0)

    def point_count(self, key: str | None = None) -> int:
        """Points drawn in the memory curve of ``key`` (the first series when None)."""
        if not self.mem_curves:
            return 0
        curve = self.mem_curves[key] if key is not None else next(iter(self.mem_curves.values()))
        xs, _ = curve.getData()
        return 0 if xs is None else len(xs)

    def stop(self) -> None:
        self._timer.stop()
