"""LivePlot: a run's items appear at its first redraw; a hidden chart prepares its paint then."""

from __future__ import annotations

import pytest

from qtapp.ui.common.axes import PixmapAxis
from qtapp.ui.common.live_plot import LivePlot

pytestmark = pytest.mark.timeout(60)


def _axes(plot: LivePlot) -> list[PixmapAxis]:
    item = plot.plot.getPlotItem()
    return [item.getAxis(name) for name in ("left", "bottom")]


def test_points_wait_for_the_redraw_and_a_hidden_chart_prepares_its_axes(qtbot) -> None:
    plot = LivePlot("PPL", "tokens", "PPL", band=True)
    qtbot.addWidget(plot)  # never shown: as a chart on a page the user is not looking at
    plot.add_run("a", "Q4_K_M")
    for x in range(1, 6):
        plot.append("a", x * 512, 10 + 1 / x, err=0.2)
    run = plot._runs["a"]
    assert run.curve is None and plot.dirty()  # no plot item made in the slot
    assert plot.data("a")[0].tolist() == [512, 1024, 1536, 2048, 2560]
    plot.redraw()  # the run's items, in a redraw (an event-loop turn) of their own
    assert run.curve is not None and run.band is not None and plot.dirty()
    plot.redraw()  # its points
    assert not plot.dirty()
    xs, ys = run.curve.getData()
    assert list(xs) == [512, 1024, 1536, 2048, 2560]
    (x0, x1), (y0, y1) = plot.plot.getPlotItem().vb.viewRange()
    assert x0 <= 512 and x1 >= 2560 and y0 <= 10.2 - 0.2 and y1 >= 11.2
    # hidden: the axes' pixmaps are drawn now, at the redraw, not at the page's first show
    assert all(axis._pixmap is not None for axis in _axes(plot))
    # a label set before the first redraw is the legend's text
    plot.add_run("b", "first name")
    plot.set_label("b", "Q2_K")
    plot.append("b", 512, 12.0, err=0.3)
    plot.redraw_all()
    assert [text.text for _sample, text in plot.legend.items] == ["Q4_K_M", "Q2_K"]
    plot.clear()
    assert plot.runs() == [] and plot.legend.items == []


def test_a_visible_chart_draws_new_axes_and_paints_in_later_turns(qtbot) -> None:
    """Data, the new range's axes and the paint in three turns: in one, with the view moved,
    they were 20-25 ms of a quiet core."""
    plot = LivePlot("KLD", "chunk", "KLD", integer_x=True)
    qtbot.addWidget(plot)
    plot.resize(500, 300)
    plot.show()
    qtbot.waitExposed(plot)
    plot.append("a", 1, 0.5)
    plot.redraw_all()
    axes = _axes(plot)
    for axis in axes:  # the range changed: pyqtgraph dropped the picture
        assert axis.picture is None
    assert not plot.plot.updatesEnabled()  # no paint before the axes are drawn
    qtbot.waitUntil(plot.plot.updatesEnabled, timeout=10_000)
    assert all(a._pixmap is not None and a.picture is not None for a in axes)


def test_a_range_step_keeps_the_axis_label_unless_its_prefix_changes(shown) -> None:
    """pyqtgraph set each axis label's HTML again at every range change (a text layout and a
    size request per step of a live chart); only a new SI prefix changes the label now."""
    from qtapp.ui.common.axes import chart_widget

    plot = shown(chart_widget(), 400, 300)
    item = plot.getPlotItem()
    item.setLabel("left", "size", units="B")
    left = item.getAxis("left")
    assert isinstance(left, PixmapAxis)
    labels: list[str] = []
    real = left.label.setHtml
    left.label.setHtml = lambda html: (labels.append(html), real(html))[1]  # type: ignore[method-assign]
    item.setYRange(0, 500, padding=0)
    item.setYRange(0, 700, padding=0)
    assert labels == [] and left.picture is None  # the ticks are drawn again, the label kept
    item.setYRange(0, 5e6, padding=0)
    assert len(labels) == 1 and "MB" in labels[0]


@pytest.mark.parametrize(
    ("x_range", "y_range"), [((0, 600), (0, 24)), ((3.5, 9.25), (-0.002, 0.31))]
)
def test_the_light_grid_draws_pyqtgraphs_grid(shown, x_range, y_range) -> None:
    """The same lines in the same colours as pyqtgraph's GridItem, drawn in one call a level."""
    import pyqtgraph as pg
    from PySide6.QtGui import QColor

    from qtapp.ui.common.live_plot_parts import LightGrid

    images = []
    for kind in (pg.GridItem, LightGrid):
        plot = shown(pg.PlotWidget(background="w"), 700, 300)
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        plot.setRange(xRange=x_range, yRange=y_range, padding=0)
        plot.addItem(kind(pen=pg.mkPen(QColor(40, 40, 40, 60)), textPen=None), ignoreBounds=True)
        images.append(plot.grab().toImage())
    ours, theirs = images[1], images[0]
    assert ours.size() == theirs.size()
    background = QColor("white").rgb()
    grid_pixels = sum(
        theirs.pixel(x, y) != background for x in range(0, ours.width(), 3) for y in (150,)
    )
    assert grid_pixels > 5  # the grid is there to compare
    assert ours == theirs


def test_an_axis_keeps_pyqtgraphs_bounds_through_resizes_and_styles(shown) -> None:
    """The axis computes its bounding rect once per geometry or style, always pyqtgraph's."""
    import pyqtgraph as pg

    from qtapp.ui.common.axes import chart_widget

    plot = shown(chart_widget(), 500, 300)
    axes = [plot.getPlotItem().getAxis(name) for name in ("left", "bottom")]

    def same() -> bool:
        return all(a.boundingRect() == pg.AxisItem.boundingRect(a) for a in axes)

    assert same()
    plot.resize(700, 420)
    plot.getPlotItem().setRange(xRange=(0, 12345.6), yRange=(-3, 3))
    pg.QtWidgets.QApplication.processEvents()
    assert same()
    before = axes[1].boundingRect()
    axes[1].setStyle(tickLength=-12, hideOverlappingLabels=False)
    assert same() and axes[1].boundingRect() != before
    axes[0].setWidth(90)
    pg.QtWidgets.QApplication.processEvents()
    assert same()
