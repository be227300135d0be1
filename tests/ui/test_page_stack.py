"""PageStack: one page shown at a time, every widget of the new page painted once per switch."""

from __future__ import annotations

import collections

import pytest
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QLabel, QLineEdit, QMainWindow, QScrollArea, QVBoxLayout, QWidget

from qtapp.ui.common.page_stack import PageStack

pytestmark = pytest.mark.timeout(60)


class _PaintCounter(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[int] = collections.Counter()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Paint:
            self.counts[id(watched)] += 1
        return False


def _page(name: str) -> QWidget:
    """A page like the window's: its controls in a scroll area (an opaque viewport)."""
    inner = QWidget()
    layout = QVBoxLayout(inner)
    for i in range(8):
        layout.addWidget(QLabel(f"{name} {i}"))
    layout.addWidget(QLineEdit())
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(inner)
    return scroll


def _two_pages(qtbot) -> tuple[QMainWindow, PageStack, list[QWidget]]:
    """A window (as in the app) whose stack holds two pages, shown on the first."""
    window = QMainWindow()
    qtbot.addWidget(window)
    stack = PageStack()
    window.setCentralWidget(stack)
    pages = [_page("first"), _page("second")]
    for page in pages:
        stack.addWidget(page)
    window.resize(400, 400)
    window.show()
    qtbot.waitExposed(window)
    return window, stack, pages


def test_a_switch_shows_one_page_and_paints_each_widget_once(qtbot) -> None:
    _window, stack, pages = _two_pages(qtbot)
    assert stack.currentIndex() == 0 and stack.count() == 2
    assert pages[0].isVisible() and not pages[1].isVisible()
    changed: list[int] = []
    stack.currentChanged.connect(changed.append)
    for index in (1, 0):  # away from the first page, and back to it
        counter = _PaintCounter()
        for widget in pages[index].findChildren(QWidget):
            widget.installEventFilter(counter)
        stack.setCurrentIndex(index)
        assert stack.currentWidget() is pages[index] and changed[-1] == index
        assert pages[index].isVisible() and not pages[1 - index].isVisible()
        assert pages[index].geometry() == stack.rect()  # the layout sized the hidden page too
        labels = pages[index].findChildren(QLabel)
        qtbot.waitUntil(lambda: all(counter.counts[id(w)] for w in labels), timeout=5000)  # noqa: B023
        for _ in range(5):  # let any second paint come
            qtbot.wait(20)
        assert max(counter.counts.values()) == 1  # QStackedWidget: 2 for each widget here
    assert changed == [1, 0]


def test_focus_follows_to_the_new_page(qtbot) -> None:
    stack = PageStack()
    qtbot.addWidget(stack)
    pages = [_page("first"), _page("second")]
    for page in pages:
        stack.addWidget(page)
    stack.show()
    qtbot.waitExposed(stack)
    stack.activateWindow()
    edit = pages[0].findChild(QLineEdit)
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus, timeout=5000)
    stack.setCurrentIndex(1)
    focus = stack.window().focusWidget()
    assert focus is not None and pages[1].isAncestorOf(focus) or focus is pages[1]
    stack.setCurrentIndex(7)  # no such page: nothing changes
    assert stack.currentIndex() == 1


def test_charts_are_painted_one_per_turn_after_the_page(qtbot) -> None:
    """The page's labels first, then each chart in a turn of its own (the Evaluate page's six
    charts took one 70-95 ms turn together); switching away lets every chart paint again."""
    from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

    window = QMainWindow()
    qtbot.addWidget(window)
    stack = PageStack()
    window.setCentralWidget(stack)
    first = _page("first")
    charts_page = QWidget()
    layout = QVBoxLayout(charts_page)
    label = QLabel("charts")
    layout.addWidget(label)
    scenes = [QGraphicsScene() for _ in range(3)]
    views = [QGraphicsView(scene) for scene in scenes]
    for view in views:
        layout.addWidget(view)
    for page in (first, charts_page):
        stack.addWidget(page)
    window.resize(400, 600)
    window.show()
    qtbot.waitExposed(window)
    order: list[object] = []
    enabled_at_paint: dict[object, list[bool]] = {}

    class _Order(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Paint:
                order.append(watched)
                enabled_at_paint.setdefault(watched, [v.updatesEnabled() for v in views])
            return False

    spy = _Order()
    label.installEventFilter(spy)
    for view in views:
        view.viewport().installEventFilter(spy)
    stack.setCurrentIndex(1)
    assert stack.charts_waiting() == 3 and not any(v.updatesEnabled() for v in views)
    qtbot.waitUntil(lambda: stack.charts_waiting() == 0 and len(set(order)) == 4, timeout=5000)
    firsts = list(dict.fromkeys(order))
    assert firsts == [label] + [v.viewport() for v in views]  # the page, then chart by chart
    assert enabled_at_paint[views[0].viewport()] == [True, False, False]  # alone in its paint
    assert enabled_at_paint[views[1].viewport()] == [True, True, False]
    assert all(v.updatesEnabled() for v in views)
    stack.setCurrentIndex(0)  # away before any chart painted: none stays disabled
    stack.setCurrentIndex(1)
    stack.setCurrentIndex(0)
    assert stack.charts_waiting() == 0 and all(v.updatesEnabled() for v in views)


def test_the_shown_widgets_own_updates_are_taken_in_the_switch(qtbot) -> None:
    """Qt posts every widget it shows an ``UpdateLater`` for a later turn (``show_sys``). Taken
    after the switch's paint they painted the page a second time: in the real window, each
    label of the Evaluate, Compare and Hardware pages two or three times per switch."""
    _window, stack, pages = _two_pages(qtbot)
    late: list[QObject] = []
    switched = [False]

    class _Late(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.UpdateLater and switched[0]:
                late.append(watched)
            return False

    spy = _Late()
    widgets = [pages[1], *pages[1].findChildren(QWidget)]
    for widget in widgets:
        widget.installEventFilter(spy)
    stack.setCurrentIndex(1)
    switched[0] = True
    labels = pages[1].findChildren(QLabel)
    counter = _PaintCounter()
    for label in labels:
        label.installEventFilter(counter)
    qtbot.waitUntil(lambda: all(counter.counts[id(w)] for w in labels), timeout=5000)
    for _ in range(5):  # let any late update come
        qtbot.wait(20)
    assert late == []
