"""The Compare page's charts (pyqtgraph): quality vs size, speed vs size, overlaid curves.

Each chart draws from :class:`~qtapp.core.results.comparison.CompareRow` values only; the page
decides what to show. Every chart can export itself to PNG or SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QWidget

from qtapp.core.results.comparison import QUALITY_METRICS, CompareRow, frontier
from qtapp.core.results.store import Curve
from qtapp.core.results.svgchart import PALETTE
from qtapp.core.tailor.recipe import is_tailored
from qtapp.ui.common.axes import PixmapAxis, chart_axes
from qtapp.ui.common.live_plot_parts import light_grid
from qtapp.ui.common.turns import PaintHold

SERIES_TITLES = {
    "ppl": ("running PPL", "tokens"),
    "kld": ("mean KLD per chunk", "chunk"),
    "kld_running": ("running mean KLD", "tokens"),
    "same_top": ("same top token % per chunk", "chunk"),
    "ppl_ratio": ("PPL ratio to the base", "tokens"),
    "tg_tps": ("generation tokens/s", "repetition"),
    "pp_tps": ("prompt tokens/s", "repetition"),
    "tg_depth": ("generation tokens/s (tg128)", "depth (tokens already in the context)"),
    "pp_depth": ("prompt tokens/s (pp512)", "depth (tokens already in the context)"),
    "tg_offload": ("generation tokens/s (tg128)", "layers (offload sweep)"),
    "pp_offload": ("prompt tokens/s (pp512)", "layers (offload sweep)"),
}


#: more runs than this are drawn grouped by colour, without a legend entry each
MAX_SEPARATE_CURVES = 12
#: charts with more points than this label them on hover only (a label per point costs ~1 ms)
MAX_LABELLED_POINTS = 40


#: grouped curves are reduced to this many min/max bins each (the chart is ~1,000 px wide)
GROUPED_BINS = 250


def _peak_decimate(xs: np.ndarray, ys: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bin's minimum and maximum, in order (what "peak" downsampling draws)."""
    n = len(xs)
    if n <= 2 * bins:
        return xs, ys
    step = n // bins
    m = step * bins
    yb = ys[:m].reshape(bins, step)
    xb = xs[:m].reshape(bins, step)
    filled = np.where(np.isfinite(yb), yb, np.nanmean(ys))
    lo, hi = filled.argmin(axis=1), filled.argmax(axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    rows = np.arange(bins)
    out_x = np.stack([xb[rows, first], xb[rows, second]], axis=1).ravel()
    out_y = np.stack([yb[rows, first], yb[rows, second]], axis=1).ravel()
    return np.append(out_x, xs[m:]), np.append(out_y, ys[m:])


def _font(points: int) -> QFont:
    font = QFont()
    font.setPointSize(points)
    return font


def model_colours(models: Sequence[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(models)))}


