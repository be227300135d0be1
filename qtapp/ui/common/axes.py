"""Chart axes that paint from a cached pixmap.

pyqtgraph's ``AxisItem`` records its line, ticks and labels into a ``QPicture`` and replays it on
every paint: the replay lays the label text out again each time (about 8 ms per axis on the
raster engine, four axes per chart), so showing a page of charts or adding a point elsewhere on
a chart repainted text that had not changed. Here the picture is drawn once into a pixmap,
again only when pyqtgraph drops it (a new range, size or style: it sets ``picture`` to None),
and painting the axis is one blit. Exports (no widget) keep pyqtgraph's own vector path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsScene

_CACHED = object()  # stands in for pyqtgraph's QPicture while the pixmap is valid


class PixmapAxis(pg.AxisItem):
    """An ``AxisItem`` painted from a pixmap it redraws only when pyqtgraph invalidates it."""

    _bounds: QRectF | None = None  # set before __init__ ends: pyqtgraph's asks for it early

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pixmap: QPixmap | None = None
        self._pixmap_rect = QRectF()
        self.geometryChanged.connect(self._forget_bounds)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        """pyqtgraph's, computed once per geometry or style. Qt asks for it dozens of times a
        paint (47 calls in a chart's first paint), each a few calls into Qt from Python, and
        each such call waits for the GIL when another thread runs Python."""
        if self.grid is not False:  # then it follows the linked view's range too
            return super().boundingRect()
        if self._bounds is None:
            self._bounds = super().boundingRect()
        return QRectF(self._bounds)

    def prepareGeometryChange(self) -> None:  # noqa: N802 - Qt API, called by pyqtgraph
        self._forget_bounds()
        super().prepareGeometryChange()

    def setStyle(self, **kwargs: Any) -> None:  # noqa: N802 - pyqtgraph API
        self._forget_bounds()
        super().setStyle(**kwargs)

    def _forget_bounds(self) -> None:
        self._bounds = None

    def paint(self, p: QPainter, opt: Any, widget: Any) -> None:  # noqa: D102 - Qt override
        if widget is None:  # an export renders the scene: keep the vector drawing
            self.picture = None
            super().paint(p, opt, widget)
            self.picture = None
            return
        rect = self.boundingRect()
        ratio = p.device().devicePixelRatioF() if p.device() is not None else 1.0
        if self.picture is not _CACHED or self._pixmap is None or rect != self._pixmap_rect:
            self._pixmap = self._draw(rect, ratio)
            self._pixmap_rect = QRectF(rect)
            self.picture = _CACHED
        p.drawPixmap(rect.topLeft(), self._pixmap)

    def updateAutoSIPrefix(self) -> None:  # noqa: N802 - pyqtgraph API
        """pyqtgraph's, without setting the label's HTML again when the prefix stays the same.

        It runs at every range change (each step of a live chart), and the label's
        ``setHtml`` lays out a text document and asks the layout for a new axis size."""
        scale, prefix = 1.0, ""
        if self.label.isVisible():
            low, high = 10 ** np.array(self.range) if self.logMode else self.range
            value = max(abs(low), abs(high)) * self.scale
            if any(lo <= value <= hi for lo, hi in self.getSIPrefixEnableRanges()):
                scale, prefix = pg.siScale(value, power=self.unitPower)
        if (scale, prefix) == (self.autoSIPrefixScale, self.labelUnitPrefix):
            self.picture = None  # the ticks still move
            self.update()
            return
        self.autoSIPrefixScale, self.labelUnitPrefix = scale, prefix
        self._updateLabel()

    def prepare(self) -> None:
        """Draw the pixmap now if pyqtgraph dropped it: for a chart on a hidden page, whose
        first paint would otherwise come with the page's, together with every other chart's."""
        if self.picture is _CACHED and self._pixmap is not None:
            return
        view = self.getViewWidget()
        ratio = view.devicePixelRatioF() if view is not None else 1.0
        rect = self.boundingRect()
        self._pixmap = self._draw(rect, ratio)
        self._pixmap_rect = QRectF(rect)
        self.picture = _CACHED

    def _draw(self, rect: QRectF, ratio: float) -> QPixmap:
        width, height = (max(1, math.ceil(v * ratio)) for v in (rect.width(), rect.height()))
        pix = QPixmap(width, height)
        pix.setDevicePixelRatio(ratio)
        pix.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pix)
        try:
            painter.translate(-rect.topLeft())
            if self.style["tickFont"]:
                painter.setFont(self.style["tickFont"])
            specs = self.generateDrawSpecs(painter)
            if specs is not None:
                self.drawPicture(painter, *specs)
        finally:
            painter.end()
        return pix


class IntegerAxis(PixmapAxis):
    """An axis that only labels whole numbers (chunks, repetitions)."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, ANN001, ANN201 - pyqtgraph API
        levels = super().tickValues(minVal, maxVal, size)
        out = []
        for spacing, values in levels:
            if spacing < 1:
                continue
            out.append((spacing, [v for v in values if float(v).is_integer()]))
        if not out:
            lo, hi = int(np.ceil(minVal)), int(np.floor(maxVal))
            out = [(1.0, list(range(lo, hi + 1)))]
        return out


def chart_axes(integer_x: bool = False) -> dict[str, pg.AxisItem]:
    """The axes every chart of the window uses (``PlotWidget(axisItems=...)``)."""
    bottom = IntegerAxis("bottom") if integer_x else PixmapAxis("bottom")
    return {"left": PixmapAxis("left"), "bottom": bottom}  # PlotItem makes the hidden two


def chart_widget(background: object = None, integer_x: bool = False) -> pg.PlotWidget:
    """A plot widget with the window's axes and an unindexed scene.

    Qt indexes a scene's items in a BSP tree by default, and every geometry change of an item
    (a curve's new point, a resize) queues an index update that asks each changed item for its
    bounding rect, in Python for pyqtgraph's items. A chart holds a handful of items, so a
    linear walk (``NoIndex``, Qt's advice for scenes that change all the time) is cheaper."""
    plot = pg.PlotWidget(background=background, axisItems=chart_axes(integer_x))
    plot.scene().setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
    return plot
