"""A live pyqtgraph chart: several runs overlaid, an optional uncertainty band, a crosshair.

Slots only append to Python lists; a run's plot items are made at its first redraw. One
application-wide 60 ms timer (:class:`_RedrawQueue`) pushes the new data of ONE changed chart
per tick with ``setData`` (peak downsampling, clip to view): Qt repaints every dirty widget of a
window in one go, so redrawing four charts in the same event-loop turn stalled it for the sum of
their paints (95 ms measured); one chart per turn bounds a stall to one chart's paint. A chart
on a hidden page prepares its paint at its redraw (axes, auto range), so showing the page later
does not pay every chart's changes at once. Axes paint from pixmaps (their text is the costly
part of a repaint in software rendering) and the band is filled without antialiasing.
Exports to PNG and SVG with pyqtgraph's exporters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from qtapp.ui.common.axes import PixmapAxis, chart_widget
from qtapp.ui.common.live_plot_parts import (
    Band,
    light_grid,
    prepare_paint,
    redraw_queue,
    remove_from_queue,
)
from qtapp.ui.common.turns import PaintHold, TurnQueue

#: one colour per run, distinguishable and readable on light and dark backgrounds
PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
]


@dataclass
class _Run:
    label: str
    color: str
    dashed: bool = False
    curve: pg.PlotDataItem | None = None  # made at the run's first redraw
    upper: pg.PlotCurveItem | pg.PlotDataItem | None = None
    lower: pg.PlotCurveItem | pg.PlotDataItem | None = None
    band: pg.FillBetweenItem | None = None
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    errs: list[float] = field(default_factory=list)
    los: list[float] = field(default_factory=list)  # the band's edges (y -/+ err, or given)
    his: list[float] = field(default_factory=list)
    dirty: bool = False


class LivePlot(QWidget):
    """One chart. ``add_run`` then ``append`` points; the shared timer redraws what changed."""

    def __init__(
        self,
        title: str,
        x_label: str,
        y_label: str,
        *,
        band: bool = False,
        log_y: bool = False,
        symbols: bool = False,
        integer_x: bool = False,
        legend: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._band = band
        self._symbols = symbols
        self._runs: dict[str, _Run] = {}
        #: runs announced but without a point yet: their items are made with the first point
        #: (a queue of evaluations made dozens of plot items in one slot: a 64 ms stall)
        self._pending: dict[str, tuple[str, str, bool]] = {}
        self._settle = False  # fit the view tightly at the next redraw
        self.plot = chart_widget(None, integer_x)
        self.plot.setMinimumHeight(150)
        item = self.plot.getPlotItem()
        item.setTitle(title, size="10pt")
        item.setLabel("bottom", x_label)
        item.setLabel("left", y_label)
        self.grid = light_grid(item, 0.25)
        item.setDownsampling(mode="peak", auto=True)
        item.setClipToView(True)
        if log_y:
            item.setLogMode(y=True)
        else:
            # the view follows the data in steps (see _follow_data), not on every point: each
            # range change repaints both axes, the costliest part of a chart's repaint
            self._follow = True
            item.vb.disableAutoRange()
            item.vb.sigRangeChangedManually.connect(self._stop_following)
            item.autoBtn.clicked.connect(self._resume_following)
        self.legend = (
            pg.LegendItem()
            if not legend
            else item.addLegend(
                offset=(-10, 10),
                labelTextSize="8pt",
                brush=pg.mkBrush(255, 255, 255, 210),
                pen=pg.mkPen(200, 200, 200),
                labelTextColor="#222",
            )
        )
        self._readout = pg.TextItem(
            anchor=(0, 1),
            color="#222",
            fill=pg.mkBrush(255, 255, 255, 225),
            border=pg.mkPen(180, 180, 180),
        )
        self._readout.setZValue(100)
        self._vline = pg.InfiniteLine(
            angle=90, movable=False, pen=pg.mkPen("#888", width=1, style=Qt.DashLine)
        )
        for it in (self._vline, self._readout):
            item.addItem(it, ignoreBounds=True)
            it.hide()
        self._proxy = pg.SignalProxy(
            self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.log_y = log_y
        self._hold = PaintHold(self.plot)  # updates off until the new axes are drawn
        self._stages = TurnQueue(self)  # the new range's axes, then the paint
        queue = redraw_queue()
        queue.plots.append(self)
        self.destroyed.connect(lambda *_: remove_from_queue(self))

    # -- data ------------------------------------------------------------------------------
    def runs(self) -> list[str]:
        return [*self._runs, *self._pending]

    def has_run(self, key: str) -> bool:
        return key in self._runs or key in self._pending

    def add_run(self, key: str, label: str, color: str | None = None, dashed: bool = False) -> None:
        """Announce a run; its curve appears with its first point."""
        if self.has_run(key):
            return
        count = len(self._runs) + len(self._pending)
        self._pending[key] = (label, color or PALETTE[count % len(PALETTE)], dashed)

    def _make_items(self, run: _Run) -> pg.PlotDataItem:
        color = run.color
        pen = pg.mkPen(color, width=2, style=Qt.DashLine if run.dashed else Qt.SolidLine)
        kwargs = (
            {"symbol": "o", "symbolSize": 6, "symbolBrush": color, "symbolPen": None}
            if self._symbols
            else {}
        )
        curve = self.plot.plot([], [], pen=pen, name=run.label, **kwargs)
        run.curve = curve
        if self._band:
            faint = pg.mkPen(None)
            edge = pg.PlotDataItem if self.log_y else pg.PlotCurveItem  # log mode needs the former
            run.upper = edge([], [], pen=faint)
            run.lower = edge([], [], pen=faint)
            fill = pg.mkColor(color)
            fill.setAlpha(50)
            run.band = Band(run.upper, run.lower, brush=pg.mkBrush(fill))
            item = self.plot.getPlotItem()
            for it in (run.upper, run.lower, run.band):
                item.addItem(it)
        return curve

    def append(
        self,
        key: str,
        x: float,
        y: float,
        err: float | None = None,
        band: tuple[float, float] | None = None,
    ) -> None:
        """One point; the band is ``y ± err``, or ``band`` (low, high) for an interval that is
        not symmetric (a Wilson interval)."""
        run = self._runs.get(key)
        if run is None:
            if key not in self._pending:
                self.add_run(key, key)
            label, color, dashed = self._pending.pop(key)
            run = self._runs[key] = _Run(label, color, dashed)
        e = float(err) if err is not None else 0.0
        lo, hi = band if band is not None else (float(y) - e, float(y) + e)
        run.xs.append(float(x))
        run.ys.append(float(y))
        run.errs.append(e if band is None else (hi - lo) / 2)
        run.los.append(float(lo))
        run.his.append(float(hi))
        run.dirty = True

    def set_label(self, key: str, label: str) -> None:
        if key in self._pending:
            _old, color, dashed = self._pending[key]
            self._pending[key] = (label, color, dashed)
        run = self._runs.get(key)
        if run is not None:
            run.label = label
            for sample, text in self.legend.items if run.curve is not None else ():
                if sample.item is run.curve:
                    text.setText(label)

    def clear(self) -> None:
        item = self.plot.getPlotItem()
        for run in self._runs.values():
            for it in (run.curve, run.upper, run.lower, run.band):
                if it is not None:
                    item.removeItem(it)
        self.legend.clear()
        self._runs.clear()
        self._pending.clear()
        if not self.log_y:
            self._follow = True

    def dirty(self) -> bool:
        return self._settle or any(run.dirty for run in self._runs.values())

    def redraw(self) -> None:
        """Push new points to the curves that changed (the shared timer calls this).

        A new run's plot items are made in a redraw of their own, its points drawn at the
        next: together, with the chart's paint, they were one turn of 14-22 ms of a quiet
        core (a 60 ms stall on busy cores). Until then the run stays dirty."""
        for run in self._runs.values():
            if run.dirty and run.curve is None:
                self._make_items(run)
                return
        for run in self._runs.values():
            if not run.dirty:
                continue
            run.dirty = False
            curve = run.curve
            assert curve is not None
            x = np.asarray(run.xs)
            y = np.asarray(run.ys)
            curve.setData(x, y)
            if run.upper is not None and run.lower is not None:
                lo = np.asarray(run.los)
                lo = np.maximum(lo, 1e-12) if self.log_y else lo
                run.upper.blockSignals(True)  # the band rebuilds its path once, on the lower
                try:
                    run.upper.setData(x, np.asarray(run.his))
                finally:
                    run.upper.blockSignals(False)
                run.lower.setData(x, lo)
        if not self.log_y and self._follow:
            self._follow_data(force=self._settle, headroom=0.03 if self._settle else 0.3)
        self._settle = False
        if not self.isVisible():
            prepare_paint(self.plot.getPlotItem())
        elif self._needs_preparing():
            self._paint_in_three_turns()

    def _needs_preparing(self) -> bool:
        """A new range (the axes' ticks to draw again) or an auto range still to compute."""
        item = self.plot.getPlotItem()
        axes = [item.getAxis(name) for name in ("left", "bottom")]
        pending = any(isinstance(a, PixmapAxis) and a.picture is None for a in axes)
        return pending or bool(getattr(item.vb, "_autoRangeNeedsUpdate", False))

    def _paint_in_three_turns(self) -> None:
        """This turn the data, the next the new range's axes (``prepare_paint``), the one after
        the paint, with the chart's updates off until then: a redraw that moved the view was
        one turn of 20-25 ms of a quiet core, a 52-70 ms stall on busy cores."""
        self._hold.hold()
        self._stages.clear()  # a redraw before the last one's paint: its stages start over
        self._stages.add(lambda: prepare_paint(self.plot.getPlotItem()))
        self._stages.add(self._hold.release)

    def redraw_all(self) -> None:
        """Every pending redraw now (an export draws what the chart holds)."""
        while self.dirty():
            self.redraw()

    # -- view range ------------------------------------------------------------------------
    def _bounds(self) -> tuple[float, float, float, float] | None:
        xs, lo, hi = [], [], []
        for run in self._runs.values():
            if not run.xs:
                continue
            x = np.asarray(run.xs)
            banded = self._band
            xs += [float(x.min()), float(x.max())]
            lo.append(float(np.min(run.los if banded else run.ys)))
            hi.append(float(np.max(run.his if banded else run.ys)))
        if not xs:
            return None
        return min(xs), max(xs), min(lo), max(hi)

    def settle(self) -> None:
        """Fit the view to the data without headroom at the next redraw (the runs have ended)."""
        self._settle = not self.log_y

    def _follow_data(self, force: bool = False, headroom: float = 0.3) -> None:
        """Keep every point in view with headroom; move the view only when data leaves it (or
        fills less than a quarter of it)."""
        b = self._bounds()
        if b is None:
            return
        x0, x1, y0, y1 = b
        vb = self.plot.getPlotItem().vb
        (vx0, vx1), (vy0, vy1) = vb.viewRange()
        xspan = max(x1 - x0, 1.0)
        yspan = max(y1 - y0, abs(y1) * 0.05, 1e-9)
        inside = vx0 <= x0 and x1 <= vx1 and vy0 <= y0 and y1 <= vy1
        snug = (vx1 - vx0) <= 4 * xspan + 2 and (vy1 - vy0) <= 4 * yspan
        if inside and snug and not force:
            return
        vb.setRange(
            xRange=(x0 - 0.06 * xspan, x1 + max(headroom, 0.06) * xspan),
            yRange=(y0 - 0.15 * yspan, y1 + 0.25 * yspan),
            padding=0,
        )

    def _stop_following(self, *_: object) -> None:
        self._follow = False

    def _resume_following(self, *_: object) -> None:
        """The "A" button: pyqtgraph turned its auto range on; follow the data our way again."""
        self._follow = True
        self.plot.getPlotItem().vb.disableAutoRange()
        self._follow_data(force=True)

    def data(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        run = self._runs.get(key)
        if run is None:  # announced, no point yet
            empty = np.zeros(0)
            return empty, empty, empty
        return np.asarray(run.xs), np.asarray(run.ys), np.asarray(run.errs)

    # -- crosshair -------------------------------------------------------------------------
    def _mouse_moved(self, evt: tuple[object]) -> None:
        pos = evt[0]
        item = self.plot.getPlotItem()
        if not self._runs or not item.sceneBoundingRect().contains(pos):
            self._vline.hide()
            self._readout.hide()
            return
        point = item.vb.mapSceneToView(pos)
        self.show_values_at(point.x())

    def show_values_at(self, x: float) -> str:
        """Move the crosshair to ``x`` and show each run's nearest value; returns the text."""
        lines = []
        for run in self._runs.values():
            if not run.xs:
                continue
            xs = np.asarray(run.xs)
            i = int(np.argmin(np.abs(xs - x)))
            err = f" ± {run.errs[i]:.4g}" if run.errs[i] else ""
            lines.append(f"{run.label}: {run.ys[i]:.5g}{err}  (x = {run.xs[i]:g})")
        text = "\n".join(lines)
        if not lines:
            return text
        vb = self.plot.getPlotItem().vb
        (x0, _x1), (y0, _y1) = vb.viewRange()
        self._vline.setPos(x)
        self._readout.setText(text)
        self._readout.setPos(x, y0)
        self._vline.show()
        self._readout.show()
        return text

    # -- export ----------------------------------------------------------------------------
    def export_png(self, path: str | Path, width: int = 1200) -> Path:
        from pyqtgraph.exporters import ImageExporter

        self.redraw_all()
        exporter = ImageExporter(self.plot.getPlotItem())
        exporter.parameters()["width"] = width
        # pyqtgraph ignores QImage.save()'s result: a failed write would pass for success
        if not exporter.export(toBytes=True).save(str(path)):
            raise OSError(f"nothing was written to {path}")
        return Path(path)

    def export_svg(self, path: str | Path) -> Path:
        """pyqtgraph's SVGExporter; Qt's SVG generator where it fails (it does on PySide 6.12)."""
        from pyqtgraph.exporters import SVGExporter

        self.redraw_all()
        target = Path(path)
        try:
            SVGExporter(self.plot.getPlotItem()).export(str(target))
        except (ValueError, IndexError):
            self._export_svg_qt(target)
        return target

    def _export_svg_qt(self, target: Path) -> None:
        from PySide6.QtGui import QPainter
        from PySide6.QtSvg import QSvgGenerator

        gen = QSvgGenerator()
        gen.setFileName(str(target))
        gen.setSize(self.plot.size())
        gen.setViewBox(self.plot.rect())
        gen.setTitle("QuantLens chart")
        painter = QPainter(gen)
        try:
            self.plot.render(painter)
        finally:
            painter.end()
        if not target.exists() or target.stat().st_size == 0:
            raise OSError(f"nothing was written to {target}")