class _Chart(pg.PlotWidget):
    """A white plot with a legend, axis labels and PNG/SVG export."""

    point_clicked = Signal(int)  # run id

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent, background="w", axisItems=chart_axes())
        self.setObjectName(title)
        self.plotItem.setTitle(title, color="#222", size="11pt")
        self.setMinimumHeight(240)
        self.legend = self.addLegend(
            offset=(-10, 10),
            labelTextColor="#222",
            brush=pg.mkBrush(255, 255, 255, 220),
            pen=pg.mkPen("#bbb"),
        )
        for side in ("left", "bottom"):
            axis = self.getAxis(side)
            axis.setTextPen("#333")
            axis.setPen("#888")
            axis.enableAutoSIPrefix(False)
        self.grid = light_grid(self.plotItem, 0.3)
        self._empty = pg.TextItem("", color="#777", anchor=(0.5, 0.5))
        self._empty.setFont(_font(11))
        self._items: list[pg.GraphicsObject] = []
        self._fit_later = False  # see fit_in_next_turn
        self._hold = PaintHold(self)  # updates off until the fit
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(0)
        self._fit_timer.timeout.connect(self.finish_fit)

    def _clear(self) -> None:
        self.plotItem.clear()
        self.plotItem.addItem(self.grid, ignoreBounds=True)  # clear() took it too
        self.legend.clear()
        self._items = []

    def fit_in_next_turn(self) -> None:
        """The next drawing is fitted (:meth:`_fit_view`) in the event loop's next turn, with
        the chart's updates off until then: a drawing and its fit in one turn took 20-35 ms of
        a quiet core on the Compare page; a paint in between would show the unfitted chart."""
        self._fit_later = True

    def _fit_view(self) -> None:
        """Auto-range and lay the left axis out for its new ticks, before the first paint.

        Left to pyqtgraph, the range is computed inside the paint; the new tick labels then
        widen the left axis, which lays the chart out and paints it again: the Compare page's
        quality chart was painted five times for one drawing, 7-10 ms each on a quiet core."""
        self.enableAutoRange()
        if self._fit_later and self.isVisible():
            self._fit_later = False
            self._hold.hold()
            self._fit_timer.start()
            return
        self._fit_later = False
        self.finish_fit()

    def finish_fit(self) -> None:
        """Fit now (a fit left for the next turn, before an export reads the chart)."""
        self._fit_timer.stop()
        view = self.getViewBox()
        view.updateAutoRange()
        left = self.getAxis("left")
        if isinstance(left, PixmapAxis):
            left.prepare()  # draws its ticks: their labels' width sets the axis's
            self.plotItem.layout.activate()  # the view's new width: the padding depends on it
            view.updateAutoRange()
        self._hold.release()

    def _show_empty(self, text: str) -> None:
        self._fit_later = False  # nothing to fit
        self._empty.setText(text)
        self.addItem(self._empty, ignoreBounds=True)
        self._empty.setPos(0.5, 0.5)
        self.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)

    def export_image(self, path: str | Path) -> Path:
        """PNG (or any image suffix Qt knows) or SVG, by the file's suffix."""
        from pyqtgraph import exporters

        target = Path(path)
        if target.suffix.lower() == ".svg":
            self._export_svg(target)
        else:
            exporter = exporters.ImageExporter(self.plotItem)
            exporter.parameters()["width"] = max(1200, int(self.width() * 2))
            # pyqtgraph ignores QImage.save()'s result: a failed write would pass for success
            if not exporter.export(toBytes=True).save(str(target)):
                raise OSError(f"nothing was written to {target}")
        return target

    def _export_svg(self, target: Path) -> None:
        """Vector SVG through Qt's SVG generator (pyqtgraph's SVGExporter fails on PySide 6.12)."""
        from PySide6.QtGui import QPainter
        from PySide6.QtSvg import QSvgGenerator

        gen = QSvgGenerator()
        gen.setFileName(str(target))
        gen.setSize(self.size())
        gen.setViewBox(self.rect())
        gen.setTitle(self.plotItem.titleLabel.text or "QuantLens chart")
        painter = QPainter(gen)
        try:
            self.render(painter)
        finally:
            painter.end()
        if not target.exists() or target.stat().st_size == 0:
            raise OSError(f"nothing was written to {target}")

    def _scatter(
        self,
        rows: Sequence[CompareRow],
        ys: Sequence[float],
        colour: str,
        name: str,
        hollow: Sequence[bool] | None = None,
        log_y: bool = False,
        labels: bool = True,
        symbol: str = "o",
        size: int = 10,
        bold: bool = False,
    ) -> pg.PlotDataItem:
        brushes = [
            pg.mkBrush("w") if hollow and hollow[i] else pg.mkBrush(colour)
            for i in range(len(rows))
        ]
        # a PlotDataItem (not a bare ScatterPlotItem) so the plot's log mode applies to it
        item = self.plot(
            [r.size_gib for r in rows],
            list(ys),
            pen=None,
            symbol=symbol,
            symbolSize=size,
            symbolPen=pg.mkPen(colour, width=1.6),
            symbolBrush=brushes,
            data=[r.run_id for r in rows],
            name=name,
        )
        item.sigPointsClicked.connect(self._on_click)
        tips = {
            r.run_id: f"{r.model} {r.label}\n{r.size_gib or 0:.3f} GiB, {y:.4g}"
            for r, y in zip(rows, ys, strict=True)
        }
        item.scatter.opts.update(hoverable=True, tip=lambda x, y, data: tips.get(data, ""))
        if not labels:
            return item
        order = sorted(range(len(rows)), key=lambda i: rows[i].size_gib or 0.0)
        below = {i for n, i in enumerate(order) if n % 2}  # alternate so neighbours don't collide
        for i, (r, y) in enumerate(zip(rows, ys, strict=True)):
            text = pg.TextItem(r.label, color="#333", anchor=(0, -0.1) if i in below else (0, 1))
            font = _font(8)
            font.setBold(bold)
            text.setFont(font)
            text.setPos(r.size_gib or 0.0, float(np.log10(y)) if log_y else y)
            self.addItem(text)
        return item

    def _on_click(self, _item: object, points: Sequence[object], *_ev: object) -> None:
        if len(points):
            self.point_clicked.emit(int(points[0].data()))  # type: ignore[attr-defined]


