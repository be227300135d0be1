"""Python's cyclic garbage collector runs on the GUI thread only.

Why: the collector runs in whichever thread happens to allocate when a threshold is crossed. If
that is a job's reader thread, it can destroy Qt wrappers (say a ``QMenu`` left in a reference
cycle) off the GUI thread. ``QObject::~QObject`` then takes Qt's internal mutex and waits for
the GIL while the GUI thread holds the GIL and waits for that mutex: the window freezes for
good (issue 11 has the native stacks). So automatic collection is switched off and a timer on
the GUI thread collects with the same generational thresholds, as pyqtgraph's
``GarbageCollector`` does. Reference counting still frees everything that is not in a cycle at
once; only cycles wait for the next tick.
"""

from __future__ import annotations

import gc
import logging
import threading

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)

#: how often the GUI thread looks at the collector's counts (cheap: three integer compares)
INTERVAL_MS = 500


class GuiThreadCollector(QObject):
    """Owns the process's cyclic garbage collection while a Qt application runs."""

    def __init__(self, interval_ms: int = INTERVAL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the GUI-thread collector must be made on the GUI thread")
        self.threshold = gc.get_threshold()
        gc.disable()
        self.collections = 0
        self.frozen = False
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> int:
        """Collect the generations whose counts passed their thresholds; returns objects freed."""
        if gc.isenabled():  # some library switched it back on: take it back
            log.warning("automatic garbage collection was re-enabled; disabling it again")
            gc.disable()
        if not self.frozen:
            # The first tick comes once the window is up. Everything made so far (Qt wrappers,
            # pyqtgraph, numpy, the pages) lives as long as the app: move it out of the
            # collector's sight, so a full collection later scans only what came after it
            # (a full pass over the whole start-up heap stalled the window for ~100 ms).
            gc.freeze()
            self.frozen = True
            return 0
        l0, l1, l2 = gc.get_count()
        freed = 0
        if l0 > self.threshold[0]:
            generation = 0
            if l1 > self.threshold[1]:
                generation = 2 if l2 > self.threshold[2] else 1
            freed = gc.collect(generation)
            self.collections += 1
        return freed

    def stop(self) -> None:
        """Hand collection back to Python (only when no Qt object can be left to collect)."""
        self.timer.stop()
        gc.collect()
        gc.enable()


_collector: GuiThreadCollector | None = None


def install(app: QObject) -> GuiThreadCollector:
    """Switch automatic collection off and collect from the GUI thread (idempotent)."""
    global _collector
    if _collector is None or not _is_alive(_collector):
        _collector = GuiThreadCollector(parent=app)
    return _collector


def _is_alive(obj: QObject) -> bool:
    try:
        obj.objectName()
    except RuntimeError:  # its C++ side was deleted with an earlier application
        return False
    return True
