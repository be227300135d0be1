"""Work spread over event-loop turns: one queued call per turn, in order.

Queuing three quantizations or three evaluations made three job rows (or three runs on four
charts and a table row) in one turn: 15-35 ms of the GUI thread's CPU, and on busy cores, where
the window gets about half a core, a 50-90 ms stall. One call per turn lets a paint and the
user's input in between; the user sees the rows appear one after another within milliseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QWidget


class TurnQueue(QObject):
    """Calls queued functions one per event-loop turn; :meth:`flush` runs the rest at once."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._calls: deque[Callable[[], object]] = deque()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._run_one)

    def add(self, call: Callable[[], object]) -> None:
        self._calls.append(call)
        self._timer.start()

    def pending(self) -> int:
        return len(self._calls)

    def flush(self) -> None:
        """Run every queued call now (before a cancel or a close acts on what they make)."""
        self._timer.stop()
        while self._calls:
            self._calls.popleft()()

    def clear(self) -> None:
        """Drop the queued calls (the window closes: nothing they would make is wanted)."""
        self._timer.stop()
        self._calls.clear()

    def _run_one(self) -> None:
        if self._calls:
            self._calls.popleft()()
        if self._calls:
            self._timer.start()


class PaintHold:
    """A widget's updates off until :meth:`release`, while work that changes its picture is
    spread over event-loop turns (a paint in between would show it half done). Holds only
    what it turned off itself: a widget someone else keeps off (PageStack) stays theirs."""

    def __init__(self, widget: QWidget) -> None:
        self.widget = widget
        self.held = False

    def hold(self) -> None:
        if self.widget.updatesEnabled():
            self.widget.setUpdatesEnabled(False)
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.widget.setUpdatesEnabled(True)
