"""Run a plain Python function (no llama.cpp: those are jobs) off the GUI thread.

Used for file-system scans, unpacking the demo model and reading versions. The function gets the
:class:`BackgroundCall` itself: ``call.report(fraction, message)``, ``call.emit_item(x)`` and
``call.should_stop()``; its result or error comes back as queued signals on the GUI thread.
The calls run on the window's pool of threads started with the app (:mod:`.threads`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

from PySide6.QtCore import QObject, Signal

from qtapp.core.errors import QuantLensError
from qtapp.ui.common.threads import POOL_PREFIX, pool

log = logging.getLogger(__name__)

Task = Callable[["BackgroundCall"], Any]
REPORT_EVERY = 0.05  # seconds


class BackgroundCall(QObject):
    """One call in a thread: ``progress``/``item`` while it runs, then ``finished``/``failed``."""

    progress = Signal(float, str)
    item = Signal(object)  # optional stream of partial results (e.g. scan hits)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, task: Task, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._task = task
        self._stop = threading.Event()
        self._last_message: str | None = None
        self._next_report = 0.0
        self.name = name
        self._future: Future[None] | None = None

    def start(self) -> BackgroundCall:
        self._future = pool().submit(self._run, f"{POOL_PREFIX} {self.name}")
        return self

    def _run(self) -> None:
        try:
            result = self._task(self)
        except QuantLensError as exc:
            self._emit(self.failed, str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged with the traceback
            log.exception("Background task %s failed", self.name)
            self._emit(self.failed, f"{type(exc).__name__}: {exc}")
        else:
            self._emit(self.finished, result)

    @staticmethod
    def _emit(signal: Any, value: object) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the receiver's window was closed meanwhile
            log.debug("Background result dropped: its receiver is gone")

    # -- for the task, from its thread --------------------------------------------------------
    def report(self, fraction: float, message: str = "") -> None:
        """At most one report per ``REPORT_EVERY`` seconds reaches the GUI thread (a copy loop
        reports per block); a new message or the end always does."""
        now = time.monotonic()
        if message == self._last_message and fraction < 1.0 and now < self._next_report:
            return
        self._last_message, self._next_report = message, now + REPORT_EVERY
        self.progress.emit(float(fraction), message)

    def emit_item(self, value: object) -> None:
        self.item.emit(value)

    def should_stop(self) -> bool:
        return self._stop.is_set()

    # -- for the GUI thread --------------------------------------------------------------------
    def cancel(self) -> None:
        self._stop.set()

    def is_running(self) -> bool:
        return self._future is not None and not self._future.done()

    def wait(self, timeout: float = 10) -> None:
        if self._future is not None:
            wait_futures([self._future], timeout)

    def delete_when_done(self) -> None:
        """``deleteLater()`` once the pool thread is done with this call.

        Not from a slot of its own ``finished``: that slot runs while the thread may still be
        inside the emit (Qt's ``activate`` walks the sender's connections after queuing each
        one), and deleting the sender then crashed in ``~QObject`` (1 run in 3 of the GC stress
        test, tests/ui/test_gc_guard.py). The future is done only after the emit returned."""
        future = self._future
        if future is None or future.done():
            self.deleteLater()
        else:  # runs in the pool thread after the call; deleteLater only posts an event
            future.add_done_callback(lambda _done: self.deleteLater())
