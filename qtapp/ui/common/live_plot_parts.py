"""Parts of :mod:`qtapp.ui.common.live_plot`: the uncertainty band and the shared
redraw timer that repaints one chart per event-loop turn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import QLineF, QObject, QTimer
from PySide6.QtGui import QPainter, QPen, QPicture
from PySide6.QtWidgets import QApplication

from qtapp.ui.common.axes import PixmapAxis


class Band(pg.FillBetweenItem):
    """The uncertainty band: a translucent fill, drawn without antialiasing (cheaper, and its
    edges are invisible at this alpha anyway)."""

    def paint(self, p: QPainter, *args: object) -> None:  # noqa: D102 - Qt override
        p.setRenderHint(QPainter.Antialiasing, False)
        super().paint(p, *args)


class RedrawQueue(QObject):
    """Redraws at most one changed chart per tick, round robin, for every LivePlot alive."""

    TICK_MS = 60

    def __init__(self) -> None:
        super().__init__(QApplication.instance())
        self.plots: list[Any] = []  # LivePlot
        self._next = 0
        self.timer = QTimer(self)
        self.timer.setInterval(self.TICK_MS)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def tick(self) -> None:
        n = len(self.plots)
        for i in range(n):
            plot = self.plots[(self._next + i) % n]
            if not shiboken6.isValid(plot):
                self.remove(plot)
                return
            if plot.dirty():
                self._next = (self._next + i + 1) % n
                plot.redraw()
                return

    def remove(self, plot: Any) -> None:
        if plot in self.plots:
            self.plots.remove(plot)


_queue: RedrawQueue | None = None


def redraw_queue() -> RedrawQueue:
    global _queue
    if _queue is None:
        _queue = RedrawQueue()
        _queue.destroyed.connect(_forget_queue)
    return _queue


def _forget_queue(*_: object) -> None:
    global _queue
    _queue = None


def remove_from_queue(plot: Any) -> None:
    if _queue is not None:
        _queue.remove(plot)


class LightGrid(pg.GridItem):
    """pyqtgraph's grid, its picture made with one ``drawLines`` call per level and axis.

    ``GridItem.generatePicture`` draws line by line, two numpy arrays and two points made in
    Python for each: 8-15 ms for a chart on every range step, the longest part of a live chart's
    repaint. The lines, their levels and their colours are the same."""

    def generatePicture(self) -> None:  # noqa: N802 - pyqtgraph API
        if self.opts["textPen"] is not None:  # labels in the grid: pyqtgraph's own
            super().generatePicture()
            return
        lvr = self.boundingRect()
        view = self.getViewWidget()
        if lvr.isNull() or self.deviceTransform_() is None or view is None:
            return
        picture = QPicture()
        p = QPainter(picture)
        dim = np.array([view.rect().width(), view.rect().height()], dtype=float)
        ul = np.array([lvr.left(), min(lvr.top(), lvr.bottom())])
        br = np.array([lvr.right(), max(lvr.top(), lvr.bottom())])
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(self.grid_depth - 1, -1, -1):
                d = 10.0 ** np.floor(np.log10(np.abs((br - ul) / 10.0**i)) + 0.5)
                for ax in (0, 1):
                    spacing = self.opts["tickSpacing"][ax]
                    if i < len(spacing) and spacing[i] is not None:
                        d[ax] = spacing[i]
                ul1 = np.floor(ul / d) * d
                nl = (np.ceil(br / d) * d - ul1) / d + 0.5
                for ax in (0, 1):
                    if i >= len(self.opts["tickSpacing"][ax]) or not np.isfinite(nl[ax]):
                        continue
                    alpha = int(np.clip(5 * (dim[ax] / nl[ax] - 3), 0, 50))
                    if alpha == 0:  # lines under 3 px apart: pyqtgraph draws them invisible
                        continue
                    at = ul1[ax] + np.arange(int(nl[ax])) * d[ax]
                    at = at[(at >= ul[ax]) & (at <= br[ax])]
                    if not len(at):
                        continue
                    pen = QPen(self.opts["pen"])
                    color = pen.color()
                    color.setAlpha(alpha)
                    pen.setColor(color)
                    pen.setCosmetic(True)
                    p.setPen(pen)
                    bx = 1 - ax
                    if ax == 0:
                        lines = [QLineF(v, ul[bx], v, br[bx]) for v in at.tolist()]
                    else:
                        lines = [QLineF(ul[bx], v, br[bx], v) for v in at.tolist()]
                    p.drawLines(lines)
        p.end()
        self.picture = picture


def light_grid(item: Any, alpha: float) -> Any:
    """A grid drawn by its own item under the curves, in place of the axes' grid lines.

    pyqtgraph's axis grid replays every grid line with the axis picture on each axis repaint;
    on the software renderer that made up three quarters of a chart's paint time (14.6 ms vs
    2.9 ms for a 1000x400 chart), the longest part of a page's first show."""
    foreground = item.getAxis("left").pen().color()
    foreground.setAlphaF(alpha)
    grid = LightGrid(pen=pg.mkPen(foreground), textPen=None)
    grid.setZValue(-100)
    item.addItem(grid, ignoreBounds=True)
    return grid


def prepare_paint(item: Any) -> None:
    """What a hidden chart's next paint would compute first: pyqtgraph's pending auto range, the
    axes' pixmaps and the grid's picture (one chart per redraw tick while its page is hidden,
    not every chart in the turn its page is shown)."""
    item.vb.prepareForPaint()
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        if isinstance(axis, PixmapAxis):
            axis.prepare()
    for child in item.vb.addedItems:
        if isinstance(child, pg.GridItem) and child.picture is None:
            child.generatePicture()