class QualityChart(_Chart):
    """Quality against size, one colour per model, its Pareto frontier dashed, a budget line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Quality vs size", parent)
        self.budget_line = pg.InfiniteLine(
            angle=90,
            movable=False,
            pen=pg.mkPen("#c62828", width=2, style=Qt.PenStyle.DashLine),
            label="",
            labelOpts={
                "position": 0.04,
                "color": "#c62828",
                "anchors": [(-0.03, 1), (-0.03, 1)],
                "fill": (255, 255, 255, 200),
            },
        )
        self.setLabel("bottom", "size", units="GiB")

    def update_rows(
        self,
        rows: Sequence[CompareRow],
        metric: str,
        budget_gib: float | None,
        budget_name: str = "",
    ) -> None:
        self._clear()
        key, name = QUALITY_METRICS[metric]
        self.setLabel("left", f"{name} (lower is better{', log scale' if metric == 'kld' else ''})")
        self.plotItem.setTitle(
            f"{name} vs size — dashed: Pareto frontier", color="#222", size="11pt"
        )
        log_y = metric == "kld"  # KLD spans decades: 0.001 for Q8_0, 0.3 for Q2_K
        self.setLogMode(x=False, y=log_y)
        usable = [
            r
            for r in rows
            if r.size_gib is not None
            and r.quality(metric) is not None
            and (not log_y or (r.quality(metric) or 0) > 0)
        ]
        if not usable:
            self._show_empty(f"No {name} measured yet: evaluate a quant to see it here")
            return
        colours = model_colours([r.model for r in usable])
        labels = len(usable) <= MAX_LABELLED_POINTS
        for model, colour in colours.items():
            mine = [r for r in usable if r.model == model]
            standard = [r for r in mine if not is_tailored(r.label)]
            tailored = [r for r in mine if is_tailored(r.label)]
            if standard:
                ys = [r.quality(metric) or 0.0 for r in standard]
                self._scatter(standard, ys, colour, model, log_y=log_y, labels=labels)
            if tailored:  # its own point: a star, labelled in bold, named in the legend
                ys = [r.quality(metric) or 0.0 for r in tailored]
                self._scatter(
                    tailored, ys, colour, f"{model} tailored", log_y=log_y, labels=True,
                    symbol="star", size=16, bold=True,
                )  # fmt: skip
            front = frontier(mine, metric)
            if len(front) > 1:
                self.plot(
                    [r.size_gib for r in front],
                    [r.quality(metric) for r in front],
                    pen=pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine),
                )
        if budget_gib is not None:
            self.budget_line.setPos(budget_gib)
            self.budget_line.label.setFormat(f"budget {budget_name} ({budget_gib:.1f} GiB)")
            self.addItem(self.budget_line, ignoreBounds=True)
        self._fit_view()


class SpeedChart(_Chart):
    """Generation (and prompt) tokens/s against size; predicted speeds are hollow markers."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Speed vs size", parent)
        self.setLabel("bottom", "size", units="GiB")

    def update_rows(self, rows: Sequence[CompareRow], which: str = "tg") -> None:
        self._clear()
        word = "generation" if which == "tg" else "prompt processing"
        self.setLabel("left", f"{word} tokens/s (higher is better)")
        self.plotItem.setTitle(
            f"{word.capitalize()} speed vs size — hollow: predicted", color="#222", size="11pt"
        )
        attr = "tg_tps" if which == "tg" else "pp_tps"
        usable = [r for r in rows if r.size_gib is not None and getattr(r, attr) is not None]
        if not usable:
            self._show_empty("No speed measured or predicted yet")
            return
        for model, colour in model_colours([r.model for r in usable]).items():
            mine = [r for r in usable if r.model == model]
            self._scatter(
                mine,
                [getattr(r, attr) for r in mine],
                colour,
                model,
                hollow=[r.speed_source == "predicted" for r in mine],
                labels=len(usable) <= MAX_LABELLED_POINTS,
            )
        self._fit_view()


