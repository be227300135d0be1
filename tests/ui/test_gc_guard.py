"""Garbage collection never destroys Qt objects off the GUI thread (issue 11's deadlock).

Before the fix, a job's reader thread could run the cyclic collector, destroy a ``QMenu`` left
in a reference cycle and deadlock against the GUI thread inside Qt and Shiboken. Now automatic
collection is off and the GUI thread collects on a timer (qtapp/ui/common/gc_guard.py).
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMenu

from qtapp.core.jobs import job as core_jobs
from qtapp.ui.common import gc_guard
from qtapp.ui.common.context import AppContext
from qtapp.ui.fit.page import Page as FitPage


class _MenuInACycle:
    """A Qt object reachable only through a reference cycle, like a page's forgotten menu."""

    def __init__(self, finalized: list[str]) -> None:
        self.menu = QMenu()
        self.menu.addAction("an action")
        self.me = self
        self._finalized = finalized

    def __del__(self) -> None:
        self._finalized.append(threading.current_thread().name)


@pytest.fixture
def aggressive_reader_threads(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Every job reader thread asks for a collection after almost every allocation."""
    original = core_jobs.Job._read_stdout
    saved = gc.get_threshold()

    started: list[str] = []

    def read_stdout(self: core_jobs.Job) -> None:
        started.append(self.spec.kind)
        gc.set_threshold(1, 1, 1)
        original(self)

    monkeypatch.setattr(core_jobs.Job, "_read_stdout", read_stdout)
    yield started
    gc.set_threshold(*saved)


def test_automatic_collection_is_off_and_the_gui_thread_collects(qtbot) -> None:  # noqa: ANN001
    collector = gc_guard.install(QApplication.instance())
    collector.check()  # past its first tick, which freezes what start-up made
    assert not gc.isenabled() and collector.frozen
    finalized: list[str] = []
    _MenuInACycle(finalized)
    assert finalized == []  # only the cyclic collector can free it

    saved = gc.get_threshold()

    kept: list[list[list[int]]] = []

    def churn() -> None:  # allocate far past every threshold in another thread
        gc.set_threshold(1, 1, 1)
        kept.append([[i] for i in range(200_000)])  # kept: frees would lower the counts again

    try:
        thread = threading.Thread(target=churn, name="ql-churn")
        thread.start()
        thread.join(30)
        assert finalized == []  # the other thread did not collect it
        gc.set_threshold(*saved)
        collector.threshold = saved
        qtbot.waitUntil(lambda: bool(finalized), timeout=10_000)
    finally:
        gc.set_threshold(*saved)
    assert finalized == [threading.main_thread().name]
    assert collector.collections > 0


def test_reenabled_collection_is_taken_back(qtbot) -> None:  # noqa: ANN001
    collector = gc_guard.install(QApplication.instance())
    gc.enable()
    collector.check()
    assert not gc.isenabled()


def test_job_churn_on_the_fit_page_with_qt_garbage(
    qtbot,
    tiny_model: Path,
    aggressive_reader_threads: list[str],  # noqa: ANN001
) -> None:
    """The hang's recipe: job reader threads that would collect all the time, Qt objects in
    reference cycles, and the Fit page replanning and repainting while its jobs come and go."""
    collector = gc_guard.install(QApplication.instance())
    collector.check()  # past its first tick, which freezes what start-up made
    collector.timer.setInterval(50)  # collect often, so reader threads have every chance to race
    ctx = AppContext()
    page = FitPage(ctx)
    qtbot.addWidget(page)
    page.resize(1400, 900)
    page.show()
    finalized: list[str] = []
    made = [0]

    def make_garbage() -> None:  # Qt objects in cycles all along, while jobs come and go
        for _ in range(5):
            _MenuInACycle(finalized)
        made[0] += 5

    litter = QTimer()
    litter.setInterval(5)
    litter.timeout.connect(make_garbage)
    litter.start()
    try:
        ctx.open_model(tiny_model)
        qtbot.waitUntil(lambda: page.plan is not None and not page.is_busy(), timeout=60_000)
        for i in range(12):
            page.controls.what_if.setText("2x24GiB" if i % 2 == 0 else "")
            page.controls.ctx_box.setValue(1024 + 64 * i)  # a new context: a new dry-load job
            qtbot.waitUntil(  # llama.cpp's exact figures for the new context have arrived
                lambda i=i: (
                    page.plan.settings.n_ctx == 1024 + 64 * i
                    and page.plan.rows[0].memory_exact
                    and not page.is_busy()
                ),
                timeout=60_000,
            )
        by_the_timer = len(finalized)
    finally:
        litter.stop()
        page.shutdown()
        ctx.jobs.shutdown()
    gc.collect()  # the cycles made since the timer's last collection
    collector.timer.setInterval(gc_guard.INTERVAL_MS)
    assert by_the_timer > 0
    assert aggressive_reader_threads.count("dry_load") >= 12  # a job per context change
    assert len(finalized) == made[0] > 100
    assert set(finalized) == {threading.main_thread().name}
