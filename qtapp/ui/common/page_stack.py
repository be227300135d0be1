"""The window's pages, one shown at a time, each painted once when it is shown."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QStackedLayout, QWidget


class PageStack(QWidget):
    """What ``QStackedWidget`` does for the window's pages, without its repaint of every widget.

    ``QStackedWidget`` switches with updates disabled on itself and enables them after; Qt's
    re-enabling calls ``update()`` on every widget of the new page, and each opaque one (a scroll
    area's viewport and contents, a table) was then painted twice in the switch: once on its
    own, once with the page (Fit page: 139 paint events for 81 widgets). Here the layout sizes
    every page (``StackAll``) and a switch shows the new page and hides the old one: one paint.
    """

    currentChanged = Signal(int)  # noqa: N815 - QStackedWidget's name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QStackedLayout(self)
        self._layout.setStackingMode(QStackedLayout.StackingMode.StackAll)
        self._pages: list[QWidget] = []
        self._current = -1

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
        if old is not None:  # first, as QStackedLayout: hiding a page under the new one
            old.hide()  # painted the new one at once, inside this call
        new.show()  # delivers the page's pending resize events
        new.raise_()
        self._current = index
        if focus_was_on_old:  # as QStackedLayout: the page's own focus widget, else the page
            target = new.focusWidget()
            if target is not None and target.focusPolicy() != Qt.FocusPolicy.NoFocus:
                target.setFocus()
            else:
                new.setFocus()
        self.currentChanged.emit(index)