class CurvesChart(_Chart):
    """The stored live curves of the selected runs, overlaid (one colour per run).

    Beyond :data:`MAX_SEPARATE_CURVES` runs, the runs of each colour are joined into one item
    (NaN between runs): 100 runs of 1,000 points draw as 10 items, not 100.
    """

    def _draw_grouped(self, runs: Sequence[tuple[CompareRow, Curve]]) -> None:
        groups: dict[int, list[np.ndarray]] = {}
        for i, (_row, curve) in enumerate(runs):
            xs, ys = _peak_decimate(
                np.asarray(curve.xs, np.float64), np.asarray(curve.ys, np.float64), GROUPED_BINS
            )
            groups.setdefault(i % len(PALETTE), []).append(
                np.stack([np.append(xs, np.nan), np.append(ys, np.nan)])
            )
        for colour_index, parts in groups.items():
            xy = np.concatenate(parts, axis=1)
            # a 1-px pen: wider lines cost the raster engine many times more
            self.plot(xy[0], xy[1], pen=pg.mkPen(PALETTE[colour_index], width=1), connect="finite")
        self.legend.addItem(pg.PlotDataItem(pen=None), f"{len(runs)} runs (no legend)")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Curves", parent)
        self.plotItem.setDownsampling(auto=True, mode="peak")
        self.plotItem.setClipToView(True)

    def update_curves(self, runs: Sequence[tuple[CompareRow, Curve]], series: str) -> None:
        self._clear()
        title, xlabel = SERIES_TITLES.get(series, (series, "x"))
        self.plotItem.setTitle(f"{title} of the selected runs", color="#222", size="11pt")
        self.setLabel("left", title)
        self.setLabel("bottom", xlabel)
        if not runs:
            self._show_empty("Select runs in the table to overlay their curves")
            return
        if len(runs) > MAX_SEPARATE_CURVES:
            self._draw_grouped(runs)
            self._fit_view()
            return
        for i, (row, curve) in enumerate(runs):
            colour = QColor(PALETTE[i % len(PALETTE)])
            self.plot(
                np.asarray(curve.xs),
                np.asarray(curve.ys),
                pen=pg.mkPen(colour, width=1.6),
                name=f"{row.model} {row.label}",
            )
            if curve.errs is not None and len(runs) <= 3:  # more bands only hide each other
                ok = np.isfinite(curve.errs)
                if ok.any():
                    upper = pg.PlotCurveItem(curve.xs[ok], (curve.ys + curve.errs)[ok])
                    lower = pg.PlotCurveItem(curve.xs[ok], (curve.ys - curve.errs)[ok])
                    colour.setAlpha(30)
                    band = pg.FillBetweenItem(upper, lower, brush=pg.mkBrush(colour))
                    self.addItem(band)
        self._fit_view()
