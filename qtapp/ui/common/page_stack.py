"""The window's pages, one shown at a time, each painted once when it is shown, its charts one
per turn of the event loop."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import QAbstractItemView, QGraphicsView, QStackedLayout, QWidget
from shiboken6 import isValid


class PageStack(QWidget):
    """What ``QStackedWidget`` does for the window's pages, without its repaint of every widget.

    ``QStackedWidget`` switches with updates disabled on itself and enables them after; Qt's
    re-enabling calls ``update()`` on every widget of the new page, and each opaque one (a scroll
    area's viewport and contents, a table) was then painted twice in the switch: once on its
    own, once with the page (Fit page: 139 paint events for 81 widgets). Here the layout sizes
    every page (``StackAll``) and a switch shows the new page and hides the old one: one paint.

    A page's tables and charts (pyqtgraph draws in Python: 10-30 ms a chart on a software
    renderer; the Fit table's text 10-25 ms) are painted one per turn of the event loop after
    the rest of the page, instead of all of them in the switch's one paint: the Evaluate page's
    six charts took 70-95 ms of one turn, during which the window answered nothing. Each waits
    with its updates disabled (its area shows the page's background) and is enabled on a zero
    timer, so input and timers run in between.
    """

    currentChanged = Signal(int)  # noqa: N815 - QStackedWidget's name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QStackedLayout(self)
        self._layout.setStackingMode(QStackedLayout.StackingMode.StackAll)
        self._pages: list[QWidget] = []
        self._current = -1
        self._waiting: list[QWidget] = []  # tables and charts of the shown page not painted yet
        self._reveal = QTimer(self)
        self._reveal.setSingleShot(True)
        self._reveal.setInterval(0)
        self._reveal.timeout.connect(self._reveal_next)

    def addWidget(self, page: QWidget) -> int:  # noqa: N802 - QStackedWidget's name
        self._layout.addWidget(page)
        self._pages.append(page)
        if self._current < 0:
            self._current = len(self._pages) - 1
        else:
            page.hide()
        return len(self._pages) - 1

    def count(self) -> int:
        return len(self._pages)

    def widget(self, index: int) -> QWidget | None:
        return self._pages[index] if 0 <= index < len(self._pages) else None

    def currentIndex(self) -> int:  # noqa: N802 - QStackedWidget's name
        return self._current

    def currentWidget(self) -> QWidget | None:  # noqa: N802 - QStackedWidget's name
        return self.widget(self._current)

    def setCurrentIndex(self, index: int) -> None:  # noqa: N802 - QStackedWidget's name
        new = self.widget(index)
        if new is None or index == self._current:
            return
        old = self.currentWidget()
        focus = self.window().focusWidget()
        focus_was_on_old = focus is not None and old is not None and old.isAncestorOf(focus)
        self._reveal_all()  # the last page's waiting views: hidden now, nothing to paint
        self._waiting = [
            v
            for kind in (QAbstractItemView, QGraphicsView)  # tables first, then charts
            for v in new.findChildren(kind)
            if v.isVisibleTo(new) and v.updatesEnabled()
        ]
        for view in self._waiting:
            view.setUpdatesEnabled(False)
        if old is not None:  # first, as QStackedLayout: hiding a page under the new one
            old.hide()  # painted the new one at once, inside this call
        new.show()  # delivers the page's pending resize events
        # Qt posts each widget it shows an update for a later turn (show_sys): taken after the
        # switch's paint, they painted the whole page again (each label of the Evaluate, Compare
        # and Hardware pages two or three times a switch); taken now, they join this paint
        QCoreApplication.sendPostedEvents(None, QEvent.Type.UpdateLater)
        if self._waiting:
            self._reveal.start()
        new.raise_()
        self._current = index
        if focus_was_on_old:  # as QStackedLayout: the page's own focus widget, else the page
            target = new.focusWidget()
            if target is not None and target.focusPolicy() != Qt.FocusPolicy.NoFocus:
                target.setFocus()
            else:
                new.setFocus()
        self.currentChanged.emit(index)

    def charts_waiting(self) -> int:
        """Tables and charts of the current page not painted yet (0 once the page is whole)."""
        return len(self._waiting)

    def _reveal_next(self) -> None:
        while self._waiting:
            view = self._waiting.pop(0)
            if isValid(view):
                view.setUpdatesEnabled(True)  # painted in this turn's paint, alone
                break
        if self._waiting:
            self._reveal.start()

    def _reveal_all(self) -> None:
        self._reveal.stop()
        for view in self._waiting:
            if isValid(view):
                view.setUpdatesEnabled(True)
        self._waiting = []
